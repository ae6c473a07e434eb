//! Services in SQLite: the `services` table, one JSON document per vault. [`ServiceStore`] for
//! [`SqliteStore`] is at the end of this file: each method names its operation (for the error
//! message) and runs these functions in one transaction; the proposals call some of them in theirs.

use rusqlite::{OptionalExtension, Transaction, params};

use super::SqliteStore;
use super::errors::{Constraint, TxResult};
use crate::store::{Result, ServiceStore, UnixTime, now};

pub(super) fn read_services(tx: &Transaction<'_>, vault_id: &str) -> TxResult<Option<String>> {
    Ok(tx
        .query_row(
            "SELECT services_json FROM services WHERE vault_id = ?1",
            [vault_id],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn write_services(
    tx: &Transaction<'_>,
    vault_id: &str,
    json: &str,
    updated_at: UnixTime,
) -> TxResult<()> {
    tx.execute(
        "INSERT INTO services (vault_id, services_json, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (vault_id) DO UPDATE SET
             services_json = excluded.services_json, updated_at = excluded.updated_at",
        params![vault_id, json, updated_at],
    )
    .on_missing("vault")?;
    Ok(())
}

impl ServiceStore for SqliteStore {
    fn services(&self, vault_id: &str) -> Result<Option<String>> {
        self.read("read the services", |tx| read_services(tx, vault_id))
    }

    fn set_services(&self, vault_id: &str, json: &str) -> Result<()> {
        self.write("store the services", |tx| {
            write_services(tx, vault_id, json, now())
        })
    }
}
