//! What PostgreSQL does the same for user invites and agent invites, as in SQLite
//! (`sqlite/invite_tables.rs`): an [`InviteTable`] names a kind's tables and reads its row,
//! and one set of functions over it stores an invite's vaults, reads and lists invites with
//! their vaults, uses an invite once and revokes it. The kinds are `invites.rs` (user
//! invites, and [`InviteStore`](crate::store::InviteStore) for both) and `agent_invites.rs`.
//!
//! Using an invite re-checks inside the transaction that it is pending and unexpired, then
//! creates the user or agent, its grants and the new status together, so an invite is used at
//! most once however many uses race.

use postgres::Row;

use super::Tx;

use super::errors::{Constraint, TxResult};
use super::grants::insert_grant;
use super::{column, query_all, query_opt, text_enum};
use crate::store::invites::InviteRecord;
use crate::store::{ActorId, StoreError, UnixTime, VaultRole};

/// How PostgreSQL stores one kind of invite.
pub(super) trait InviteTable: InviteRecord + Sized {
    /// The table of this kind's invites.
    const TABLE: &'static str;
    /// The table of the vaults each will grant: `invite_hash`, `vault_id`, `role`.
    const VAULT_TABLE: &'static str;
    /// The columns [`Self::from_row`] reads, in its order.
    const COLUMNS: &'static str;

    /// The invite of a row of [`Self::COLUMNS`], without its vaults.
    fn from_row(row: &Row) -> TxResult<Self>;
    /// Mark the invite `hash` used, by the actor `actor_id` it created, at `at`.
    fn mark_used(tx: &mut Tx<'_>, hash: &str, actor_id: &str, at: UnixTime) -> TxResult<()>;
}

/// Store the vaults `invite` grants, once its row is in.
pub(super) fn insert_vaults<K: InviteTable>(tx: &mut Tx<'_>, invite: &K) -> TxResult<()> {
    for (vault_id, role) in invite.vaults() {
        tx.execute(
            &format!(
                "INSERT INTO {} (invite_hash, vault_id, role) VALUES ($1, $2, $3)",
                K::VAULT_TABLE
            ),
            &[&invite.hash(), vault_id, &role.as_str()],
        )
        .on_unique("a grant of this vault in the invite")
        .on_missing("vault")?;
    }
    Ok(())
}

fn vaults_of<K: InviteTable>(tx: &mut Tx<'_>, hash: &str) -> TxResult<Vec<(String, VaultRole)>> {
    query_all(
        tx,
        &format!(
            "SELECT vault_id, role FROM {} WHERE invite_hash = $1 ORDER BY vault_id",
            K::VAULT_TABLE
        ),
        &[&hash],
        |row| Ok((column(row, 0)?, text_enum(row, 1)?)),
    )
}

pub(super) fn get<K: InviteTable>(tx: &mut Tx<'_>, hash: &str) -> TxResult<Option<K>> {
    let invite = query_opt(
        tx,
        &format!("SELECT {} FROM {} WHERE hash = $1", K::COLUMNS, K::TABLE),
        &[&hash],
        K::from_row,
    )?;
    let Some(mut invite) = invite else {
        return Ok(None);
    };
    invite.set_vaults(vaults_of::<K>(tx, hash)?);
    Ok(Some(invite))
}

pub(super) fn list<K: InviteTable>(tx: &mut Tx<'_>) -> TxResult<Vec<K>> {
    let mut invites = query_all(
        tx,
        &format!(
            "SELECT {} FROM {} ORDER BY created_at, hash",
            K::COLUMNS,
            K::TABLE
        ),
        &[],
        K::from_row,
    )?;
    for invite in &mut invites {
        invite.set_vaults(vaults_of::<K>(tx, invite.hash())?);
    }
    Ok(invites)
}

/// Use the invite `hash` once, at `at`: `NotFound` unless it is pending and unexpired; then
/// `create` makes the actor it invites from it, the actor is granted the invite's vaults, and
/// the invite is marked used. What `create` returns is returned.
pub(super) fn use_once<K: InviteTable, T>(
    tx: &mut Tx<'_>,
    hash: &str,
    at: UnixTime,
    create: impl FnOnce(&mut Tx<'_>, &K) -> TxResult<(ActorId, T)>,
) -> TxResult<T> {
    let invite = get::<K>(tx, hash)?
        .filter(|invite| invite.is_usable_at(at))
        .ok_or(StoreError::NotFound(K::NOT_PENDING.into()))?;
    let (actor, created) = create(tx, &invite)?;
    for (vault_id, role) in invite.vaults() {
        insert_grant(tx, &actor, vault_id, *role)?;
    }
    K::mark_used(tx, hash, &actor.id, at)?;
    Ok(created)
}

/// Mark a pending invite revoked; `NotFound` unless it is pending.
pub(super) fn revoke<K: InviteTable>(tx: &mut Tx<'_>, hash: &str) -> TxResult<()> {
    let sql = format!(
        "UPDATE {} SET status = 'revoked' WHERE hash = $1 AND status = 'pending'",
        K::TABLE
    );
    if tx.execute(&sql, &[&hash])? == 0 {
        return Err(StoreError::NotFound(K::NOT_PENDING.into()).into());
    }
    Ok(())
}
