//! Agents: the programs that send requests through the proxy, each with an instance role,
//! vault grants and tokens of its own.

use serde::{Deserialize, Serialize};

use super::{ActorId, Grant, InstanceRole, Result, TokenRecord, UnixTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentStatus {
    Active,
    Revoked,
}

text_enum!(AgentStatus { Active => "active", Revoked => "revoked" });

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub role: InstanceRole,
    pub status: AgentStatus,
    pub created_by: Option<ActorId>,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// Agents. Every method is one transaction.
pub trait AgentStore {
    /// Create an agent with its grants and its first token; `Conflict` if the name is taken
    /// or reserved by an agent invite pending at `agent.created_at`.
    fn create_agent(&self, agent: &Agent, grants: &[Grant], token: &TokenRecord) -> Result<()>;
    fn agent(&self, id: &str) -> Result<Option<Agent>>;
    fn agent_by_name(&self, name: &str) -> Result<Option<Agent>>;
    fn agents(&self) -> Result<Vec<Agent>>;
    /// Mark revoked; delete its tokens and the scoped tokens it minted, and revoke the agent
    /// invites it created. `LastOwner` if it is the last owner.
    fn revoke_agent(&self, id: &str, at: UnixTime) -> Result<()>;
    /// As `revoke_agent`, then delete the agent and its grants.
    fn delete_agent(&self, id: &str) -> Result<()>;
    /// Replace all of the agent's tokens with `token` and make it active again.
    fn rotate_agent_token(&self, id: &str, token: &TokenRecord) -> Result<()>;
    /// `Conflict` if another agent, or a pending invite unexpired at `at`, has the name.
    fn rename_agent(&self, id: &str, name: &str, at: UnixTime) -> Result<()>;
    /// `LastOwner` if this demotes the last active owner.
    fn set_agent_role(&self, id: &str, role: InstanceRole) -> Result<()>;
}
