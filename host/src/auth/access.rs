//! Who may do what: instance roles (`owner` > `member` > `no-access`) for instance-wide
//! actions, vault roles (`admin` > `member` > `proxy`) inside a vault.
//!
//! Owners are not implicit members of vaults: vault content needs an explicit grant. A
//! vault-scoped session acts only in its own vault, with its own role, and never on the
//! instance. The messages are the agent protocol's.

use super::Actor;
use crate::store::{InstanceRole, Store, StoreError, Vault, VaultRole};

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
