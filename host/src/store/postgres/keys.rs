//! The master key in PostgreSQL: the one row of `master_key`, holding the data key either wrapped
//! under the master password or in plain (passwordless). [`KeyStore`] for [`PostgresStore`] is at
//! the end of this file: each method names its operation (for the error message) and runs these
//! functions in one transaction, and those of `transparent_ca.rs` for the transparent proxy's CA.

use postgres::Row;

use super::Tx;

use super::PostgresStore;
use super::errors::{Constraint, Failure, TxResult, misuse};
use super::transparent_ca;
use super::{column, fixed_bytes, narrow, query_opt};
use crate::store::{KeyProtection, KeyStore, MasterKeyRecord, Result, StoreError, StoredCa, now};
use crate::vault::crypto::{KdfParams, Sealed};

fn master_key_row(row: &Row) -> TxResult<MasterKeyRecord> {
    let key_version: u32 = narrow(row, 0)?;
    let mode: String = column(row, 1)?;
    let protection = match mode.as_str() {
        "password" => KeyProtection::Password {
            salt: column(row, 2)?,
            kdf: KdfParams {
                memory_kib: narrow(row, 3)?,
                iterations: narrow(row, 4)?,
                parallelism: narrow(row, 5)?,
            },
            wrapped: Sealed {
                key_version,
                nonce: fixed_bytes(row, 6)?,
                ciphertext: column(row, 7)?,
            },
        },
        "passwordless" => KeyProtection::Passwordless {
            plain: column(row, 8)?,
        },
        other => return Err(Failure::Data(format!("unknown key protection {other:?}"))),
    };
    Ok(MasterKeyRecord {
        key_version,
        protection,
    })
}

pub(super) fn get(tx: &mut Tx<'_>) -> TxResult<Option<MasterKeyRecord>> {
    query_opt(
        tx,
        "SELECT key_version, mode, salt, kdf_memory_kib, kdf_iterations,
                kdf_parallelism, wrap_nonce, wrapped_key, plain_key
         FROM master_key WHERE id = 1",
        &[],
        master_key_row,
    )
}

pub(super) fn init(tx: &mut Tx<'_>, record: &MasterKeyRecord) -> TxResult<()> {
    write_master_key(tx, record, false)?;
    Ok(())
}

pub(super) fn replace(tx: &mut Tx<'_>, record: &MasterKeyRecord) -> TxResult<()> {
    if write_master_key(tx, record, true)? == 0 {
        return Err(StoreError::NotFound("master key".into()).into());
    }
    Ok(())
}

fn write_master_key(tx: &mut Tx<'_>, record: &MasterKeyRecord, replace: bool) -> TxResult<u64> {
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
                Some(&wrapped.nonce[..]),
                Some(&wrapped.ciphertext),
                None,
            )
        }
        KeyProtection::Passwordless { plain } => {
            ("passwordless", None, None, None, None, Some(plain))
        }
    };
    let sql = if replace {
        "UPDATE master_key SET key_version = $1, mode = $2, salt = $3, kdf_memory_kib = $4,
             kdf_iterations = $5, kdf_parallelism = $6, wrap_nonce = $7, wrapped_key = $8,
             plain_key = $9, updated_at = $10
         WHERE id = 1"
    } else {
        "INSERT INTO master_key (id, key_version, mode, salt, kdf_memory_kib, kdf_iterations,
             kdf_parallelism, wrap_nonce, wrapped_key, plain_key, updated_at)
         VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    };
    let changed = tx
        .execute(
            sql,
            &[
                &i64::from(record.key_version),
                &mode,
                &salt,
                &kdf.map(|kdf| i64::from(kdf.memory_kib)),
                &kdf.map(|kdf| i64::from(kdf.iterations)),
                &kdf.map(|kdf| i64::from(kdf.parallelism)),
                &nonce,
                &wrapped,
                &plain,
                &now(),
            ],
        )
        .on_unique("a master key")?;
    Ok(changed)
}

impl KeyStore for PostgresStore {
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
