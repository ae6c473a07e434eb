//! Invites in PostgreSQL: user invites (`user_invites`, with the vaults each will grant in
//! `user_invite_vaults`) and agent invites (`agent_invites`, `agent_invite_vaults`).
//! [`InviteStore`] for [`PostgresStore`] is at the end of this file: each method names its
//! operation (for the error message) and runs these functions in one transaction.
//!
//! As in SQLite (`sqlite/invites.rs`): both kinds are read, listed, used and revoked by the
//! same functions here, over an [`InviteTable`] that names each kind's tables and reads its
//! row; what is a kind's own is its row's columns, what using it creates, and for agent
//! invites the name it reserves (`agent_invites.rs`). Using an invite re-checks inside the
//! transaction that it is pending and unexpired, then creates the user or agent, its grants
//! and the new status together, so an invite is used at most once however many uses race.

use postgres::Row;

use super::Tx;

use super::PostgresStore;
use super::agent_invites;
use super::errors::{Constraint, TxResult};
use super::grants::insert_grant;
use super::users::insert_user;
use super::{actor_at, actor_columns, column, query_all, query_opt, text_enum};
use crate::store::invites::InviteRecord;
use crate::store::{
    ActorId, Agent, AgentInvite, Invite, InviteStatus, InviteStore, Result, StoreError,
    TokenRecord, UnixTime, User, VaultRole, now,
};

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

impl InviteTable for Invite {
    const TABLE: &'static str = "user_invites";
    const VAULT_TABLE: &'static str = "user_invite_vaults";
    const COLUMNS: &'static str =
        "hash, email, role, created_by_type, created_by_id, status, created_at, expires_at";

    fn from_row(row: &Row) -> TxResult<Invite> {
        Ok(Invite {
            hash: column(row, 0)?,
            email: column(row, 1)?,
            role: text_enum(row, 2)?,
            vaults: Vec::new(),
            created_by: actor_at(row, 3, 4)?,
            status: text_enum(row, 5)?,
            created_at: column(row, 6)?,
            expires_at: column(row, 7)?,
        })
    }

    fn mark_used(tx: &mut Tx<'_>, hash: &str, _user_id: &str, _at: UnixTime) -> TxResult<()> {
        tx.execute(
            "UPDATE user_invites SET status = $1 WHERE hash = $2",
            &[&InviteStatus::Accepted.as_str(), &hash],
        )?;
        Ok(())
    }
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

fn create(tx: &mut Tx<'_>, invite: &Invite) -> TxResult<()> {
    let (created_by_type, created_by_id) = actor_columns(invite.created_by.as_ref());
    tx.execute(
        "INSERT INTO user_invites (hash, email, role, created_by_type, created_by_id,
                                   status, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &invite.hash,
            &invite.email,
            &invite.role.as_str(),
            &created_by_type,
            &created_by_id,
            &invite.status.as_str(),
            &invite.created_at,
            &invite.expires_at,
        ],
    )
    .on_unique("invite")?;
    insert_vaults(tx, invite)
}

fn accept(tx: &mut Tx<'_>, hash: &str, user: &User, at: UnixTime) -> TxResult<()> {
    use_once::<Invite, ()>(tx, hash, at, |tx, _| {
        insert_user(tx, user, user.role)?;
        Ok((ActorId::user(&user.id), ()))
    })
}

impl InviteStore for PostgresStore {
    fn create_invite(&self, invite: &Invite) -> Result<()> {
        self.write("create the invite", |tx| create(tx, invite))
    }

    fn invite(&self, hash: &str) -> Result<Option<Invite>> {
        self.read("read the invite", |tx| get::<Invite>(tx, hash))
    }

    fn invites(&self) -> Result<Vec<Invite>> {
        self.read("list the invites", list::<Invite>)
    }

    fn accept_invite(&self, hash: &str, user: &User) -> Result<()> {
        let at = now();
        self.write("accept the invite", |tx| accept(tx, hash, user, at))
    }

    fn revoke_invite(&self, hash: &str) -> Result<()> {
        self.write("revoke the invite", |tx| revoke::<Invite>(tx, hash))
    }

    fn create_agent_invite(&self, invite: &AgentInvite) -> Result<()> {
        self.write("create the agent invite", |tx| {
            agent_invites::create(tx, invite)
        })
    }

    fn agent_invite(&self, hash: &str) -> Result<Option<AgentInvite>> {
        self.read("read the agent invite", |tx| get::<AgentInvite>(tx, hash))
    }

    fn agent_invites(&self) -> Result<Vec<AgentInvite>> {
        self.read("list the agent invites", list::<AgentInvite>)
    }

    fn redeem_agent_invite(
        &self,
        hash: &str,
        agent_id: &str,
        token: &TokenRecord,
        at: UnixTime,
    ) -> Result<Agent> {
        self.write("redeem the agent invite", |tx| {
            agent_invites::redeem(tx, hash, agent_id, token, at)
        })
    }

    fn revoke_agent_invite(&self, hash: &str) -> Result<()> {
        self.write("revoke the agent invite", |tx| {
            revoke::<AgentInvite>(tx, hash)
        })
    }
}
