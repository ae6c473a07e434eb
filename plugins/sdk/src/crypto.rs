//! The host's crypto imports, wrapped so that plugins can use `?` with them. Keys are
//! credential slots or keys derived inside the host; the plugin only ever holds MACs.

use alloc::string::String;
use alloc::vec::Vec;

use crate::bindings::agent_vault::plugin::crypto::{
    self, CredentialKey, CryptoError, DerivedKey, HashAlgorithm,
};
use crate::bindings::agent_vault::plugin::types::AuthError;

/// The key of an HMAC: a credential slot (after a literal prefix) or a derived key.
#[derive(Debug, Clone)]
pub enum HmacKey {
    Credential { slot: String, prefix: String },
    Derived(DerivedKey),
}

impl HmacKey {
    /// The credential in `slot`, used as is.
    pub fn credential(slot: impl Into<String>) -> Self {
        HmacKey::Credential {
            slot: slot.into(),
            prefix: String::new(),
        }
    }

    /// `prefix` followed by the credential in `slot`, e.g. `"AWS4"` + secret.
    pub fn prefixed(prefix: impl Into<String>, slot: impl Into<String>) -> Self {
        HmacKey::Credential {
            slot: slot.into(),
            prefix: prefix.into(),
        }
    }

    fn to_wit(&self) -> crypto::HmacKey {
        match self {
            HmacKey::Credential { slot, prefix } => crypto::HmacKey::Credential(CredentialKey {
                slot: slot.clone(),
                prefix: prefix.clone(),
            }),
            HmacKey::Derived(key) => crypto::HmacKey::Derived(*key),
        }
    }
}

/// HMAC of `data` under `key`, computed by the host.
pub fn hmac(algorithm: HashAlgorithm, key: &HmacKey, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    crypto::hmac(algorithm, &key.to_wit(), data)
}

/// HMAC of `data` under `key`, kept in the host as a key for later HMACs in this call.
pub fn hmac_derive(
    algorithm: HashAlgorithm,
    key: &HmacKey,
    data: &[u8],
) -> Result<HmacKey, CryptoError> {
    crypto::hmac_derive(algorithm, &key.to_wit(), data).map(HmacKey::Derived)
}

/// Digest of `data`, computed by the host.
pub fn digest(algorithm: HashAlgorithm, data: &[u8]) -> Vec<u8> {
    crypto::digest(algorithm, data)
}

impl From<CryptoError> for AuthError {
    fn from(error: CryptoError) -> Self {
        let message = match error {
            CryptoError::UnknownSlot(slot) => {
                alloc::format!("credential slot \"{slot}\" is not bound")
            }
            CryptoError::UnknownDerivedKey(key) => alloc::format!("unknown derived key {key}"),
            CryptoError::LimitExceeded => "too many keyed operations in one call".into(),
        };
        AuthError::Internal(message)
    }
}
