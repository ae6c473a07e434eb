//! Credentials in PostgreSQL: the `credentials` table, each value sealed under the data key (this
//! module never sees a plaintext). [`CredentialStore`] for [`PostgresStore`] is at the end of this
//! file: each method names its operation (for the error message) and runs these functions in one
//! transaction; the proposals call some of them in theirs.

use super::Tx;

use super::PostgresStore;
use super::errors::{Constraint, TxResult};
use super::{column, fixed_bytes, narrow, query_all, query_opt};
use crate::store::{CredentialStore, Result, StoredCredential, UnixTime, now};
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

impl CredentialStore for PostgresStore {
    fn put_credentials(&self, vault_id: &str, credentials: &[StoredCredential]) -> Result<()> {
        let updated_at = now();
        self.write("store the credentials", |tx| {
            write_credentials(tx, vault_id, credentials, updated_at)
        })
    }

    fn credential(&self, vault_id: &str, key: &str) -> Result<Option<StoredCredential>> {
        self.read("read the credential", |tx| get(tx, vault_id, key))
    }

    fn credential_keys(&self, vault_id: &str) -> Result<Vec<String>> {
        self.read("list the credentials", |tx| keys(tx, vault_id))
    }

    fn delete_credentials(&self, vault_id: &str, keys: &[String]) -> Result<Vec<String>> {
        self.write("delete the credentials", |tx| {
            remove_credentials(tx, vault_id, keys)
        })
    }
}
