//! Settings in SQLite: per-vault key-value settings (`vault_settings`) and instance-wide ones
//! (`instance_settings`). [`VaultStore`](crate::store::VaultStore) for
//! [`SqliteStore`](super::SqliteStore) (`vaults.rs`) calls these inside its transactions; setting
//! `None` deletes the key.

use rusqlite::{OptionalExtension, Transaction};

use super::errors::{Constraint, TxResult};

pub(super) fn vault_setting(
    tx: &Transaction<'_>,
    vault_id: &str,
    key: &str,
) -> TxResult<Option<String>> {
    Ok(tx
        .query_row(
            "SELECT value FROM vault_settings WHERE vault_id = ?1 AND key = ?2",
            [vault_id, key],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn set_vault_setting(
    tx: &Transaction<'_>,
    vault_id: &str,
    key: &str,
    value: Option<&str>,
) -> TxResult<()> {
    match value {
        Some(value) => {
            tx.execute(
                "INSERT INTO vault_settings (vault_id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (vault_id, key) DO UPDATE SET value = excluded.value",
                [vault_id, key, value],
            )
            .on_missing("vault")?;
        }
        None => {
            tx.execute(
                "DELETE FROM vault_settings WHERE vault_id = ?1 AND key = ?2",
                [vault_id, key],
            )?;
        }
    }
    Ok(())
}

pub(super) fn instance_setting(tx: &Transaction<'_>, key: &str) -> TxResult<Option<String>> {
    Ok(tx
        .query_row(
            "SELECT value FROM instance_settings WHERE key = ?1",
            [key],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn set_instance_setting(
    tx: &Transaction<'_>,
    key: &str,
    value: Option<&str>,
) -> TxResult<()> {
    match value {
        Some(value) => tx.execute(
            "INSERT INTO instance_settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?,
        None => tx.execute("DELETE FROM instance_settings WHERE key = ?1", [key])?,
    };
    Ok(())
}
