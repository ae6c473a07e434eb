//! Keys: the instance's one master key record, which keeps the data key (wrapped under the
//! master password, or in the clear), and the transparent proxy's certificate authority.

use std::fmt;

use super::{Result, UnixTime};
use crate::vault::crypto::{KdfParams, Sealed};

/// How the data key is kept.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyProtection {
    /// Wrapped under Argon2id(master password, salt).
    Password {
        salt: Vec<u8>,
        kdf: KdfParams,
        wrapped: Sealed,
    },
    /// In the clear: whoever reads the database file can decrypt every credential.
    Passwordless { plain: Vec<u8> },
}

impl fmt::Debug for KeyProtection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProtection::Password { kdf, .. } => f
                .debug_struct("Password")
                .field("kdf", kdf)
                .finish_non_exhaustive(),
            KeyProtection::Passwordless { .. } => f.write_str("Passwordless"),
        }
    }
}

/// The one master key record of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRecord {
    pub key_version: u32,
    pub protection: KeyProtection,
}

/// The transparent proxy's certificate authority as stored: its certificate and its sealed
/// private key (PKCS#8 DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCa {
    pub common_name: String,
    pub cert_pem: String,
    pub sealed_key: Sealed,
    pub created_at: UnixTime,
}

/// The master key record and the transparent proxy's CA. Every method is one transaction.
pub trait KeyStore {
    fn master_key(&self) -> Result<Option<MasterKeyRecord>>;
    /// Store the first master key record; `Conflict` if one exists.
    fn init_master_key(&self, record: &MasterKeyRecord) -> Result<()>;
    /// Replace the master key record (a re-wrap); `NotFound` if there is none.
    fn replace_master_key(&self, record: &MasterKeyRecord) -> Result<()>;

    fn transparent_ca(&self) -> Result<Option<StoredCa>>;
    /// Store the first one; `Conflict` if there is one (another process made it first).
    fn init_transparent_ca(&self, ca: &StoredCa) -> Result<()>;
}
