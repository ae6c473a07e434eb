//! Proposals: an agent's request for services and credential slots, for a human to approve
//! or reject, and what approving one writes.

use serde::{Deserialize, Serialize};

use super::{ActorId, Result, StoredCredential, UnixTime};

/// An agent's request for services and credential slots, for a human to approve or reject.
/// The proposed services and slots are JSON documents the API validated; they never hold a
/// credential value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub vault_id: String,
    /// Counts up from 1 in each vault.
    pub id: i64,
    pub status: ProposalStatus,
    pub services_json: String,
    pub credentials_json: String,
    pub message: String,
    pub user_message: String,
    /// Who is answerable for the proposal: the user or agent whose token made it, or whoever
    /// minted the vault session it came through. `None` only for proposals stored before
    /// creators were recorded whose session was gone by then; those are never approved.
    pub created_by: Option<ActorId>,
    /// The public id of the vault session it came through, if it did.
    pub created_by_session: Option<String>,
    /// SHA-256 of the approval link's token.
    pub approval_hash: String,
    pub approval_expires_at: UnixTime,
    pub created_at: UnixTime,
    /// A proposal still pending at this time has expired.
    pub expires_at: UnixTime,
    pub reviewed_by: Option<ActorId>,
    pub reviewed_at: Option<UnixTime>,
    pub review_note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProposalStatus {
    Pending,
    Applied,
    Rejected,
}

text_enum!(ProposalStatus { Pending => "pending", Applied => "applied", Rejected => "rejected" });

/// What approving a proposal writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalApplication {
    /// The vault's services document after the merge, and the one the merge started from
    /// (`None`: the vault had none); the write fails if the stored one is no longer that.
    pub services: Option<(String, Option<String>)>,
    /// Credentials to set, sealed.
    pub put: Vec<StoredCredential>,
    /// Credential keys to delete.
    pub delete: Vec<String>,
}

/// Proposals. Every method is one transaction.
pub trait ProposalStore {
    /// Store a pending proposal under the next id of its vault (its `id` is ignored); the
    /// id. `TooMany` if `max_pending` proposals of the vault are pending and unexpired at
    /// `proposal.created_at`.
    fn create_proposal(&self, proposal: &Proposal, max_pending: usize) -> Result<i64>;
    fn proposal(&self, vault_id: &str, id: i64) -> Result<Option<Proposal>>;
    fn proposal_by_approval(&self, approval_hash: &str) -> Result<Option<Proposal>>;
    /// A vault's proposals, newest first.
    fn proposals(&self, vault_id: &str) -> Result<Vec<Proposal>>;
    /// How many proposals of all vaults are pending and unexpired at `at` (`/metrics`).
    fn pending_proposals(&self, at: UnixTime) -> Result<u64>;
    /// Write what approving the proposal means and mark it applied by `reviewer`, in one
    /// transaction. `NotFound` unless it is pending and unexpired at `at`; `Conflict` if the
    /// vault's services changed since the application was computed.
    fn apply_proposal(
        &self,
        vault_id: &str,
        id: i64,
        application: &ProposalApplication,
        reviewer: &ActorId,
        at: UnixTime,
    ) -> Result<()>;
    /// Mark the proposal rejected by `reviewer`, with an optional reason; `NotFound` unless it
    /// is pending and unexpired at `at`.
    fn reject_proposal(
        &self,
        vault_id: &str,
        id: i64,
        reviewer: &ActorId,
        reason: Option<&str>,
        at: UnixTime,
    ) -> Result<()>;
}
