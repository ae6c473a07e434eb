//! Agent invites in SQLite: `agent_invites` and the vaults each will grant, `agent_invite_vaults`.
//! [`InviteStore`](crate::store::InviteStore) for [`SqliteStore`](super::SqliteStore)
//! (`invites.rs`) calls these inside its transactions.
//!
//! An agent name is claimed by an existing agent or by a pending, unexpired invite: creating
//! either checks both, so an invite cannot be created for a taken name and nobody can take the
//! name of a pending invite from under it. Redemption re-checks the invite inside the
//! transaction and flips its status there, so it succeeds at most once however many
//! redemptions race.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::agents::insert_agent;
use super::errors::{Constraint, TxResult, misuse};
use super::grants::insert_grant;
use super::invite_rules::check_name_free;
use super::tokens::insert_token_row;
use super::{actor_at, actor_columns, query_all, text_enum};
use crate::store::{
    ActorId, Agent, AgentInvite, AgentInviteStatus, AgentStatus, StoreError, TokenKind,
    TokenRecord, UnixTime, VaultRole,
};

const COLUMNS: &str = "hash, agent_name, role, created_by_type, created_by_id, status, \
                       created_at, expires_at, agent_id, redeemed_at";

fn invite_row(row: &Row<'_>) -> rusqlite::Result<AgentInvite> {
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

fn vaults_of(tx: &Transaction<'_>, hash: &str) -> TxResult<Vec<(String, VaultRole)>> {
    query_all(
        tx,
        "SELECT vault_id, role FROM agent_invite_vaults WHERE invite_hash = ?1 ORDER BY vault_id",
        [hash],
        |row| Ok((row.get(0)?, text_enum(row, 1)?)),
    )
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
    for (vault_id, role) in &invite.vaults {
        tx.execute(
            "INSERT INTO agent_invite_vaults (invite_hash, vault_id, role) VALUES (?1, ?2, ?3)",
            [&invite.hash, vault_id, role.as_str()],
        )
        .on_unique("a grant of this vault in the invite")
        .on_missing("vault")?;
    }
    Ok(())
}

pub(super) fn get(tx: &Transaction<'_>, hash: &str) -> TxResult<Option<AgentInvite>> {
    let invite = tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM agent_invites WHERE hash = ?1"),
            [hash],
            invite_row,
        )
        .optional()?;
    let Some(mut invite) = invite else {
        return Ok(None);
    };
    invite.vaults = vaults_of(tx, hash)?;
    Ok(Some(invite))
}

pub(super) fn list(tx: &Transaction<'_>) -> TxResult<Vec<AgentInvite>> {
    let mut invites = query_all(
        tx,
        &format!("SELECT {COLUMNS} FROM agent_invites ORDER BY created_at, hash"),
        [],
        invite_row,
    )?;
    for invite in &mut invites {
        invite.vaults = vaults_of(tx, &invite.hash)?;
    }
    Ok(invites)
}

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
    let invite = get(tx, hash)?
        .filter(|invite| invite.status == AgentInviteStatus::Pending && invite.expires_at > at)
        .ok_or(StoreError::NotFound("pending invite".into()))?;
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
    let actor = ActorId::agent(agent_id);
    for (vault_id, role) in &invite.vaults {
        insert_grant(tx, &actor, vault_id, *role)?;
    }
    insert_token_row(tx, token)?;
    tx.execute(
        "UPDATE agent_invites SET status = 'redeemed', agent_id = ?1, redeemed_at = ?2
         WHERE hash = ?3",
        params![agent_id, at, hash],
    )?;
    Ok(agent)
}

pub(super) fn revoke(tx: &Transaction<'_>, hash: &str) -> TxResult<()> {
    let changed = tx.execute(
        "UPDATE agent_invites SET status = 'revoked' WHERE hash = ?1 AND status = 'pending'",
        [hash],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound("pending invite".into()).into());
    }
    Ok(())
}
