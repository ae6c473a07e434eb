//! Settings in PostgreSQL: per-vault key-value settings (`vault_settings`) and instance-wide ones
//! (`instance_settings`). [`VaultStore`](crate::store::VaultStore) for
//! [`PostgresStore`](super::PostgresStore) (`vaults.rs`) calls these inside its transactions;
//! setting `None` deletes the key.

use super::Tx;

use super::errors::{Constraint, TxResult};
use super::{column, query_opt};

pub(super) fn vault_setting(
    tx: &mut Tx<'_>,
    vault_id: &str,
    key: &str,
) -> TxResult<Option<String>> {
    query_opt(
        tx,
        "SELECT value FROM vault_settings WHERE vault_id = $1 AND key = $2",
        &[&vault_id, &key],
        |row| column(row, 0),
    )
}

pub(super) fn set_vault_setting(
    tx: &mut Tx<'_>,
    vault_id: &str,
    key: &str,
    value: Option<&str>,
) -> TxResult<()> {
    match value {
        Some(value) => {
            tx.execute(
                "INSERT INTO vault_settings (vault_id, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (vault_id, key) DO UPDATE SET value = excluded.value",
                &[&vault_id, &key, &value],
            )
            .on_missing("vault")?;
        }
        None => {
            tx.execute(
                "DELETE FROM vault_settings WHERE vault_id = $1 AND key = $2",
                &[&vault_id, &key],
            )?;
        }
    }
    Ok(())
}

pub(super) fn instance_setting(tx: &mut Tx<'_>, key: &str) -> TxResult<Option<String>> {
    query_opt(
        tx,
        "SELECT value FROM instance_settings WHERE key = $1",
        &[&key],
        |row| column(row, 0),
    )
}

pub(super) fn set_instance_setting(
    tx: &mut Tx<'_>,
    key: &str,
    value: Option<&str>,
) -> TxResult<()> {
    match value {
        Some(value) => tx.execute(
            "INSERT INTO instance_settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?,
        None => tx.execute("DELETE FROM instance_settings WHERE key = $1", &[&key])?,
    };
    Ok(())
}
