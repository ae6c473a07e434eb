//! Services in SQLite: the `services` table, one JSON document per vault. The trait methods
//! of [`super::SqliteStore`] and the proposals call these inside their transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use super::errors::{Constraint, TxResult};
use crate::store::UnixTime;

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
