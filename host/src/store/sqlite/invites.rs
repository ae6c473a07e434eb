//! User invites in SQLite: `user_invites` and the vaults each will grant, `user_invite_vaults`.
//! [`InviteStore`] for [`SqliteStore`] is at the end of this file: each method names its operation
//! (for the error message) and runs these functions in one transaction.
//!
//! Accepting re-checks inside the transaction that the invite is pending and unexpired, then
//! creates the user, their grants and the new status together, so an invite is accepted at
//! most once.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::agent_invites;
use super::errors::{Constraint, TxResult};
use super::grants::insert_grant;
use super::users::insert_user;
use super::{actor_at, actor_columns, query_all, text_enum};
use crate::store::{
    ActorId, Agent, AgentInvite, Invite, InviteStatus, InviteStore, Result, StoreError,
    TokenRecord, UnixTime, User, VaultRole, now,
};

const INVITE_COLUMNS: &str =
    "hash, email, role, created_by_type, created_by_id, status, created_at, expires_at";

fn invite_row(row: &Row<'_>) -> rusqlite::Result<Invite> {
    Ok(Invite {
        hash: row.get(0)?,
        email: row.get(1)?,
        role: text_enum(row, 2)?,
        vaults: Vec::new(),
        created_by: actor_at(row, 3, 4)?,
        status: text_enum(row, 5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
    })
}

fn invite_vaults(tx: &Transaction<'_>, hash: &str) -> TxResult<Vec<(String, VaultRole)>> {
    query_all(
        tx,
        "SELECT vault_id, role FROM user_invite_vaults WHERE invite_hash = ?1 ORDER BY vault_id",
        [hash],
        |row| Ok((row.get(0)?, text_enum(row, 1)?)),
    )
}

pub(super) fn create(tx: &Transaction<'_>, invite: &Invite) -> TxResult<()> {
    let (created_by_type, created_by_id) = actor_columns(invite.created_by.as_ref());
    tx.execute(
        "INSERT INTO user_invites (hash, email, role, created_by_type, created_by_id,
                                   status, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            invite.hash,
            invite.email,
            invite.role.as_str(),
            created_by_type,
            created_by_id,
            invite.status.as_str(),
            invite.created_at,
            invite.expires_at,
        ],
    )
    .on_unique("invite")?;
    for (vault_id, role) in &invite.vaults {
        tx.execute(
            "INSERT INTO user_invite_vaults (invite_hash, vault_id, role)
             VALUES (?1, ?2, ?3)",
            [&invite.hash, vault_id, role.as_str()],
        )
        .on_unique("a grant of this vault in the invite")
        .on_missing("vault")?;
    }
    Ok(())
}

pub(super) fn get(tx: &Transaction<'_>, hash: &str) -> TxResult<Option<Invite>> {
    let invite = tx
        .query_row(
            &format!("SELECT {INVITE_COLUMNS} FROM user_invites WHERE hash = ?1"),
            [hash],
            invite_row,
        )
        .optional()?;
    let Some(mut invite) = invite else {
        return Ok(None);
    };
    invite.vaults = invite_vaults(tx, hash)?;
    Ok(Some(invite))
}

pub(super) fn list(tx: &Transaction<'_>) -> TxResult<Vec<Invite>> {
    let mut invites = query_all(
        tx,
        &format!("SELECT {INVITE_COLUMNS} FROM user_invites ORDER BY created_at, hash"),
        [],
        invite_row,
    )?;
    for invite in &mut invites {
        invite.vaults = invite_vaults(tx, &invite.hash)?;
    }
    Ok(invites)
}

pub(super) fn accept(tx: &Transaction<'_>, hash: &str, user: &User, at: UnixTime) -> TxResult<()> {
    let pending: bool = tx
        .query_row(
            "SELECT status = 'pending' AND expires_at > ?2 FROM user_invites
             WHERE hash = ?1",
            params![hash, at],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(false);
    if !pending {
        return Err(StoreError::NotFound("invite".into()).into());
    }
    insert_user(tx, user, user.role)?;
    let actor = ActorId::user(&user.id);
    for (vault_id, role) in invite_vaults(tx, hash)? {
        insert_grant(tx, &actor, &vault_id, role)?;
    }
    tx.execute(
        "UPDATE user_invites SET status = ?1 WHERE hash = ?2",
        [InviteStatus::Accepted.as_str(), hash],
    )?;
    Ok(())
}

pub(super) fn revoke(tx: &Transaction<'_>, hash: &str) -> TxResult<()> {
    if tx.execute(
        "UPDATE user_invites SET status = 'revoked' WHERE hash = ?1 AND status = 'pending'",
        [hash],
    )? == 0
    {
        return Err(StoreError::NotFound("invite".into()).into());
    }
    Ok(())
}

impl InviteStore for SqliteStore {
    fn create_invite(&self, invite: &Invite) -> Result<()> {
        self.write("create the invite", |tx| create(tx, invite))
    }

    fn invite(&self, hash: &str) -> Result<Option<Invite>> {
        self.read("read the invite", |tx| get(tx, hash))
    }

    fn invites(&self) -> Result<Vec<Invite>> {
        self.read("list the invites", list)
    }

    fn accept_invite(&self, hash: &str, user: &User) -> Result<()> {
        let at = now();
        self.write("accept the invite", |tx| accept(tx, hash, user, at))
    }

    fn revoke_invite(&self, hash: &str) -> Result<()> {
        self.write("revoke the invite", |tx| revoke(tx, hash))
    }

    fn create_agent_invite(&self, invite: &AgentInvite) -> Result<()> {
        self.write("create the agent invite", |tx| {
            agent_invites::create(tx, invite)
        })
    }

    fn agent_invite(&self, hash: &str) -> Result<Option<AgentInvite>> {
        self.read("read the agent invite", |tx| agent_invites::get(tx, hash))
    }

    fn agent_invites(&self) -> Result<Vec<AgentInvite>> {
        self.read("list the agent invites", agent_invites::list)
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
            agent_invites::revoke(tx, hash)
        })
    }
}
