//! The master key in SQLite: the one row of `master_key`, holding the data key either wrapped under
//! the master password or in plain (passwordless). [`KeyStore`] for [`SqliteStore`] is at the end
//! of this file: each method names its operation (for the error message) and runs these functions
//! in one transaction, and those of `transparent_ca.rs` for the transparent proxy's CA.

use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::errors::{Constraint, TxResult, misuse};
use super::transparent_ca;
use crate::store::{KeyProtection, KeyStore, MasterKeyRecord, Result, StoreError, StoredCa, now};
use crate::vault::crypto::{KdfParams, Sealed};

fn master_key_row(row: &Row<'_>) -> rusqlite::Result<MasterKeyRecord> {
    let key_version: u32 = row.get(0)?;
    let mode: String = row.get(1)?;
    let protection = match mode.as_str() {
        "password" => KeyProtection::Password {
            salt: row.get(2)?,
            kdf: KdfParams {
                memory_kib: row.get(3)?,
                iterations: row.get(4)?,
                parallelism: row.get(5)?,
            },
            wrapped: Sealed {
                key_version,
                nonce: row.get(6)?,
                ciphertext: row.get(7)?,
            },
        },
        "passwordless" => KeyProtection::Passwordless { plain: row.get(8)? },
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                1,
                Type::Text,
                format!("unknown key protection {other:?}").into(),
            ));
        }
    };
    Ok(MasterKeyRecord {
        key_version,
        protection,
    })
}

pub(super) fn get(tx: &Transaction<'_>) -> TxResult<Option<MasterKeyRecord>> {
    Ok(tx
        .query_row(
            "SELECT key_version, mode, salt, kdf_memory_kib, kdf_iterations,
                    kdf_parallelism, wrap_nonce, wrapped_key, plain_key
             FROM master_key WHERE id = 1",
            [],
            master_key_row,
        )
        .optional()?)
}

pub(super) fn init(tx: &Transaction<'_>, record: &MasterKeyRecord) -> TxResult<()> {
    write_master_key(tx, record, false)?;
    Ok(())
}

pub(super) fn replace(tx: &Transaction<'_>, record: &MasterKeyRecord) -> TxResult<()> {
    if write_master_key(tx, record, true)? == 0 {
        return Err(StoreError::NotFound("master key".into()).into());
    }
    Ok(())
}

fn write_master_key(
    tx: &Transaction<'_>,
    record: &MasterKeyRecord,
    replace: bool,
) -> TxResult<usize> {
    let (mode, salt, kdf, nonce, wrapped, plain) = match &record.protection {
        KeyProtection::Password { salt, kdf, wrapped } => {
            if wrapped.key_version != record.key_version {
                return Err(misuse(
                    "the wrapped data key must carry the record's key version",
                ));
            }
            (
                "password",
                Some(salt),
                Some(kdf),
                Some(&wrapped.nonce),
                Some(&wrapped.ciphertext),
                None,
            )
        }
        KeyProtection::Passwordless { plain } => {
            ("passwordless", None, None, None, None, Some(plain))
        }
    };
    let sql = if replace {
        "UPDATE master_key SET key_version = ?1, mode = ?2, salt = ?3, kdf_memory_kib = ?4,
             kdf_iterations = ?5, kdf_parallelism = ?6, wrap_nonce = ?7, wrapped_key = ?8,
             plain_key = ?9, updated_at = ?10
         WHERE id = 1"
    } else {
        "INSERT INTO master_key (id, key_version, mode, salt, kdf_memory_kib, kdf_iterations,
             kdf_parallelism, wrap_nonce, wrapped_key, plain_key, updated_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    };
    let changed = tx
        .execute(
            sql,
            params![
                record.key_version,
                mode,
                salt,
                kdf.map(|kdf| kdf.memory_kib),
                kdf.map(|kdf| kdf.iterations),
                kdf.map(|kdf| kdf.parallelism),
                nonce,
                wrapped,
                plain,
                now(),
            ],
        )
        .on_unique("a master key")?;
    Ok(changed)
}

impl KeyStore for SqliteStore {
    fn master_key(&self) -> Result<Option<MasterKeyRecord>> {
        self.read("read the master key", get)
    }

    fn init_master_key(&self, record: &MasterKeyRecord) -> Result<()> {
        self.write("store the master key", |tx| init(tx, record))
    }

    fn replace_master_key(&self, record: &MasterKeyRecord) -> Result<()> {
        self.write("replace the master key", |tx| replace(tx, record))
    }

    fn transparent_ca(&self) -> Result<Option<StoredCa>> {
        self.read("read the local CA", transparent_ca::get)
    }

    fn init_transparent_ca(&self, ca: &StoredCa) -> Result<()> {
        self.write("store the local CA", |tx| transparent_ca::init(tx, ca))
    }
}
