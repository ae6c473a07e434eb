//! Agents in SQLite: the `agents` table. [`AgentStore`] for [`SqliteStore`] is at the end of this
//! file: each method names its operation (for the error message) and runs these functions in one
//! transaction.
//!
//! An agent is created with its grants and its first token in one transaction, under a name
//! no other agent or pending agent invite holds. Revoking or deleting an agent, or taking
//! away its owner role, is refused while it is the last owner ([`super::roles`]); revoking,
//! deleting and rotating end its tokens and the scoped sessions it minted with them.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::errors::{Constraint, TxResult};
use super::grants::insert_grant;
use super::roles::{keep_an_owner, keep_vault_admins};
use super::tokens::{delete_agent_tokens, insert_token_row};
use super::{actor_at, actor_columns, invite_rules, query_all, text_enum};
use crate::store::{
    ActorId, Agent, AgentStatus, AgentStore, Grant, InstanceRole, Result, StoreError, TokenRecord,
    UnixTime, contracts,
};

const AGENT_COLUMNS: &str =
    "id, name, role, status, created_by_type, created_by_id, created_at, revoked_at";

fn agent_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: row.get(0)?,
        name: row.get(1)?,
        role: text_enum(row, 2)?,
        status: text_enum(row, 3)?,
        created_by: actor_at(row, 4, 5)?,
        created_at: row.get(6)?,
        revoked_at: row.get(7)?,
    })
}

fn find_agent(tx: &Transaction<'_>, id: &str) -> TxResult<Agent> {
    tx.query_row(
        &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"),
        [id],
        agent_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound("agent".into()).into())
}

pub(super) fn insert_agent(tx: &Transaction<'_>, agent: &Agent) -> TxResult<()> {
    let (created_by_type, created_by_id) = actor_columns(agent.created_by.as_ref());
    tx.execute(
        "INSERT INTO agents (id, name, role, status, created_by_type, created_by_id,
                             created_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            agent.id,
            agent.name,
            agent.role.as_str(),
            agent.status.as_str(),
            created_by_type,
            created_by_id,
            agent.created_at,
            agent.revoked_at,
        ],
    )
    .on_unique(&format!("agent {}", agent.name))?;
    Ok(())
}

pub(super) fn create(
    tx: &Transaction<'_>,
    agent: &Agent,
    grants: &[Grant],
    token: &TokenRecord,
) -> TxResult<()> {
    let actor = ActorId::agent(&agent.id);
    invite_rules::check_name_free(tx, &agent.name, agent.created_at)?;
    insert_agent(tx, agent)?;
    for grant in grants {
        insert_grant(tx, &actor, &grant.vault_id, grant.role)?;
    }
    insert_token_row(tx, token)
}

pub(super) fn get(tx: &Transaction<'_>, id: &str) -> TxResult<Option<Agent>> {
    Ok(tx
        .query_row(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"),
            [id],
            agent_row,
        )
        .optional()?)
}

pub(super) fn by_name(tx: &Transaction<'_>, name: &str) -> TxResult<Option<Agent>> {
    Ok(tx
        .query_row(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1"),
            [name],
            agent_row,
        )
        .optional()?)
}

pub(super) fn list(tx: &Transaction<'_>) -> TxResult<Vec<Agent>> {
    query_all(
        tx,
        &format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"),
        [],
        agent_row,
    )
}

pub(super) fn revoke(tx: &Transaction<'_>, id: &str, at: UnixTime) -> TxResult<()> {
    let agent = find_agent(tx, id)?;
    keep_an_owner(
        tx,
        agent.role == InstanceRole::Owner && agent.status == AgentStatus::Active,
    )?;
    // Revoking twice keeps the time of the first revocation.
    tx.execute(
        "UPDATE agents SET status = 'revoked', revoked_at = COALESCE(revoked_at, ?1)
         WHERE id = ?2",
        params![at, id],
    )?;
    invite_rules::revoke_created_by(tx, &ActorId::agent(id))?;
    delete_agent_tokens(tx, id)
}

pub(super) fn delete(tx: &Transaction<'_>, id: &str) -> TxResult<()> {
    let agent = find_agent(tx, id)?;
    keep_an_owner(
        tx,
        agent.role == InstanceRole::Owner && agent.status == AgentStatus::Active,
    )?;
    keep_vault_admins(tx, &ActorId::agent(id))?;
    invite_rules::revoke_created_by(tx, &ActorId::agent(id))?;
    delete_agent_tokens(tx, id)?;
    tx.execute(
        "DELETE FROM vault_grants WHERE actor_type = 'agent' AND actor_id = ?1",
        [id],
    )?;
    tx.execute("DELETE FROM agents WHERE id = ?1", [id])?;
    Ok(())
}

pub(super) fn rename(tx: &Transaction<'_>, id: &str, name: &str, at: UnixTime) -> TxResult<()> {
    find_agent(tx, id)?;
    invite_rules::check_name_free(tx, name, at)?;
    tx.execute("UPDATE agents SET name = ?2 WHERE id = ?1", [id, name])
        .on_unique(&format!("agent {name}"))?;
    Ok(())
}

pub(super) fn set_role(tx: &Transaction<'_>, id: &str, role: InstanceRole) -> TxResult<()> {
    let agent = find_agent(tx, id)?;
    keep_an_owner(
        tx,
        agent.role == InstanceRole::Owner
            && agent.status == AgentStatus::Active
            && role != InstanceRole::Owner,
    )?;
    tx.execute(
        "UPDATE agents SET role = ?1 WHERE id = ?2",
        [role.as_str(), id],
    )?;
    Ok(())
}

pub(super) fn rotate_token(tx: &Transaction<'_>, id: &str, token: &TokenRecord) -> TxResult<()> {
    find_agent(tx, id)?;
    // The scoped sessions minted with the old token go too: a rotation is how a
    // leaked token is retired, and whoever held it may have minted sessions.
    delete_agent_tokens(tx, id)?;
    insert_token_row(tx, token)?;
    tx.execute(
        "UPDATE agents SET status = 'active', revoked_at = NULL WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

impl AgentStore for SqliteStore {
    fn create_agent(&self, agent: &Agent, grants: &[Grant], token: &TokenRecord) -> Result<()> {
        contracts::check_new_agent(agent, grants, token)?;
        self.write("create the agent", |tx| create(tx, agent, grants, token))
    }

    fn agent(&self, id: &str) -> Result<Option<Agent>> {
        self.read("read the agent", |tx| get(tx, id))
    }

    fn agent_by_name(&self, name: &str) -> Result<Option<Agent>> {
        self.read("read the agent", |tx| by_name(tx, name))
    }

    fn agents(&self) -> Result<Vec<Agent>> {
        self.read("list the agents", list)
    }

    fn revoke_agent(&self, id: &str, at: UnixTime) -> Result<()> {
        self.write("revoke the agent", |tx| revoke(tx, id, at))
    }

    fn delete_agent(&self, id: &str) -> Result<()> {
        self.write("delete the agent", |tx| delete(tx, id))
    }

    fn rotate_agent_token(&self, id: &str, token: &TokenRecord) -> Result<()> {
        contracts::check_rotated_token(id, token)?;
        self.write("rotate the agent's token", |tx| rotate_token(tx, id, token))
    }

    fn rename_agent(&self, id: &str, name: &str, at: UnixTime) -> Result<()> {
        self.write("rename the agent", |tx| rename(tx, id, name, at))
    }

    fn set_agent_role(&self, id: &str, role: InstanceRole) -> Result<()> {
        self.write("change the agent's role", |tx| set_role(tx, id, role))
    }
}
