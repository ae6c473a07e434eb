//! `/v1/vaults`: create, list and delete vaults; their settings; who is in them.
//!
//! Creating a vault makes its creator its admin. Owners see every vault but are not members
//! of those they have not joined. The default vault cannot be deleted.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState, Request, created, find_vault, ok, rfc3339};
use crate::auth::Actor;
use crate::auth::access;
use crate::notify::{WEBHOOK_SETTING, check_webhook_url};
use crate::services::check_name;
use crate::store::{self, ActorId, AgentStatus, Grant, InstanceRole, VaultRole};

/// The per-vault setting for requests to hosts no service covers.
const UNMATCHED_HOST_POLICY: &str = "unmatched_host_policy";

#[derive(Deserialize)]
struct CreateVault {
    #[serde(default)]
    name: String,
}

pub async fn create(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Member)?;
    let body: CreateVault = request.json()?;
    check_vault_name(&body.name)?;
    let admin = session.actor.id();
    let name = body.name;
    let vault = state
        .db
        .run(move |store| store.create_vault(&name, admin.as_ref()))
        .await?;
    created(&json!({ "id": vault.id, "name": vault.name, "created_at": rfc3339(vault.created_at) }))
}

pub async fn list(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let actor = session.actor;
    let vaults = state
        .db
        .run(move |store| {
            let vaults = store.vaults()?;
            let grants = match actor.id() {
                Some(id) => store.grants_of(&id)?,
                None => Vec::new(),
            };
            let is_owner = actor.instance_role() == Some(InstanceRole::Owner);
            Ok(vaults
                .into_iter()
                .filter_map(|vault| {
                    let role = match &actor {
                        Actor::Scoped { vault_id, role, .. } => {
                            (vault_id == &vault.id).then_some(*role)
                        }
                        _ => grants
                            .iter()
                            .find(|g| g.vault_id == vault.id)
                            .map(|g| g.role),
                    };
                    match (role, is_owner) {
                        (Some(role), _) => Some(json!({
                            "id": vault.id, "name": vault.name, "role": role,
                            "membership": "explicit", "created_at": rfc3339(vault.created_at),
                        })),
                        (None, true) => Some(json!({
                            "id": vault.id, "name": vault.name, "role": null,
                            "membership": "implicit", "created_at": rfc3339(vault.created_at),
                        })),
                        (None, false) => None,
                    }
                })
                .collect::<Vec<_>>())
        })
        .await?;
    ok(&json!({ "vaults": vaults }))
}

pub async fn delete(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::AdminOrOwner).await?;
    if vault.name == store::DEFAULT_VAULT {
        return Err(ApiError::bad_request("Cannot delete the default vault"));
    }
    let id = vault.id.clone();
    state.db.run(move |store| store.delete_vault(&id)).await?;
    ok(&json!({ "name": vault.name, "deleted": true }))
}

/// A name a vault may have: a slug, and not `users`.
fn check_vault_name(name: &str) -> Result<(), ApiError> {
    check_name(name).map_err(ApiError::bad_request)?;
    if name == "users" {
        return Err(ApiError::bad_request("name \"users\" is reserved"));
    }
    Ok(())
}

/// `POST /v1/vaults/{name}/rename`: its admins and owners give it a new name. Agents that
/// name it in `X-Vault` must use the new one; tokens scoped to it are unaffected.
pub async fn rename(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::AdminOrOwner).await?;
    if vault.name == store::DEFAULT_VAULT {
        return Err(ApiError::bad_request("Cannot rename the default vault"));
    }
    let body: super::NewName = request.json()?;
    check_vault_name(&body.name)?;
    let (id, new_name) = (vault.id.clone(), body.name.clone());
    state
        .db
        .run(move |store| store.rename_vault(&id, &new_name))
        .await?;
    ok(&json!({ "id": vault.id, "old_name": vault.name, "name": body.name }))
}

/// `GET /v1/vaults/{name}/context`: the vault as the caller sees it: its name and the
/// caller's role there.
pub async fn context(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let vault = find_vault(state, name).await?;
    let (actor, checked) = (session.actor, vault.clone());
    let role = state
        .db
        .run(move |store| {
            Ok(access::require_vault(
                store,
                &actor,
                &checked,
                VaultRole::Proxy,
            ))
        })
        .await??;
    ok(&json!({ "vault_name": vault.name, "vault_role": role }))
}

/// `GET /v1/admin/vaults`: every vault of the instance, for its owners.
pub async fn all(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Owner)?;
    let vaults = state.db.run(|store| store.vaults()).await?;
    let listed: Vec<_> = vaults
        .iter()
        .map(|vault| {
            json!({
                "id": vault.id,
                "name": vault.name,
                "is_default": vault.name == store::DEFAULT_VAULT,
                "created_at": rfc3339(vault.created_at),
            })
        })
        .collect();
    ok(&json!({ "vaults": listed }))
}

/// `POST /v1/vaults/{name}/join`: an owner, who sees every vault, becomes one of its
/// admins.
pub async fn join(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Owner)?;
    let actor = session
        .actor
        .id()
        .ok_or_else(|| ApiError::forbidden("Owner role required"))?;
    let vault = find_vault(state, name).await?;
    if grant_in(state, &actor, &vault.id).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "You are already a member of vault {}",
            vault.name
        )));
    }
    let grant = Grant {
        actor,
        vault_id: vault.id.clone(),
        role: VaultRole::Admin,
    };
    state.db.run(move |store| store.set_grant(&grant)).await?;
    ok(&json!({ "vault": vault.name, "role": VaultRole::Admin, "joined": true }))
}

/// `POST /v1/vaults/{name}/leave`: a user or agent gives up its own grant in the vault
/// (not the last admin's).
pub async fn leave(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let actor = session.actor.id().ok_or_else(|| {
        ApiError::forbidden("A vault token cannot leave its vault; revoke it instead")
    })?;
    let vault = find_vault(state, name).await?;
    if grant_in(state, &actor, &vault.id).await?.is_none() {
        return Err(ApiError::conflict(format!(
            "You have no grant in vault {} to leave",
            vault.name
        )));
    }
    let vault_id = vault.id.clone();
    state
        .db
        .run(move |store| store.remove_grant(&actor, &vault_id))
        .await?;
    ok(&json!({ "message": format!("You left vault {}", vault.name) }))
}

pub async fn settings(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (session, vault) =
        authorized_vault(state, request, name, Check::Role(VaultRole::Proxy)).await?;
    let id = vault.id.clone();
    let (policy, webhook) = state
        .db
        .run(move |store| {
            Ok((
                store.vault_setting(&id, UNMATCHED_HOST_POLICY)?,
                store.vault_setting(&id, WEBHOOK_SETTING)?,
            ))
        })
        .await?;
    let mut settings = json!({
        "unmatched_host_policy": policy.unwrap_or_else(|| "passthrough".to_owned()),
        "proposal_webhook": webhook.is_some(),
    });
    // A webhook URL often carries a secret: only those who may change it see it.
    if check(state, &session.actor, &vault, Check::AdminOrOwner)
        .await
        .is_ok()
    {
        settings["proposal_webhook_url"] = json!(webhook);
    }
    ok(&settings)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsUpdate {
    unmatched_host_policy: Option<String>,
    /// Empty removes the webhook.
    proposal_webhook_url: Option<String>,
}

pub async fn update_settings(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::AdminOrOwner).await?;
    let body: SettingsUpdate = request.json()?;
    if body.unmatched_host_policy.is_none() && body.proposal_webhook_url.is_none() {
        return Err(ApiError::bad_request(
            "Give unmatched_host_policy or proposal_webhook_url",
        ));
    }
    let policy = match body.unmatched_host_policy.as_deref() {
        None => None,
        Some(policy @ ("passthrough" | "deny")) => Some(Some(policy.to_owned())),
        Some("") => Some(None),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unmatched_host_policy must be \"passthrough\" or \"deny\", not {other:?}"
            )));
        }
    };
    let webhook = match body.proposal_webhook_url.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(url) => {
            check_webhook_url(url, state.dev_mode).map_err(ApiError::bad_request)?;
            Some(Some(url.to_owned()))
        }
    };
    let id = vault.id.clone();
    state
        .db
        .run(move |store| {
            if let Some(policy) = policy {
                store.set_vault_setting(&id, UNMATCHED_HOST_POLICY, policy.as_deref())?;
            }
            if let Some(webhook) = webhook {
                store.set_vault_setting(&id, WEBHOOK_SETTING, webhook.as_deref())?;
            }
            Ok(())
        })
        .await?;
    settings(state, request, name).await
}

/// What a vault-level action needs.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    Role(VaultRole),
    AdminOrOwner,
}

/// The vault named `name`, if the caller has the access `needed`; and the caller's session.
pub async fn authorized_vault(
    state: &ApiState,
    request: &Request,
    name: &str,
    needed: Check,
) -> Result<(crate::auth::Session, store::Vault), ApiError> {
    let session = request.session(state).await?;
    let vault = find_vault(state, name).await?;
    check(state, &session.actor, &vault, needed).await?;
    Ok((session, vault))
}

/// Check the actor's access to `vault`.
pub async fn check(
    state: &ApiState,
    actor: &Actor,
    vault: &store::Vault,
    needed: Check,
) -> Result<(), ApiError> {
    let actor = actor.clone();
    let vault = vault.clone();
    let outcome = state
        .db
        .run(move |store| {
            Ok(match needed {
                Check::Role(role) => access::require_vault(store, &actor, &vault, role).map(|_| ()),
                Check::AdminOrOwner => access::require_vault_admin_or_owner(store, &actor, &vault),
            })
        })
        .await?;
    Ok(outcome?)
}

pub async fn users(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let users = members(state, request, name, |store, grant| {
        Ok(match grant.actor.kind {
            store::ActorKind::User => store
                .user(&grant.actor.id)?
                .map(|user| json!({ "email": user.email, "role": grant.role, "status": "active" })),
            store::ActorKind::Agent => None,
        })
    })
    .await?;
    ok(&json!({ "users": users }))
}

/// The vault's grants, each described by `describe` (`None` leaves it out).
async fn members(
    state: &ApiState,
    request: &Request,
    name: &str,
    describe: fn(&dyn store::Store, &Grant) -> store::Result<Option<serde_json::Value>>,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Proxy)).await?;
    let id = vault.id.clone();
    Ok(state
        .db
        .run(move |store| {
            let mut listed = Vec::new();
            for grant in store.vault_grants(&id)? {
                listed.extend(describe(store, &grant)?);
            }
            Ok(listed)
        })
        .await?)
}

#[derive(Deserialize)]
struct Member {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    role: Option<VaultRole>,
}

pub async fn add_user(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Admin)).await?;
    let body: Member = request.json()?;
    let role = body.role.unwrap_or(VaultRole::Member);
    if role == VaultRole::Proxy {
        return Err(ApiError::bad_request(
            "A user's vault role must be admin or member",
        ));
    }
    let email = body.email.trim().to_ascii_lowercase();
    let vault_id = vault.id.clone();
    let lookup = email.clone();
    let user = state
        .db
        .run(move |store| store.user_by_email(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("User not found: {email}")))?;
    add_grant(state, ActorId::user(&user.id), &vault_id, role, &email).await?;
    created(&json!({ "email": email, "role": role }))
}

pub async fn remove_user(
    state: &ApiState,
    request: &Request,
    name: &str,
    email: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Admin)).await?;
    let actor = user_actor(state, email).await?;
    let vault_id = vault.id.clone();
    state
        .db
        .run(move |store| store.remove_grant(&actor, &vault_id))
        .await?;
    ok(&json!({ "message": format!("Removed {email} from vault {}", vault.name) }))
}

#[derive(Deserialize)]
struct RoleChange {
    role: VaultRole,
}

pub async fn set_user_role(
    state: &ApiState,
    request: &Request,
    name: &str,
    email: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Admin)).await?;
    let body: RoleChange = request.json()?;
    if body.role == VaultRole::Proxy {
        return Err(ApiError::bad_request(
            "A user's vault role must be admin or member",
        ));
    }
    let actor = user_actor(state, email).await?;
    change_grant(state, actor, &vault, body.role, email).await?;
    ok(
        &json!({ "email": email, "role": body.role, "message": format!("{email} is now {} of vault {}", body.role, vault.name) }),
    )
}

pub async fn agents(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let agents = members(state, request, name, |store, grant| {
        Ok(match grant.actor.kind {
            store::ActorKind::Agent => store.agent(&grant.actor.id)?.map(|agent| {
                json!({ "name": agent.name, "agent_id": agent.id, "vault_role": grant.role, "status": agent.status })
            }),
            store::ActorKind::User => None,
        })
    })
    .await?;
    ok(&json!({ "agents": agents }))
}

pub async fn add_agent(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Admin)).await?;
    let body: Member = request.json()?;
    let role = body.role.unwrap_or(VaultRole::Proxy);
    let agent = agent_named(state, &body.name).await?;
    if agent.status == AgentStatus::Revoked {
        return Err(ApiError::conflict(format!(
            "Agent {} is revoked",
            agent.name
        )));
    }
    add_grant(
        state,
        ActorId::agent(&agent.id),
        &vault.id,
        role,
        &agent.name,
    )
    .await?;
    created(
        &json!({ "message": format!("Agent {} added to vault {} as {role}", agent.name, vault.name) }),
    )
}

pub async fn remove_agent(
    state: &ApiState,
    request: &Request,
    name: &str,
    agent_name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Admin)).await?;
    let agent = agent_named(state, agent_name).await?;
    let (actor, vault_id) = (ActorId::agent(&agent.id), vault.id.clone());
    state
        .db
        .run(move |store| store.remove_grant(&actor, &vault_id))
        .await?;
    ok(&json!({ "message": format!("Agent {} removed from vault {}", agent.name, vault.name) }))
}

pub async fn set_agent_role(
    state: &ApiState,
    request: &Request,
    name: &str,
    agent_name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Admin)).await?;
    let body: RoleChange = request.json()?;
    let agent = agent_named(state, agent_name).await?;
    let old = change_grant(
        state,
        ActorId::agent(&agent.id),
        &vault,
        body.role,
        &agent.name,
    )
    .await?;
    ok(
        &json!({ "message": format!("Agent {} is now {} of vault {}", agent.name, body.role, vault.name), "old_role": old, "new_role": body.role }),
    )
}

async fn user_actor(state: &ApiState, email: &str) -> Result<ActorId, ApiError> {
    let lookup = email.trim().to_ascii_lowercase();
    state
        .db
        .run(move |store| store.user_by_email(&lookup))
        .await?
        .map(|user| ActorId::user(user.id))
        .ok_or_else(|| ApiError::not_found(format!("User not found: {email}")))
}

pub async fn agent_named(state: &ApiState, name: &str) -> Result<store::Agent, ApiError> {
    let lookup = name.to_owned();
    state
        .db
        .run(move |store| store.agent_by_name(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Agent not found: {name}")))
}

/// The grant `actor` holds in the vault, if any.
async fn grant_in(
    state: &ApiState,
    actor: &ActorId,
    vault_id: &str,
) -> Result<Option<Grant>, ApiError> {
    let (actor, vault_id) = (actor.clone(), vault_id.to_owned());
    let grant = state
        .db
        .run(move |store| {
            Ok(store
                .grants_of(&actor)?
                .into_iter()
                .find(|g| g.vault_id == vault_id))
        })
        .await?;
    Ok(grant)
}

/// Give `actor` a role in a vault it is not in yet.
async fn add_grant(
    state: &ApiState,
    actor: ActorId,
    vault_id: &str,
    role: VaultRole,
    who: &str,
) -> Result<(), ApiError> {
    let vault_id = vault_id.to_owned();
    if grant_in(state, &actor, &vault_id).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "{who} already has access to this vault"
        )));
    }
    let grant = Grant {
        actor,
        vault_id,
        role,
    };
    state.db.run(move |store| store.set_grant(&grant)).await?;
    Ok(())
}

/// Change the role of an actor already in the vault; returns the old role.
async fn change_grant(
    state: &ApiState,
    actor: ActorId,
    vault: &store::Vault,
    role: VaultRole,
    who: &str,
) -> Result<VaultRole, ApiError> {
    let vault_id = vault.id.clone();
    let old = grant_in(state, &actor, &vault_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{who} has no access to vault {}", vault.name)))?
        .role;
    let grant = Grant {
        actor,
        vault_id,
        role,
    };
    state.db.run(move |store| store.set_grant(&grant)).await?;
    Ok(old)
}
