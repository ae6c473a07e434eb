//! The transparent proxy's local CA in SQLite: the one row of `mitm_ca`, its private key sealed
//! under the data key. [`KeyStore`](crate::store::KeyStore) for [`SqliteStore`](super::SqliteStore)
//! (`keys.rs`) calls these inside its transactions; it is created once and never replaced.

use rusqlite::{OptionalExtension, Transaction, params};

use super::errors::{Constraint, TxResult};
use crate::store::StoredCa;
use crate::vault::crypto::Sealed;

pub(super) fn get(tx: &Transaction<'_>) -> TxResult<Option<StoredCa>> {
    Ok(tx
        .query_row(
            "SELECT common_name, cert_pem, key_version, nonce, ciphertext, created_at
             FROM mitm_ca WHERE id = 1",
            [],
            |row| {
                Ok(StoredCa {
                    common_name: row.get(0)?,
                    cert_pem: row.get(1)?,
                    sealed_key: Sealed {
                        key_version: row.get(2)?,
                        nonce: row.get(3)?,
                        ciphertext: row.get(4)?,
                    },
                    created_at: row.get(5)?,
                })
            },
        )
        .optional()?)
}

pub(super) fn init(tx: &Transaction<'_>, ca: &StoredCa) -> TxResult<()> {
    tx.execute(
        "INSERT INTO mitm_ca (id, common_name, cert_pem, key_version, nonce, ciphertext,
                              created_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            ca.common_name,
            ca.cert_pem,
            ca.sealed_key.key_version,
            ca.sealed_key.nonce,
            ca.sealed_key.ciphertext,
            ca.created_at,
        ],
    )
    .on_unique("a local CA")?;
    Ok(())
}
