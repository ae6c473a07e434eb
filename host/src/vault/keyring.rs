//! Keyed operations for plugins: HMAC under a credential (or under a key derived from one
//! inside this call), digests, and the AWS SigV4 signing key chain. Plugins get MACs back,
//! never key bytes; derived keys stay here and are zeroed when the call ends.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use zeroize::Zeroizing;

use super::{Credentials, UnboundSlot};

/// Keyed operations one plugin call may make (HMACs and derivations together). Generous
/// for any signing scheme (SigV4 needs five) while bounding a plugin used as a signing oracle.
pub const MAX_KEYED_OPERATIONS: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// Which key an HMAC uses.
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    /// `prefix` followed by the credential in `slot`.
    Credential { slot: &'a str, prefix: &'a str },
    /// A key an earlier `derive` made in this call.
    Derived(u32),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(transparent)]
    Unbound(#[from] UnboundSlot),
    #[error("derived key {0} does not exist in this call")]
    UnknownDerivedKey(u32),
    #[error("more than {MAX_KEYED_OPERATIONS} keyed operations in one call")]
    LimitExceeded,
}

/// The keys one plugin call may use: the service's credentials and whatever it derives.
#[derive(Debug, Default)]
pub struct KeyRing {
    credentials: Credentials,
    derived: Vec<Zeroizing<Vec<u8>>>,
    operations: u32,
}

impl KeyRing {
    pub fn new(credentials: Credentials) -> Self {
        KeyRing {
            credentials,
            derived: Vec::new(),
            operations: 0,
        }
    }

    /// The bound credentials, for rendering the decision this call returns.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// HMAC of `data` under `key`.
    pub fn hmac(
        &mut self,
        algorithm: DigestAlgorithm,
        key: KeyRef<'_>,
        data: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        self.count_operation()?;
        let key = self.key_bytes(key)?;
        Ok(hmac(algorithm, &key, data))
    }

    /// HMAC of `data` under `key`, kept here; returns the handle of the new key.
    pub fn derive(
        &mut self,
        algorithm: DigestAlgorithm,
        key: KeyRef<'_>,
        data: &[u8],
    ) -> Result<u32, KeyError> {
        self.count_operation()?;
        let key = self.key_bytes(key)?;
        let derived = Zeroizing::new(hmac(algorithm, &key, data));
        self.derived.push(derived);
        Ok(u32::try_from(self.derived.len() - 1).expect("bounded by MAX_KEYED_OPERATIONS"))
    }

    fn count_operation(&mut self) -> Result<(), KeyError> {
        if self.operations >= MAX_KEYED_OPERATIONS {
            return Err(KeyError::LimitExceeded);
        }
        self.operations += 1;
        Ok(())
    }

    fn key_bytes(&self, key: KeyRef<'_>) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        match key {
            KeyRef::Credential { slot, prefix } => {
                let secret = self
                    .credentials
                    .get(slot)
                    .ok_or_else(|| UnboundSlot(slot.to_owned()))?;
                let mut bytes = Zeroizing::new(Vec::with_capacity(prefix.len() + secret.0.len()));
                bytes.extend_from_slice(prefix.as_bytes());
                bytes.extend_from_slice(secret.expose());
                Ok(bytes)
            }
            KeyRef::Derived(handle) => self
                .derived
                .get(handle as usize)
                .cloned()
                .ok_or(KeyError::UnknownDerivedKey(handle)),
        }
    }
}

/// A digest of `data`.
pub fn digest(algorithm: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
    match algorithm {
        DigestAlgorithm::Sha1 => Sha1::digest(data).to_vec(),
        DigestAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
        DigestAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
    }
}

fn hmac(algorithm: DigestAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes keys of any length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        DigestAlgorithm::Sha1 => run::<Hmac<Sha1>>(key, data),
        DigestAlgorithm::Sha256 => run::<Hmac<Sha256>>(key, data),
        DigestAlgorithm::Sha512 => run::<Hmac<Sha512>>(key, data),
    }
}

/// The AWS SigV4 signature (lower-case hex) of `string_to_sign`, under the signing key
/// derived from the secret access key in `secret_slot` for `date` (YYYYMMDD), `region` and
/// `service`. The derived keys never leave this function.
pub fn sigv4_signature(
    credentials: &Credentials,
    secret_slot: &str,
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
) -> Result<String, UnboundSlot> {
    let secret = credentials
        .get(secret_slot)
        .ok_or_else(|| UnboundSlot(secret_slot.to_owned()))?;
    let mut key = Zeroizing::new(b"AWS4".to_vec());
    key.extend_from_slice(secret.expose());
    for step in [date, region, service, "aws4_request"] {
        key = Zeroizing::new(hmac(DigestAlgorithm::Sha256, &key, step.as_bytes()));
    }
    Ok(hex::encode(hmac(
        DigestAlgorithm::Sha256,
        &key,
        string_to_sign.as_bytes(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Secret;

    fn keyring() -> KeyRing {
        KeyRing::new(Credentials::new([("key".to_owned(), Secret::new("key"))]))
    }

    #[test]
    fn hmac_matches_rfc_4231_style_vectors() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        let mac = keyring()
            .hmac(
                DigestAlgorithm::Sha256,
                KeyRef::Credential {
                    slot: "key",
                    prefix: "",
                },
                b"The quick brown fox jumps over the lazy dog",
            )
            .unwrap();
        assert_eq!(
            hex::encode(mac),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn derived_keys_chain_like_a_direct_hmac() {
        let mut ring = keyring();
        let derived = ring
            .derive(
                DigestAlgorithm::Sha256,
                KeyRef::Credential {
                    slot: "key",
                    prefix: "p",
                },
                b"d",
            )
            .unwrap();
        let chained = ring
            .hmac(DigestAlgorithm::Sha1, KeyRef::Derived(derived), b"x")
            .unwrap();
        let direct = hmac(
            DigestAlgorithm::Sha1,
            &hmac(DigestAlgorithm::Sha256, b"pkey", b"d"),
            b"x",
        );
        assert_eq!(chained, direct);
        assert_eq!(
            ring.hmac(DigestAlgorithm::Sha1, KeyRef::Derived(7), b"x"),
            Err(KeyError::UnknownDerivedKey(7))
        );
    }

    #[test]
    fn keyed_operations_are_capped_per_call() {
        let mut ring = keyring();
        let key = KeyRef::Credential {
            slot: "key",
            prefix: "",
        };
        for _ in 0..MAX_KEYED_OPERATIONS {
            ring.hmac(DigestAlgorithm::Sha256, key, b"x").unwrap();
        }
        assert_eq!(
            ring.hmac(DigestAlgorithm::Sha256, key, b"x"),
            Err(KeyError::LimitExceeded)
        );
    }

    #[test]
    fn unbound_slots_are_named() {
        let error = keyring()
            .hmac(
                DigestAlgorithm::Sha256,
                KeyRef::Credential {
                    slot: "nope",
                    prefix: "",
                },
                b"",
            )
            .unwrap_err();
        assert_eq!(error.to_string(), "credential slot \"nope\" is not bound");
    }
}
