//! The two rules that span tables: the instance keeps an owner (a user, or an active agent,
//! with the owner role), and a vault keeps an admin. Checked inside the writing transaction,
//! which runs at `SERIALIZABLE`: two transactions that each leave one owner, but none
//! together, cannot both commit (PostgreSQL fails one, and [`super::PostgresStore`] runs it
//! again, when it sees the rule broken).

use super::Tx;

use super::errors::TxResult;
use super::{column, exists};
use crate::store::{ActorId, StoreError};

/// Users with the owner role plus active agents with it.
pub(super) fn owner_count(tx: &mut Tx<'_>) -> TxResult<i64> {
    let row = tx.query_one(
        "SELECT (SELECT COUNT(*) FROM users WHERE role = 'owner')
              + (SELECT COUNT(*) FROM agents WHERE role = 'owner' AND status = 'active')",
        &[],
    )?;
    column(&row, 0)
}

/// `LastOwner` unless another owner remains once `removed_owner` no longer counts.
pub(super) fn keep_an_owner(tx: &mut Tx<'_>, removed_owner: bool) -> TxResult<()> {
    if removed_owner && owner_count(tx)? <= 1 {
        return Err(StoreError::LastOwner.into());
    }
    Ok(())
}

pub(super) fn admin_count(tx: &mut Tx<'_>, vault_id: &str) -> TxResult<i64> {
    let row = tx.query_one(
        "SELECT COUNT(*) FROM vault_grants WHERE vault_id = $1 AND role = 'admin'",
        &[&vault_id],
    )?;
    column(&row, 0)
}

/// `LastAdmin` if `actor` is the only admin of any vault (see `sqlite/roles.rs`).
pub(super) fn keep_vault_admins(tx: &mut Tx<'_>, actor: &ActorId) -> TxResult<()> {
    let sole_admin = exists(
        tx,
        "SELECT g.vault_id FROM vault_grants g
         WHERE g.actor_type = $1 AND g.actor_id = $2 AND g.role = 'admin'
           AND (SELECT COUNT(*) FROM vault_grants o
                WHERE o.vault_id = g.vault_id AND o.role = 'admin') = 1
         LIMIT 1",
        &[&actor.kind.as_str(), &actor.id],
    )?;
    if sole_admin {
        return Err(StoreError::LastAdmin.into());
    }
    Ok(())
}
