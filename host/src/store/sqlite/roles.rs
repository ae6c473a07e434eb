//! The two rules that span tables: the instance keeps an owner (a user, or an active agent,
//! with the owner role), and a vault keeps an admin. Checked inside the writing transaction
//! (which began `IMMEDIATE`) by every change that could break them, so no other connection
//! can break them between the check and the write.

use rusqlite::{OptionalExtension, Transaction, params};

use super::errors::TxResult;
use crate::store::{ActorId, StoreError};

/// Users with the owner role plus active agents with it.
pub(super) fn owner_count(tx: &Transaction<'_>) -> TxResult<i64> {
    Ok(tx.query_row(
        "SELECT (SELECT COUNT(*) FROM users WHERE role = 'owner')
              + (SELECT COUNT(*) FROM agents WHERE role = 'owner' AND status = 'active')",
        [],
        |row| row.get(0),
    )?)
}

/// `LastOwner` unless another owner remains once `removed_owner` no longer counts.
pub(super) fn keep_an_owner(tx: &Transaction<'_>, removed_owner: bool) -> TxResult<()> {
    if removed_owner && owner_count(tx)? <= 1 {
        return Err(StoreError::LastOwner.into());
    }
    Ok(())
}

pub(super) fn admin_count(tx: &Transaction<'_>, vault_id: &str) -> TxResult<i64> {
    Ok(tx.query_row(
        "SELECT COUNT(*) FROM vault_grants WHERE vault_id = ?1 AND role = 'admin'",
        [vault_id],
        |row| row.get(0),
    )?)
}

/// `LastAdmin` if `actor` is the only admin of any vault. Deleting a user or an agent takes
/// its grants with it; like removing the grant itself, that must not orphan a vault (the
/// issue: "the last vault admin cannot be removed"). An owner grants the vault to someone
/// else first.
pub(super) fn keep_vault_admins(tx: &Transaction<'_>, actor: &ActorId) -> TxResult<()> {
    let sole_admin: Option<String> = tx
        .query_row(
            "SELECT g.vault_id FROM vault_grants g
             WHERE g.actor_type = ?1 AND g.actor_id = ?2 AND g.role = 'admin'
               AND (SELECT COUNT(*) FROM vault_grants o
                    WHERE o.vault_id = g.vault_id AND o.role = 'admin') = 1
             LIMIT 1",
            params![actor.kind.as_str(), actor.id],
            |row| row.get(0),
        )
        .optional()?;
    match sole_admin {
        Some(_) => Err(StoreError::LastAdmin.into()),
        None => Ok(()),
    }
}
