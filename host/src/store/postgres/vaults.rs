//! Vaults in PostgreSQL: the `vaults` table. [`VaultStore`] for [`PostgresStore`] is at the end of
//! this file: each method names its operation (for the error message) and runs these functions in
//! one transaction.
//!
//! As in SQLite (`sqlite/vaults.rs`): the default vault can be neither renamed nor deleted,
//! and deleting a vault deletes what hangs off it explicitly, in the same transaction.

use postgres::Row;

use super::Tx;

use super::PostgresStore;
use super::errors::{Constraint, TxResult, misuse};
use super::grants::{insert_grant, require_actor};
use super::settings;
use super::{DEFAULT_VAULT_ID, column, query_all, query_opt};
use crate::store::{ActorId, DEFAULT_VAULT, Result, StoreError, Vault, VaultRole, VaultStore};

const VAULT_COLUMNS: &str = "id, name, created_at";

fn vault_row(row: &Row) -> TxResult<Vault> {
    Ok(Vault {
        id: column(row, 0)?,
        name: column(row, 1)?,
        created_at: column(row, 2)?,
    })
}

/// Store `vault`, and make `admin` (who must exist) its admin.
pub(super) fn insert(tx: &mut Tx<'_>, vault: &Vault, admin: Option<&ActorId>) -> TxResult<()> {
    tx.execute(
        "INSERT INTO vaults (id, name, created_at) VALUES ($1, $2, $3)",
        &[&vault.id, &vault.name, &vault.created_at],
    )
    .on_unique(&format!("vault {}", vault.name))?;
    if let Some(admin) = admin {
        require_actor(tx, admin)?;
        insert_grant(tx, admin, &vault.id, VaultRole::Admin)?;
    }
    Ok(())
}

pub(super) fn by_name(tx: &mut Tx<'_>, name: &str) -> TxResult<Option<Vault>> {
    query_opt(
        tx,
        &format!("SELECT {VAULT_COLUMNS} FROM vaults WHERE name = $1"),
        &[&name],
        vault_row,
    )
}

pub(super) fn by_id(tx: &mut Tx<'_>, id: &str) -> TxResult<Option<Vault>> {
    query_opt(
        tx,
        &format!("SELECT {VAULT_COLUMNS} FROM vaults WHERE id = $1"),
        &[&id],
        vault_row,
    )
}

pub(super) fn list(tx: &mut Tx<'_>) -> TxResult<Vec<Vault>> {
    query_all(
        tx,
        &format!("SELECT {VAULT_COLUMNS} FROM vaults ORDER BY name"),
        &[],
        vault_row,
    )
}

pub(super) fn rename(tx: &mut Tx<'_>, id: &str, name: &str) -> TxResult<()> {
    if id == DEFAULT_VAULT_ID {
        return Err(misuse(&format!(
            "the {DEFAULT_VAULT} vault cannot be renamed"
        )));
    }
    let renamed = tx
        .execute("UPDATE vaults SET name = $2 WHERE id = $1", &[&id, &name])
        .on_unique(&format!("vault {name}"))?;
    if renamed == 0 {
        return Err(StoreError::NotFound("vault".into()).into());
    }
    Ok(())
}

pub(super) fn delete(tx: &mut Tx<'_>, id: &str) -> TxResult<()> {
    if id == DEFAULT_VAULT_ID {
        return Err(misuse(&format!(
            "the {DEFAULT_VAULT} vault cannot be deleted"
        )));
    }
    // First, before anything is read, so that this transaction's snapshot is taken after
    // the request-log inserts under way have committed, and none starts until this one
    // ends: their entries for this vault are deleted below, or dropped by their own check
    // (`request_log.rs`, "Vaults deleted meanwhile").
    tx.batch_execute("LOCK TABLE request_logs IN SHARE ROW EXCLUSIVE MODE")?;
    // The foreign keys cascade the rest too; spelled out as in the SQLite backend. The
    // request log has none.
    for sql in [
        "DELETE FROM vault_grants WHERE vault_id = $1",
        "DELETE FROM vault_settings WHERE vault_id = $1",
        "DELETE FROM credentials WHERE vault_id = $1",
        "DELETE FROM services WHERE vault_id = $1",
        "DELETE FROM tokens WHERE vault_id = $1",
        "DELETE FROM request_logs WHERE vault_id = $1",
        "DELETE FROM user_invite_vaults WHERE vault_id = $1",
    ] {
        tx.execute(sql, &[&id])?;
    }
    if tx.execute("DELETE FROM vaults WHERE id = $1", &[&id])? == 0 {
        return Err(StoreError::NotFound("vault".into()).into());
    }
    Ok(())
}

impl VaultStore for PostgresStore {
    fn create_vault(&self, name: &str, admin: Option<&ActorId>) -> Result<Vault> {
        let vault = Vault::new(name)?;
        self.write("create the vault", |tx| insert(tx, &vault, admin))?;
        Ok(vault)
    }

    fn vault(&self, name: &str) -> Result<Option<Vault>> {
        self.read("read the vault", |tx| by_name(tx, name))
    }

    fn vault_by_id(&self, id: &str) -> Result<Option<Vault>> {
        self.read("read the vault", |tx| by_id(tx, id))
    }

    fn vaults(&self) -> Result<Vec<Vault>> {
        self.read("list the vaults", list)
    }

    fn rename_vault(&self, id: &str, name: &str) -> Result<()> {
        self.write("rename the vault", |tx| rename(tx, id, name))
    }

    fn delete_vault(&self, id: &str) -> Result<()> {
        self.write("delete the vault", |tx| delete(tx, id))
    }

    fn vault_setting(&self, vault_id: &str, key: &str) -> Result<Option<String>> {
        self.read("read the vault setting", |tx| {
            settings::vault_setting(tx, vault_id, key)
        })
    }

    fn set_vault_setting(&self, vault_id: &str, key: &str, value: Option<&str>) -> Result<()> {
        self.write("change the vault setting", |tx| {
            settings::set_vault_setting(tx, vault_id, key, value)
        })
    }

    fn instance_setting(&self, key: &str) -> Result<Option<String>> {
        self.read("read the instance setting", |tx| {
            settings::instance_setting(tx, key)
        })
    }

    fn set_instance_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.write("change the instance setting", |tx| {
            settings::set_instance_setting(tx, key, value)
        })
    }
}
