//! The master key in the store: setting it up on first start, unlocking the data key on every start, and
//! changing the master password.
//!
//! The data key never changes here; a password change re-wraps it under a new salt and
//! writes the new record in one transaction, so a crash at any point leaves exactly one of
//! the two passwords working. Passwordless mode stores the data key in the clear and says so.

use crate::store::{KeyProtection, MasterKeyRecord, Store, StoreError};
use crate::vault::crypto::{CryptoError, DataKey, KdfParams, KeyEncryptionKey, random};

/// The data key version new instances start with.
const FIRST_KEY_VERSION: u32 = 1;

/// What passwordless mode gives up, for the CLI and the log.
pub const PASSWORDLESS_WARNING: &str = "passwordless mode: the data key is stored unencrypted \
    in the database, so anyone who can read the database file (or a backup of it) can decrypt \
    every credential; set a master password with `agent-vault master-password change`";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("wrong master password")]
    WrongPassword,
    #[error("this data directory is protected by a master password, and none was given")]
    PasswordRequired,
    #[error("the master key has not been set up yet; start the server once first")]
    NotInitialized,
    #[error(transparent)]
    Crypto(CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CryptoError> for MasterKeyError {
    fn from(error: CryptoError) -> Self {
        match error {
            CryptoError::WrongPassword => MasterKeyError::WrongPassword,
            other => MasterKeyError::Crypto(other),
        }
    }
}

/// Whether the instance has a master key yet, and of which kind.
pub fn state(store: &dyn Store) -> Result<Option<bool>, StoreError> {
    Ok(store
        .master_key()?
        .map(|record| matches!(record.protection, KeyProtection::Password { .. })))
}

/// Set up the master key of a new instance: a random data key, wrapped under `password`, or
/// stored in the clear when `password` is `None`. If another process set one up first,
/// unlock that one instead.
pub fn initialize(
    store: &dyn Store,
    password: Option<&str>,
    kdf: KdfParams,
) -> Result<DataKey, MasterKeyError> {
    let data_key = DataKey::generate(FIRST_KEY_VERSION)?;
    let record = record_for(&data_key, password, kdf)?;
    match store.init_master_key(&record) {
        Ok(()) => Ok(data_key),
        Err(StoreError::Conflict(_)) => unlock(store, password),
        Err(error) => Err(error.into()),
    }
}

/// Unlock the data key with `password` (ignored in passwordless mode).
pub fn unlock(store: &dyn Store, password: Option<&str>) -> Result<DataKey, MasterKeyError> {
    let record = store.master_key()?.ok_or(MasterKeyError::NotInitialized)?;
    unlock_record(&record, password)
}

fn unlock_record(
    record: &MasterKeyRecord,
    password: Option<&str>,
) -> Result<DataKey, MasterKeyError> {
    match &record.protection {
        KeyProtection::Password { salt, kdf, wrapped } => {
            let password = password.ok_or(MasterKeyError::PasswordRequired)?;
            let kek = KeyEncryptionKey::derive(password.as_bytes(), salt, *kdf)?;
            Ok(DataKey::unwrap(&kek, wrapped)?)
        }
        KeyProtection::Passwordless { plain } => {
            Ok(DataKey::from_plain(plain, record.key_version)?)
        }
    }
}

/// Re-wrap the data key: from `old` (ignored if passwordless) to `new` (`None` for
/// passwordless). One write; the data key and every credential stay as they are.
pub fn change_password(
    store: &dyn Store,
    old: Option<&str>,
    new: Option<&str>,
    kdf: KdfParams,
) -> Result<(), MasterKeyError> {
    let data_key = unlock(store, old)?;
    let record = record_for(&data_key, new, kdf)?;
    store.replace_master_key(&record)?;
    Ok(())
}

fn record_for(
    data_key: &DataKey,
    password: Option<&str>,
    kdf: KdfParams,
) -> Result<MasterKeyRecord, MasterKeyError> {
    let protection = match password {
        Some(password) => {
            let mut salt = vec![0u8; 16];
            random(&mut salt)?;
            let kek = KeyEncryptionKey::derive(password.as_bytes(), &salt, kdf)?;
            KeyProtection::Password {
                wrapped: data_key.wrap(&kek)?,
                salt,
                kdf,
            }
        }
        None => KeyProtection::Passwordless {
            plain: data_key.plain_bytes().to_vec(),
        },
    };
    Ok(MasterKeyRecord {
        key_version: data_key.version(),
        protection,
    })
}
