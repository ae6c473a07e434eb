//! Encryption at rest: credentials sealed with AES-256-GCM under a random data key, and the
//! data key wrapped under a key derived from the master password with Argon2id.
//!
//! Every credential ciphertext is bound, as AEAD associated data, to its vault id, its key
//! name and the data key's version, so a ciphertext copied to another row (or another vault)
//! fails to decrypt instead of yielding the wrong secret. The data key exists in memory only
//! (zeroed on drop); the store holds it wrapped, or in the clear in passwordless mode.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::Secret;

/// Argon2id settings for the key-encryption key: 64 MiB, 3 passes, 4 lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

/// A sealed value: nonce and ciphertext (with its tag), under data key `key_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_version: u32,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "the credential cannot be decrypted: it was not sealed for this vault and key, or the data is damaged"
    )]
    Undecryptable,
    #[error("the credential was sealed with data key version {0}, which this server does not have")]
    UnknownKeyVersion(u32),
    #[error("wrong master password")]
    WrongPassword,
    #[error("cannot derive the key from the master password: {0}")]
    Kdf(String),
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// The data key that seals every credential.
pub struct DataKey {
    key: Zeroizing<[u8; 32]>,
    version: u32,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A new random data key.
    pub fn generate(version: u32) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        random(key.as_mut_slice())?;
        Ok(DataKey { key, version })
    }

    /// A data key stored in the clear (passwordless mode).
    pub fn from_plain(bytes: &[u8], version: u32) -> Result<Self, CryptoError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Undecryptable)?;
        Ok(DataKey {
            key: Zeroizing::new(key),
            version,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The key bytes, for passwordless storage only.
    pub fn plain_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.to_vec())
    }

    /// Seal a credential for `vault_id` under the name `key`.
    pub fn seal_credential(
        &self,
        vault_id: &str,
        key: &str,
        value: &Secret,
    ) -> Result<Sealed, CryptoError> {
        seal(
            &self.key,
            &credential_aad(vault_id, key, self.version),
            value.expose(),
            self.version,
        )
    }

    /// Open a credential sealed for `vault_id` under the name `key`.
    pub fn open_credential(
        &self,
        vault_id: &str,
        key: &str,
        sealed: &Sealed,
    ) -> Result<Secret, CryptoError> {
        if sealed.key_version != self.version {
            return Err(CryptoError::UnknownKeyVersion(sealed.key_version));
        }
        let plain = open(
            &self.key,
            &credential_aad(vault_id, key, sealed.key_version),
            sealed,
        )?;
        Ok(Secret(plain))
    }

    /// Seal the private key (PKCS#8 DER) of the transparent proxy's local CA.
    pub fn seal_ca_key(&self, pkcs8: &[u8]) -> Result<Sealed, CryptoError> {
        seal(&self.key, &ca_key_aad(self.version), pkcs8, self.version)
    }

    /// Open the local CA's private key.
    pub fn open_ca_key(&self, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.key_version != self.version {
            return Err(CryptoError::UnknownKeyVersion(sealed.key_version));
        }
        open(&self.key, &ca_key_aad(sealed.key_version), sealed)
    }

    /// Wrap this key under a key derived from `password`.
    pub fn wrap(&self, kek: &KeyEncryptionKey) -> Result<Sealed, CryptoError> {
        seal(
            &kek.0,
            &data_key_aad(self.version),
            self.key.as_slice(),
            self.version,
        )
    }

    /// Unwrap a data key; a wrong password fails authentication.
    pub fn unwrap(kek: &KeyEncryptionKey, wrapped: &Sealed) -> Result<Self, CryptoError> {
        let plain = open(&kek.0, &data_key_aad(wrapped.key_version), wrapped)
            .map_err(|_| CryptoError::WrongPassword)?;
        DataKey::from_plain(&plain, wrapped.key_version)
    }
}

/// The key derived from the master password; wraps the data key.
pub struct KeyEncryptionKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(<redacted>)")
    }
}

impl KeyEncryptionKey {
    /// Argon2id of `password` with `salt`. Takes a fraction of a second by design; run it
    /// off the async threads.
    pub fn derive(password: &[u8], salt: &[u8], params: KdfParams) -> Result<Self, CryptoError> {
        let argon_params = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|error| CryptoError::Kdf(error.to_string()))?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, salt, key.as_mut_slice())
            .map_err(|error| CryptoError::Kdf(error.to_string()))?;
        Ok(KeyEncryptionKey(key))
    }
}

/// Fill `out` from the operating system's random number generator.
pub fn random(out: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(out).map_err(|error| CryptoError::Random(error.to_string()))
}

fn credential_aad(vault_id: &str, key: &str, version: u32) -> Vec<u8> {
    // NUL separators: neither a vault id nor a key name can contain one.
    format!("agent-vault:credential:v1\0{vault_id}\0{key}\0{version}").into_bytes()
}

fn ca_key_aad(version: u32) -> Vec<u8> {
    format!("agent-vault:mitm-ca-key:v1\0{version}").into_bytes()
}

fn data_key_aad(version: u32) -> Vec<u8> {
    format!("agent-vault:data-key:v1\0{version}").into_bytes()
}

fn seal(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
    key_version: u32,
) -> Result<Sealed, CryptoError> {
    let cipher = Aes256Gcm::new(key.into());
    let mut nonce = [0u8; 12];
    random(&mut nonce)?;
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption does not fail for inputs under 64 GiB");
    Ok(Sealed {
        key_version,
        nonce,
        ciphertext,
    })
}

fn open(key: &[u8; 32], aad: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Undecryptable)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fast parameters for tests; the default ones are exercised by the integration tests.
    const TEST_KDF: KdfParams = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn a_credential_opens_only_for_its_vault_and_key() {
        let data_key = DataKey::generate(1).unwrap();
        let sealed = data_key
            .seal_credential("vault-a", "STRIPE_KEY", &Secret::new("sk_test_1"))
            .unwrap();
        assert!(!sealed.ciphertext.windows(9).any(|w| w == b"sk_test_1"));
        let opened = data_key
            .open_credential("vault-a", "STRIPE_KEY", &sealed)
            .unwrap();
        assert_eq!(opened.expose(), b"sk_test_1");
        for (vault, key) in [("vault-b", "STRIPE_KEY"), ("vault-a", "OTHER_KEY")] {
            assert_eq!(
                data_key.open_credential(vault, key, &sealed).unwrap_err(),
                CryptoError::Undecryptable
            );
        }
    }

    #[test]
    fn a_tampered_ciphertext_does_not_open() {
        let data_key = DataKey::generate(1).unwrap();
        let mut sealed = data_key
            .seal_credential("v", "K", &Secret::new("x"))
            .unwrap();
        sealed.ciphertext[0] ^= 1;
        assert_eq!(
            data_key.open_credential("v", "K", &sealed).unwrap_err(),
            CryptoError::Undecryptable
        );
    }

    #[test]
    fn the_data_key_unwraps_only_with_the_right_password() {
        let data_key = DataKey::generate(1).unwrap();
        let salt = [7u8; 16];
        let kek = KeyEncryptionKey::derive(b"correct horse", &salt, TEST_KDF).unwrap();
        let wrapped = data_key.wrap(&kek).unwrap();
        let unwrapped = DataKey::unwrap(&kek, &wrapped).unwrap();
        let sealed = data_key
            .seal_credential("v", "K", &Secret::new("x"))
            .unwrap();
        assert_eq!(
            unwrapped
                .open_credential("v", "K", &sealed)
                .unwrap()
                .expose(),
            b"x"
        );
        let wrong = KeyEncryptionKey::derive(b"battery staple", &salt, TEST_KDF).unwrap();
        assert_eq!(
            DataKey::unwrap(&wrong, &wrapped).unwrap_err(),
            CryptoError::WrongPassword
        );
    }

    #[test]
    fn the_derived_key_depends_on_password_and_salt() {
        // Same password and salt give the same key; another salt another key.
        let a = KeyEncryptionKey::derive(b"pw", &[1u8; 16], TEST_KDF).unwrap();
        let b = KeyEncryptionKey::derive(b"pw", &[1u8; 16], TEST_KDF).unwrap();
        let c = KeyEncryptionKey::derive(b"pw", &[2u8; 16], TEST_KDF).unwrap();
        assert_eq!(*a.0, *b.0);
        assert_ne!(*a.0, *c.0);
    }
}
