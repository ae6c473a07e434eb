//! Who may do what: instance roles (`owner` > `member` > `no-access`) for instance-wide
//! actions, vault roles (`admin` > `member` > `proxy`) inside a vault.
//!
//! Owners are not implicit members of vaults: vault content needs an explicit grant. A
//! vault-scoped session acts only in its own vault, with its own role, and never on the
//! instance. The messages are the agent protocol's.
//!
//! Two things are for people only, whatever an agent's role: reading credential values
//! ([`require_reveal`]) and deciding on proposals ([`check_review`]). A person is a user's
//! own login session; a vault-scoped session is what agents are handed, so it counts as an
//! agent even when a user minted it. This is stricter than Agent Vault, where a member-role
//! agent reads every value and approves proposals.

use super::Actor;
use crate::store::{ActorId, ActorKind, InstanceRole, Store, StoreError, Vault, VaultRole};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    #[error("Instance member role required")]
    InstanceMember,
    #[error("Owner role required")]
    Owner,
    #[error("No access to this vault")]
    NoVaultAccess,
    #[error("Member role required")]
    VaultMember,
    #[error("Admin role required")]
    VaultAdmin,
    #[error("Session not authorized for this vault")]
    WrongVault,
    #[error("This needs a user or agent token, not a vault-scoped session")]
    NeedsAccount,
    #[error(
        "Credential values are shown only to people signed in with their own login; agents \
         and vault sessions can set and delete credentials but never read them back"
    )]
    ValuesAreForPeople,
    #[error("A vault session cannot review proposals; log in as a vault member")]
    SessionCannotReview,
    #[error(
        "Proposals are approved and rejected by people signed in with their own login, not by \
         agents (an owner can let agents review other agents' proposals with the instance \
         setting agents_can_approve_proposals)"
    )]
    ReviewIsForPeople,
    #[error(
        "A proposal cannot be approved or rejected by whoever made it, directly or through a \
         vault session they minted"
    )]
    OwnProposal,
    #[error(
        "This proposal does not record who made it (it was made before this server recorded \
         creators), so it cannot be approved; reject it and ask for it again"
    )]
    UnknownProposer,
    #[error("Instance settings are changed by an owner signed in with their own login")]
    SettingsAreForPeople,
    #[error(
        "Plugin dry runs are for people signed in with their own login (they run plugin code on \
         the plugin threads the proxy uses)"
    )]
    DryRunIsForPeople,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The actor's instance role, if it is at least `min`.
pub fn require_instance(actor: &Actor, min: InstanceRole) -> Result<InstanceRole, Denied> {
    let role = actor.instance_role().ok_or(Denied::NeedsAccount)?;
    if role >= min {
        Ok(role)
    } else if min == InstanceRole::Owner {
        Err(Denied::Owner)
    } else {
        Err(Denied::InstanceMember)
    }
}

/// The actor's role in `vault`, if any.
pub fn vault_role(
    store: &dyn Store,
    actor: &Actor,
    vault: &Vault,
) -> Result<Option<VaultRole>, StoreError> {
    match actor {
        Actor::Scoped { vault_id, role, .. } => Ok((vault_id == &vault.id).then_some(*role)),
        _ => {
            let id = actor.id().expect("users and agents have ids");
            Ok(store
                .grants_of(&id)?
                .into_iter()
                .find(|grant| grant.vault_id == vault.id)
                .map(|grant| grant.role))
        }
    }
}

/// The actor's role in `vault`, if it is at least `min`.
pub fn require_vault(
    store: &dyn Store,
    actor: &Actor,
    vault: &Vault,
    min: VaultRole,
) -> Result<VaultRole, AccessError> {
    let role = match (actor, vault_role(store, actor, vault)?) {
        (_, Some(role)) => role,
        (Actor::Scoped { .. }, None) => return Err(Denied::WrongVault.into()),
        (_, None) => return Err(Denied::NoVaultAccess.into()),
    };
    if role >= min {
        Ok(role)
    } else if min == VaultRole::Admin {
        Err(Denied::VaultAdmin.into())
    } else {
        Err(Denied::VaultMember.into())
    }
}

/// A vault admin, or an instance owner (who may administer any vault's existence).
pub fn require_vault_admin_or_owner(
    store: &dyn Store,
    actor: &Actor,
    vault: &Vault,
) -> Result<(), AccessError> {
    if actor.instance_role() == Some(InstanceRole::Owner) {
        return Ok(());
    }
    require_vault(store, actor, vault, VaultRole::Admin).map(|_| ())
}

/// A person's role in `vault` if it is at least `member`: what reading credential values
/// takes. Agents and vault-scoped sessions are refused whatever their role: they may set and
/// delete credentials, never read them back.
pub fn require_reveal(
    store: &dyn Store,
    actor: &Actor,
    vault: &Vault,
) -> Result<VaultRole, AccessError> {
    // Someone with no access to the vault learns only that.
    let role = require_vault(store, actor, vault, VaultRole::Proxy)?;
    if !actor.is_person() {
        return Err(Denied::ValuesAreForPeople.into());
    }
    require_vault(store, actor, vault, VaultRole::Member).map(|_| role)
}

/// What a reviewer does to a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    Approve,
    Reject,
}

/// Where a proposal came from, as the review rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Who is answerable for it: the token's user or agent, or the minter of the vault
    /// session it came through; `None` if that was never recorded.
    pub created_by: Option<&'a ActorId>,
    /// Whether it came through a vault-scoped session.
    pub through_session: bool,
}

/// Whether `actor`, whose role in the proposal's vault is `role` (at least `member`, checked
/// before), may `review` a proposal from `origin`:
///
/// - people decide; agents only if `agents_may_review` (an owner's instance setting), and
///   vault-scoped sessions never;
/// - nobody decides on a proposal they made, directly or through a vault session they minted.
///   One exception: a vault admin may decide on what came through a session they minted
///   (they handed it to an agent, as `vault run` does), since an admin may make every change
///   a proposal carries directly anyway. A member may not: that would let them write
///   services, which takes an admin;
/// - a proposal that records no creator is never approved (anyone might have made it); it
///   can be rejected.
pub fn check_review(
    actor: &Actor,
    role: VaultRole,
    origin: Origin<'_>,
    review: Review,
    agents_may_review: bool,
) -> Result<(), Denied> {
    match actor {
        Actor::Scoped { .. } => return Err(Denied::SessionCannotReview),
        Actor::Agent(_) if !agents_may_review => return Err(Denied::ReviewIsForPeople),
        Actor::User(_) | Actor::Agent(_) => {}
    }
    let Some(creator) = origin.created_by else {
        return match review {
            Review::Approve => Err(Denied::UnknownProposer),
            Review::Reject => Ok(()),
        };
    };
    if actor.id().as_ref() != Some(creator) {
        return Ok(());
    }
    let handed_to_an_agent =
        origin.through_session && creator.kind == ActorKind::User && role == VaultRole::Admin;
    if handed_to_an_agent {
        Ok(())
    } else {
        Err(Denied::OwnProposal)
    }
}

#[cfg(test)]
mod tests;
