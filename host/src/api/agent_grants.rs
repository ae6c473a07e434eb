//! What creating an agent and inviting one share: the agent's name and the vault grants it
//! is to get, checked against what the person creating it may give.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, find_vault};
use crate::auth::Actor;
use crate::services::check_name;
use crate::store::{InstanceRole, VaultRole};

#[derive(Deserialize)]
pub(super) struct VaultAssignment {
    vault_name: String,
    vault_role: Option<VaultRole>,
}

/// A name an agent may have: a slug (as service names), and not `invites`, which
/// `/v1/agents/invites` would shadow.
pub(super) fn check_agent_name(name: &str) -> Result<(), ApiError> {
    check_name(name).map_err(ApiError::bad_request)?;
    if name == "invites" {
        return Err(ApiError::bad_request(
            "name \"invites\" is reserved; choose another",
        ));
    }
    Ok(())
}

/// The vault grants an agent is to get, checked: the vaults exist and, unless `actor` is an
/// owner, `actor` administers each. As `(vault id, role)` (role `proxy` unless given), and
/// as the `[{vault_name, vault_role}]` to show.
pub(super) async fn vault_assignments(
    state: &ApiState,
    actor: &Actor,
    assignments: &[VaultAssignment],
) -> Result<(Vec<(String, VaultRole)>, Vec<Value>), ApiError> {
    let mut grants = Vec::new();
    let mut shown = Vec::new();
    for assignment in assignments {
        let vault = find_vault(state, &assignment.vault_name).await?;
        let vault_role = assignment.vault_role.unwrap_or(VaultRole::Proxy);
        if actor.instance_role() != Some(InstanceRole::Owner) {
            super::vaults::check(
                state,
                actor,
                &vault,
                super::vaults::Check::Role(VaultRole::Admin),
            )
            .await?;
        }
        shown.push(json!({ "vault_name": vault.name, "vault_role": vault_role }));
        grants.push((vault.id, vault_role));
    }
    Ok((grants, shown))
}
