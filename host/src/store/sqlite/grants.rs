//! Vault grants in SQLite: the `vault_grants` table, which actor (a user or an agent) holds which
//! role on which vault. [`GrantStore`] for [`SqliteStore`] is at the end of this file: each method
//! names its operation (for the error message) and runs these functions in one transaction;
//! [`insert_grant`] is also how a new vault, user or agent gets its grants.
//!
//! Lowering or removing a vault's last admin grant is refused ([`super::roles`]).

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::errors::{Constraint, TxResult};
use super::roles::admin_count;
use super::{query_all, text_enum};
use crate::store::{ActorId, ActorKind, Grant, GrantStore, Result, StoreError, VaultRole};

const GRANT_COLUMNS: &str = "actor_type, actor_id, vault_id, role";

fn grant_row(row: &Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        actor: ActorId {
            kind: text_enum(row, 0)?,
            id: row.get(1)?,
        },
        vault_id: row.get(2)?,
        role: text_enum(row, 3)?,
    })
}

fn actor_exists(tx: &Transaction<'_>, actor: &ActorId) -> TxResult<bool> {
    let sql = match actor.kind {
        ActorKind::User => "SELECT 1 FROM users WHERE id = ?1",
        ActorKind::Agent => "SELECT 1 FROM agents WHERE id = ?1",
    };
    Ok(tx
        .query_row(sql, [&actor.id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(super) fn require_actor(tx: &Transaction<'_>, actor: &ActorId) -> TxResult<()> {
    if actor_exists(tx, actor)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(actor.kind.as_str().into()).into())
    }
}

pub(super) fn insert_grant(
    tx: &Transaction<'_>,
    actor: &ActorId,
    vault_id: &str,
    role: VaultRole,
) -> TxResult<()> {
    tx.execute(
        "INSERT INTO vault_grants (actor_type, actor_id, vault_id, role) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (actor_type, actor_id, vault_id) DO UPDATE SET role = excluded.role",
        params![actor.kind.as_str(), actor.id, vault_id, role.as_str()],
    )
    .on_missing("vault")?;
    Ok(())
}

pub(super) fn of_actor(tx: &Transaction<'_>, actor: &ActorId) -> TxResult<Vec<Grant>> {
    query_all(
        tx,
        &format!(
            "SELECT {GRANT_COLUMNS} FROM vault_grants
             WHERE actor_type = ?1 AND actor_id = ?2 ORDER BY vault_id"
        ),
        [actor.kind.as_str(), &actor.id],
        grant_row,
    )
}

pub(super) fn of_vault(tx: &Transaction<'_>, vault_id: &str) -> TxResult<Vec<Grant>> {
    query_all(
        tx,
        &format!(
            "SELECT {GRANT_COLUMNS} FROM vault_grants
             WHERE vault_id = ?1 ORDER BY actor_type, actor_id"
        ),
        [vault_id],
        grant_row,
    )
}

pub(super) fn set(tx: &Transaction<'_>, grant: &Grant) -> TxResult<()> {
    require_actor(tx, &grant.actor)?;
    let current: Option<VaultRole> = tx
        .query_row(
            "SELECT role FROM vault_grants
             WHERE actor_type = ?1 AND actor_id = ?2 AND vault_id = ?3",
            [grant.actor.kind.as_str(), &grant.actor.id, &grant.vault_id],
            |row| text_enum(row, 0),
        )
        .optional()?;
    if current == Some(VaultRole::Admin)
        && grant.role != VaultRole::Admin
        && admin_count(tx, &grant.vault_id)? <= 1
    {
        return Err(StoreError::LastAdmin.into());
    }
    insert_grant(tx, &grant.actor, &grant.vault_id, grant.role)
}

pub(super) fn remove(tx: &Transaction<'_>, actor: &ActorId, vault_id: &str) -> TxResult<()> {
    let current: VaultRole = tx
        .query_row(
            "SELECT role FROM vault_grants
             WHERE actor_type = ?1 AND actor_id = ?2 AND vault_id = ?3",
            [actor.kind.as_str(), &actor.id, vault_id],
            |row| text_enum(row, 0),
        )
        .optional()?
        .ok_or(StoreError::NotFound("grant".into()))?;
    if current == VaultRole::Admin && admin_count(tx, vault_id)? <= 1 {
        return Err(StoreError::LastAdmin.into());
    }
    tx.execute(
        "DELETE FROM vault_grants WHERE actor_type = ?1 AND actor_id = ?2 AND vault_id = ?3",
        [actor.kind.as_str(), &actor.id, vault_id],
    )?;
    Ok(())
}

impl GrantStore for SqliteStore {
    fn grants_of(&self, actor: &ActorId) -> Result<Vec<Grant>> {
        self.read("list the grants", |tx| of_actor(tx, actor))
    }

    fn vault_grants(&self, vault_id: &str) -> Result<Vec<Grant>> {
        self.read("list the grants", |tx| of_vault(tx, vault_id))
    }

    fn set_grant(&self, grant: &Grant) -> Result<()> {
        self.write("change the grant", |tx| set(tx, grant))
    }

    fn remove_grant(&self, actor: &ActorId, vault_id: &str) -> Result<()> {
        self.write("remove the grant", |tx| remove(tx, actor, vault_id))
    }
}
