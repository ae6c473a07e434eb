//! Invites in SQLite: user invites (`user_invites`, with the vaults each will grant in
//! `user_invite_vaults`), and [`InviteStore`] for [`SqliteStore`], at the end of this file, for
//! user and agent invites alike: each method names its operation (for the error message) and
//! runs one transaction. Reading, listing, using once and revoking either kind are the shared
//! functions of `invite_tables.rs`; what is a user invite's own is here (its row, and the
//! user accepting it creates), what is an agent invite's own in `agent_invites.rs`.

use rusqlite::{Row, Transaction, params};

use super::SqliteStore;
use super::agent_invites;
use super::errors::{Constraint, TxResult};
use super::invite_tables::{InviteTable, get, insert_vaults, list, revoke, use_once};
use super::users::insert_user;
use super::{actor_at, actor_columns, text_enum};
use crate::store::{
    ActorId, Agent, AgentInvite, Invite, InviteStatus, InviteStore, Result, TokenRecord, UnixTime,
    User, now,
};

impl InviteTable for Invite {
    const TABLE: &'static str = "user_invites";
    const VAULT_TABLE: &'static str = "user_invite_vaults";
    const COLUMNS: &'static str =
        "hash, email, role, created_by_type, created_by_id, status, created_at, expires_at";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Invite> {
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

    fn mark_used(tx: &Transaction<'_>, hash: &str, _user_id: &str, _at: UnixTime) -> TxResult<()> {
        tx.execute(
            "UPDATE user_invites SET status = ?1 WHERE hash = ?2",
            [InviteStatus::Accepted.as_str(), hash],
        )?;
        Ok(())
    }
}

fn create(tx: &Transaction<'_>, invite: &Invite) -> TxResult<()> {
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
    insert_vaults(tx, invite)
}

fn accept(tx: &Transaction<'_>, hash: &str, user: &User, at: UnixTime) -> TxResult<()> {
    use_once::<Invite, ()>(tx, hash, at, |tx, _| {
        insert_user(tx, user, user.role)?;
        Ok((ActorId::user(&user.id), ()))
    })
}

impl InviteStore for SqliteStore {
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
