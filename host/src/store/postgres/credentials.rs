//! Credentials in PostgreSQL: the `credentials` table, each value sealed under the data key
//! (this module never sees a plaintext). The trait methods of [`super::PostgresStore`] and
//! the proposals call these inside their transaction.

use super::Tx;

use super::errors::{Constraint, TxResult};
use super::{column, fixed_bytes, narrow, query_all, query_opt};
use crate::store::{StoredCredential, UnixTime};
use crate::vault::crypto::Sealed;

pub(super) fn write_credentials(
    tx: &mut Tx<'_>,
    vault_id: &str,
    credentials: &[StoredCredential],
    updated_at: UnixTime,
) -> TxResult<()> {
    if credentials.is_empty() {
        return Ok(());
    }
    let sql = "INSERT INTO credentials (vault_id, key, key_version, nonce, ciphertext, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (vault_id, key) DO UPDATE SET
             key_version = excluded.key_version, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at";
    for credential in credentials {
        tx.execute(
            sql,
            &[
                &vault_id,
                &credential.key,
                &i64::from(credential.sealed.key_version),
                &&credential.sealed.nonce[..],
                &credential.sealed.ciphertext,
                &updated_at,
            ],
        )
        .on_missing("vault")?;
    }
    Ok(())
}

/// Delete the given keys; those that existed.
pub(super) fn remove_credentials(
    tx: &mut Tx<'_>,
    vault_id: &str,
    keys: &[String],
) -> TxResult<Vec<String>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut deleted = Vec::new();
    for key in keys {
        let sql = "DELETE FROM credentials WHERE vault_id = $1 AND key = $2";
        if tx.execute(sql, &[&vault_id, key])? > 0 {
            deleted.push(key.clone());
        }
    }
    Ok(deleted)
}

pub(super) fn get(
    tx: &mut Tx<'_>,
    vault_id: &str,
    key: &str,
) -> TxResult<Option<StoredCredential>> {
    query_opt(
        tx,
        "SELECT key, key_version, nonce, ciphertext FROM credentials
         WHERE vault_id = $1 AND key = $2",
        &[&vault_id, &key],
        |row| {
            Ok(StoredCredential {
                key: column(row, 0)?,
                sealed: Sealed {
                    key_version: narrow(row, 1)?,
                    nonce: fixed_bytes(row, 2)?,
                    ciphertext: column(row, 3)?,
                },
            })
        },
    )
}

pub(super) fn keys(tx: &mut Tx<'_>, vault_id: &str) -> TxResult<Vec<String>> {
    query_all(
        tx,
        "SELECT key FROM credentials WHERE vault_id = $1 ORDER BY key",
        &[&vault_id],
        |row| column(row, 0),
    )
}
