//! Invites: a user invite asks a person to become a user, an agent invite asks an agent to
//! connect itself; each names the vaults it will grant and is used at most once.

use serde::{Deserialize, Serialize};

use super::{ActorId, Agent, InstanceRole, Result, TokenRecord, UnixTime, User, VaultRole};

/// An invitation for a person to become a user, with the vaults they will join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// SHA-256 of the invite token.
    pub hash: String,
    pub email: String,
    pub role: InstanceRole,
    pub vaults: Vec<(String, VaultRole)>,
    pub created_by: Option<ActorId>,
    pub status: InviteStatus,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InviteStatus {
    Pending,
    Accepted,
    Revoked,
}

/// An invitation for an agent to connect itself: redeeming it once creates the agent it
/// names, with its role and vault grants, and hands the agent its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInvite {
    /// SHA-256 of the invite token.
    pub hash: String,
    /// The name the agent will have.
    pub agent_name: String,
    pub role: InstanceRole,
    pub vaults: Vec<(String, VaultRole)>,
    pub created_by: Option<ActorId>,
    pub status: AgentInviteStatus,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// The agent the invite created, while that agent exists.
    pub agent_id: Option<String>,
    pub redeemed_at: Option<UnixTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentInviteStatus {
    Pending,
    Redeemed,
    Revoked,
}

text_enum!(InviteStatus { Pending => "pending", Accepted => "accepted", Revoked => "revoked" });
text_enum!(AgentInviteStatus { Pending => "pending", Redeemed => "redeemed", Revoked => "revoked" });

/// User invites and agent invites. Every method is one transaction.
pub trait InviteStore {
    fn create_invite(&self, invite: &Invite) -> Result<()>;
    fn invite(&self, hash: &str) -> Result<Option<Invite>>;
    fn invites(&self) -> Result<Vec<Invite>>;
    /// Create `user` from a pending invite with its grants and mark the invite accepted,
    /// atomically; `NotFound` if the invite is not pending.
    fn accept_invite(&self, hash: &str, user: &User) -> Result<()>;
    fn revoke_invite(&self, hash: &str) -> Result<()>;

    /// `Conflict` if an agent has the invite's name or another invite pending at
    /// `invite.created_at` reserves it.
    fn create_agent_invite(&self, invite: &AgentInvite) -> Result<()>;
    fn agent_invite(&self, hash: &str) -> Result<Option<AgentInvite>>;
    fn agent_invites(&self) -> Result<Vec<AgentInvite>>;
    /// Create the agent a pending invite names (id `agent_id`, the invite's role, grants and
    /// creator) with its first `token`, and mark the invite redeemed, atomically.
    /// `NotFound` unless the invite is pending and unexpired at `at`; `Conflict` if an agent
    /// of that name exists.
    fn redeem_agent_invite(
        &self,
        hash: &str,
        agent_id: &str,
        token: &TokenRecord,
        at: UnixTime,
    ) -> Result<Agent>;
    /// `NotFound` unless the invite is pending.
    fn revoke_agent_invite(&self, hash: &str) -> Result<()>;
}
/// What user and agent invites share, for the backends' code that handles both.
pub(super) trait InviteRecord {
    /// What an invite that cannot be used or revoked is not found as: `NotFound("invite")`
    /// for a user invite, `NotFound("pending invite")` for an agent invite.
    const NOT_PENDING: &'static str;
    fn hash(&self) -> &str;
    /// The vaults the invite grants, and the role in each.
    fn vaults(&self) -> &[(String, VaultRole)];
    fn set_vaults(&mut self, vaults: Vec<(String, VaultRole)>);
    /// Whether the invite can be used (accepted, redeemed) at `at`: it is pending and has not
    /// expired. Revoking asks only that it be pending.
    fn is_usable_at(&self, at: UnixTime) -> bool;
}

impl InviteRecord for Invite {
    const NOT_PENDING: &'static str = "invite";

    fn hash(&self) -> &str {
        &self.hash
    }

    fn vaults(&self) -> &[(String, VaultRole)] {
        &self.vaults
    }

    fn set_vaults(&mut self, vaults: Vec<(String, VaultRole)>) {
        self.vaults = vaults;
    }

    fn is_usable_at(&self, at: UnixTime) -> bool {
        self.status == InviteStatus::Pending && self.expires_at > at
    }
}

impl InviteRecord for AgentInvite {
    const NOT_PENDING: &'static str = "pending invite";

    fn hash(&self) -> &str {
        &self.hash
    }

    fn vaults(&self) -> &[(String, VaultRole)] {
        &self.vaults
    }

    fn set_vaults(&mut self, vaults: Vec<(String, VaultRole)>) {
        self.vaults = vaults;
    }

    fn is_usable_at(&self, at: UnixTime) -> bool {
        self.status == AgentInviteStatus::Pending && self.expires_at > at
    }
}
