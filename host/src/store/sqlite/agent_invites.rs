//! Agent invites in SQLite: how an agent invite's row is stored in `agent_invites` (its
//! vaults in `agent_invite_vaults`), creating one, and the agent redeeming one creates.
//! Reading, listing, redeeming once and revoking are shared with user invites
//! (`invite_tables.rs`); [`InviteStore`](crate::store::InviteStore) for
//! [`SqliteStore`](super::SqliteStore) (`invites.rs`) calls these inside its transactions.
//!
//! An agent name is claimed by an existing agent or by a pending, unexpired invite: creating
//! either checks both, so an invite cannot be created for a taken name and nobody can take the
//! name of a pending invite from under it.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::agents::insert_agent;
use super::errors::{Constraint, TxResult, misuse};
use super::invite_rules::check_name_free;
use super::invite_tables::{InviteTable, insert_vaults, use_once};
use super::tokens::insert_token_row;
use super::{actor_at, actor_columns, text_enum};
use crate::store::{
    ActorId, Agent, AgentInvite, AgentStatus, StoreError, TokenKind, TokenRecord, UnixTime,
};

impl InviteTable for AgentInvite {
    const TABLE: &'static str = "agent_invites";
    const VAULT_TABLE: &'static str = "agent_invite_vaults";
    const COLUMNS: &'static str = "hash, agent_name, role, created_by_type, created_by_id, status, \
                                          created_at, expires_at, agent_id, redeemed_at";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<AgentInvite> {
        Ok(AgentInvite {
            hash: row.get(0)?,
            agent_name: row.get(1)?,
            role: text_enum(row, 2)?,
            vaults: Vec::new(),
            created_by: actor_at(row, 3, 4)?,
            status: text_enum(row, 5)?,
            created_at: row.get(6)?,
            expires_at: row.get(7)?,
            agent_id: row.get(8)?,
            redeemed_at: row.get(9)?,
        })
    }

    fn mark_used(tx: &Transaction<'_>, hash: &str, agent_id: &str, at: UnixTime) -> TxResult<()> {
        tx.execute(
            "UPDATE agent_invites SET status = 'redeemed', agent_id = ?1, redeemed_at = ?2
             WHERE hash = ?3",
            params![agent_id, at, hash],
        )?;
        Ok(())
    }
}

pub(super) fn create(tx: &Transaction<'_>, invite: &AgentInvite) -> TxResult<()> {
    let taken = tx
        .query_row(
            "SELECT 1 FROM agents WHERE name = ?1",
            [&invite.agent_name],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if taken {
        return Err(StoreError::Conflict(format!("agent {}", invite.agent_name)).into());
    }
    check_name_free(tx, &invite.agent_name, invite.created_at)?;
    let (created_by_type, created_by_id) = actor_columns(invite.created_by.as_ref());
    tx.execute(
        "INSERT INTO agent_invites (hash, agent_name, role, created_by_type, created_by_id,
                                    status, created_at, expires_at, agent_id, redeemed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            invite.hash,
            invite.agent_name,
            invite.role.as_str(),
            created_by_type,
            created_by_id,
            invite.status.as_str(),
            invite.created_at,
            invite.expires_at,
            invite.agent_id,
            invite.redeemed_at,
        ],
    )
    .on_unique("invite")?;
    insert_vaults(tx, invite)
}

/// Redeem the invite: the agent it names (id `agent_id`, the invite's role and creator) with
/// its first `token`, then its grants (`invites::use_once`).
pub(super) fn redeem(
    tx: &Transaction<'_>,
    hash: &str,
    agent_id: &str,
    token: &TokenRecord,
    at: UnixTime,
) -> TxResult<Agent> {
    if !matches!(&token.kind, TokenKind::Agent { agent_id: id } if id == agent_id) {
        return Err(misuse(
            "the token of a redeemed invite must be an agent token of the new agent",
        ));
    }
    use_once::<AgentInvite, _>(tx, hash, at, |tx, invite| {
        let agent = Agent {
            id: agent_id.to_owned(),
            name: invite.agent_name.clone(),
            role: invite.role,
            status: AgentStatus::Active,
            created_by: invite.created_by.clone(),
            created_at: at,
            revoked_at: None,
        };
        insert_agent(tx, &agent)?;
        insert_token_row(tx, token)?;
        Ok((ActorId::agent(agent_id), agent))
    })
}
