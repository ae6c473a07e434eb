//! The vault: the one module that holds plaintext credentials.
//!
//! A credential value lives in a [`Secret`] (zeroed on drop, redacted in `Debug`, no
//! `Display`, no accessor outside this module). Everything that needs the bytes happens here:
//! rendering a plugin's value into a header, query parameter or path of the outgoing request
//! ([`render`]), and the keyed operations behind the plugin crypto imports and AWS SigV4
//! ([`keyring`]). Nothing here logs, and no error carries a credential's bytes: errors name the
//! slot instead.
//!
//! Sealing at rest is here too ([`crypto`]); the store keeps only sealed values, and the
//! master key that unwraps the data key is read from it by `crate::master_key`. The vault
//! imports nothing from the request path above it (plugins, services, the proxy, the API):
//! plugins' values reach it in its own types ([`value`]), placeholders are filled here
//! ([`placeholders`]) and echoes redacted ([`redact`]).

pub mod crypto;
pub mod keyring;
pub mod placeholders;
pub mod redact;
pub mod render;
pub mod replace;
pub mod value;

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A credential value. Zeroed when dropped; never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(Zeroizing::new(bytes.into()))
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, for the one place that shows it to a person who asked for it
    /// (`GET /v1/credentials?reveal=true` by a vault member).
    pub fn reveal_utf8_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The credentials one request may use, by the plugin's slot names. Cheap to clone: the
/// values are shared, never copied.
#[derive(Clone, Default)]
pub struct Credentials {
    slots: Arc<Vec<(String, Secret)>>,
}

impl Credentials {
    pub fn new(slots: impl IntoIterator<Item = (String, Secret)>) -> Self {
        Credentials {
            slots: Arc::new(slots.into_iter().collect()),
        }
    }

    /// Names of the bound slots, in binding order.
    pub fn slot_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|(name, _)| name.as_str())
    }

    pub fn contains(&self, slot: &str) -> bool {
        self.get(slot).is_some()
    }

    fn get(&self, slot: &str) -> Option<&Secret> {
        self.slots
            .iter()
            .find(|(name, _)| name == slot)
            .map(|(_, secret)| secret)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.slot_names()).finish()
    }
}

/// A search for `(value, label)` pairs in responses, each found value replaced by its label
/// (see `redact.rs`); `None` when no value is long enough to look for.
pub fn redactor<'a>(
    values: impl IntoIterator<Item = (&'a Secret, &'a str)>,
) -> Option<redact::Redactor> {
    redact::Redactor::new(
        values
            .into_iter()
            .map(|(secret, label)| (secret.expose(), label)),
    )
}

/// A credential slot the request needs but the service does not bind.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("credential slot \"{0}\" is not bound")]
pub struct UnboundSlot(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let credentials = Credentials::new([("token".to_owned(), Secret::new("sk_test_123"))]);
        let printed = format!("{credentials:?} {:?}", Secret::new("sk_test_123"));
        assert!(!printed.contains("sk_test_123"), "{printed}");
        assert!(printed.contains("token"));
    }
}
