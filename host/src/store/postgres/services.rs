//! Services in PostgreSQL: the `services` table, one JSON document per vault. The trait
//! methods of [`super::PostgresStore`] and the proposals call these inside their transaction.

use super::Tx;

use super::errors::{Constraint, TxResult};
use super::{column, query_opt};
use crate::store::UnixTime;

pub(super) fn read_services(tx: &mut Tx<'_>, vault_id: &str) -> TxResult<Option<String>> {
    query_opt(
        tx,
        "SELECT services_json FROM services WHERE vault_id = $1",
        &[&vault_id],
        |row| column(row, 0),
    )
}

pub(super) fn write_services(
    tx: &mut Tx<'_>,
    vault_id: &str,
    json: &str,
    updated_at: UnixTime,
) -> TxResult<()> {
    tx.execute(
        "INSERT INTO services (vault_id, services_json, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (vault_id) DO UPDATE SET
             services_json = excluded.services_json, updated_at = excluded.updated_at",
        &[&vault_id, &json, &updated_at],
    )
    .on_missing("vault")?;
    Ok(())
}
