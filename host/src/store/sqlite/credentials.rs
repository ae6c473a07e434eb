//! Credentials in SQLite: the `credentials` table, each value sealed under the data key (this
//! module never sees a plaintext). [`CredentialStore`] for [`SqliteStore`] is at the end of this
//! file: each method names its operation (for the error message) and runs these functions in one
//! transaction; the proposals call some of them in theirs.

use rusqlite::{OptionalExtension, Transaction, params};

use super::SqliteStore;
use super::errors::{Constraint, TxResult};
use super::query_all;
use crate::store::{CredentialStore, Result, StoredCredential, UnixTime, now};
use crate::vault::crypto::Sealed;

pub(super) fn write_credentials(
    tx: &Transaction<'_>,
    vault_id: &str,
    credentials: &[StoredCredential],
    updated_at: UnixTime,
) -> TxResult<()> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO credentials (vault_id, key, key_version, nonce, ciphertext, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (vault_id, key) DO UPDATE SET
             key_version = excluded.key_version, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
    )?;
    for credential in credentials {
        statement
            .execute(params![
                vault_id,
                credential.key,
                credential.sealed.key_version,
                credential.sealed.nonce,
                credential.sealed.ciphertext,
                updated_at,
            ])
            .on_missing("vault")?;
    }
    Ok(())
}

/// Delete the given keys; those that existed.
pub(super) fn remove_credentials(
    tx: &Transaction<'_>,
    vault_id: &str,
    keys: &[String],
) -> TxResult<Vec<String>> {
    let mut statement =
        tx.prepare_cached("DELETE FROM credentials WHERE vault_id = ?1 AND key = ?2")?;
    let mut deleted = Vec::new();
    for key in keys {
        if statement.execute([vault_id, key])? > 0 {
            deleted.push(key.clone());
        }
    }
    Ok(deleted)
}

pub(super) fn get(
    tx: &Transaction<'_>,
    vault_id: &str,
    key: &str,
) -> TxResult<Option<StoredCredential>> {
    Ok(tx
        .query_row(
            "SELECT key, key_version, nonce, ciphertext FROM credentials
             WHERE vault_id = ?1 AND key = ?2",
            [vault_id, key],
            |row| {
                Ok(StoredCredential {
                    key: row.get(0)?,
                    sealed: Sealed {
                        key_version: row.get(1)?,
                        nonce: row.get(2)?,
                        ciphertext: row.get(3)?,
                    },
                })
            },
        )
        .optional()?)
}

pub(super) fn keys(tx: &Transaction<'_>, vault_id: &str) -> TxResult<Vec<String>> {
    query_all(
        tx,
        "SELECT key FROM credentials WHERE vault_id = ?1 ORDER BY key",
        [vault_id],
        |row| row.get(0),
    )
}

impl CredentialStore for SqliteStore {
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
