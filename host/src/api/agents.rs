//! `/v1/agents`: named agents with long-lived tokens (`av_agt_`), shown once at creation and
//! at rotation. Any instance member may create agents; non-owners manage only the agents
//! they created, may not create owner-role agents, and may grant only vaults they admin.
//! The list shows pending agent invites (`agent_invites.rs`) too, as agents to come.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};

use super::agent_grants::{VaultAssignment, check_agent_name, vault_assignments};
use super::vaults::agent_named;
use super::{ApiError, ApiState, Request, created, ok, rfc3339};
use crate::auth::access::{self, Denied};
use crate::auth::{Actor, tokens};
use crate::store::{
    self, ActorId, Agent, AgentStatus, Grant, InstanceRole, Store, TokenKind, TokenRecord,
};

#[derive(Deserialize)]
struct CreateAgent {
    #[serde(default)]
    name: String,
    role: Option<InstanceRole>,
    #[serde(default)]
    vaults: Vec<VaultAssignment>,
}

fn agent_token(
    agent_id: &str,
    created_by: Option<ActorId>,
) -> Result<(String, TokenRecord), ApiError> {
    let minted = tokens::mint(tokens::AGENT_PREFIX)?;
    let now = store::now();
    let record = TokenRecord {
        hash: minted.hash.clone(),
        public_id: minted.public_id.clone(),
        kind: TokenKind::Agent {
            agent_id: agent_id.to_owned(),
        },
        created_by,
        created_at: now,
        last_used_at: now,
        expires_at: None,
    };
    Ok((minted.token.to_string(), record))
}

/// An agent's vaults as `[{vault_name, vault_role}]`.
fn vaults_of(store: &dyn Store, agent: &Agent) -> store::Result<Vec<Value>> {
    let mut vaults = Vec::new();
    for grant in store.grants_of(&ActorId::agent(&agent.id))? {
        if let Some(vault) = store.vault_by_id(&grant.vault_id)? {
            vaults.push(json!({ "vault_name": vault.name, "vault_role": grant.role }));
        }
    }
    Ok(vaults)
}

fn describe(store: &dyn Store, agent: &Agent) -> store::Result<Value> {
    Ok(json!({
        "name": agent.name,
        "role": agent.role,
        "status": agent.status,
        "vaults": vaults_of(store, agent)?,
        "created_at": rfc3339(agent.created_at),
        "revoked_at": agent.revoked_at.map(rfc3339),
    }))
}

pub async fn create(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let caller_role = access::require_instance(&session.actor, InstanceRole::Member)?;
    let body: CreateAgent = request.json()?;
    check_agent_name(&body.name)?;
    let role = body.role.unwrap_or(InstanceRole::NoAccess);
    if role == InstanceRole::Owner && caller_role != InstanceRole::Owner {
        return Err(Denied::Owner.into());
    }
    let agent_id = tokens::random_id()?;
    let (vaults, assigned) = vault_assignments(state, &session.actor, &body.vaults).await?;
    let grants: Vec<Grant> = vaults
        .into_iter()
        .map(|(vault_id, role)| Grant {
            actor: ActorId::agent(&agent_id),
            vault_id,
            role,
        })
        .collect();
    let now = store::now();
    let agent = Agent {
        id: agent_id.clone(),
        name: body.name.clone(),
        role,
        status: AgentStatus::Active,
        created_by: session.actor.id(),
        created_at: now,
        revoked_at: None,
    };
    let (token, record) = agent_token(&agent_id, session.actor.id())?;
    state
        .db
        .run(move |store| store.create_agent(&agent, &grants, &record))
        .await
        .map_err(|error| match error {
            store::StoreError::Conflict(what) if what.starts_with("agent ") => {
                ApiError::conflict(format!("Agent {} already exists", body.name))
            }
            store::StoreError::Conflict(what) => {
                ApiError::conflict(format!("The name {} is taken by {what}", body.name))
            }
            other => other.into(),
        })?;
    created(&json!({
        "av_agent_token": token,
        "name": body.name,
        "role": role,
        "vaults": assigned,
        "created_at": rfc3339(now),
    }))
}

/// Whether `actor` may see and manage `agent`: owners any agent; members the agents they
/// created and, for viewing, agents that share a vault with them.
fn may_manage(actor: &Actor, agent: &Agent) -> bool {
    match actor.instance_role() {
        Some(InstanceRole::Owner) => true,
        Some(InstanceRole::Member) => {
            agent.role != InstanceRole::Owner && agent.created_by == actor.id()
        }
        _ => false,
    }
}

pub async fn list(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Member)?;
    let actor = session.actor;
    let agents = state
        .db
        .run(move |store| {
            let my_vaults: Vec<String> = match actor.id() {
                Some(id) => store
                    .grants_of(&id)?
                    .into_iter()
                    .map(|g| g.vault_id)
                    .collect(),
                None => Vec::new(),
            };
            let mut visible = Vec::new();
            for agent in store.agents()? {
                let shares_vault = store
                    .grants_of(&ActorId::agent(&agent.id))?
                    .iter()
                    .any(|grant| my_vaults.contains(&grant.vault_id));
                if may_manage(&actor, &agent) || shares_vault {
                    visible.push(describe(store, &agent)?);
                }
            }
            let now = store::now();
            for invite in store.agent_invites()? {
                if invite.status == store::AgentInviteStatus::Pending
                    && invite.expires_at > now
                    && super::agent_invites::may_manage(&actor, &invite)
                {
                    visible.push(super::agent_invites::describe_as_agent(store, &invite)?);
                }
            }
            Ok(visible)
        })
        .await?;
    ok(&json!({ "agents": agents }))
}

/// The named agent, if the caller may manage it (404 otherwise, so names do not leak).
async fn managed_agent(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<(Actor, Agent), ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Member)?;
    let agent = agent_named(state, name).await?;
    if !may_manage(&session.actor, &agent) {
        return Err(if agent.role == InstanceRole::Owner {
            Denied::Owner.into()
        } else {
            ApiError::forbidden("Only the agent's creator or an owner can manage it")
        });
    }
    Ok((session.actor, agent))
}

pub async fn get(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, agent) = managed_agent(state, request, name).await?;
    let description = state.db.run(move |store| describe(store, &agent)).await?;
    ok(&description)
}

pub async fn revoke(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, agent) = managed_agent(state, request, name).await?;
    if agent.status == AgentStatus::Revoked {
        return Err(ApiError::conflict(format!(
            "Agent {name} is already revoked"
        )));
    }
    let id = agent.id.clone();
    state
        .db
        .run(move |store| store.revoke_agent(&id, store::now()))
        .await?;
    ok(
        &json!({ "message": format!("Agent {name} revoked; its token and the sessions it minted no longer work") }),
    )
}

pub async fn delete(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, agent) = managed_agent(state, request, name).await?;
    let id = agent.id.clone();
    state.db.run(move |store| store.delete_agent(&id)).await?;
    ok(&json!({ "message": format!("Agent {name} deleted") }))
}

pub async fn rotate(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (actor, agent) = managed_agent(state, request, name).await?;
    let (token, record) = agent_token(&agent.id, actor.id())?;
    let id = agent.id.clone();
    state
        .db
        .run(move |store| store.rotate_agent_token(&id, &record))
        .await?;
    ok(&json!({ "av_agent_token": token, "name": agent.name, "rotated_at": rfc3339(store::now()) }))
}

/// `POST /v1/agents/{name}/rename`: its creator or an owner gives it a new name; its token
/// and grants stay.
pub async fn rename(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, agent) = managed_agent(state, request, name).await?;
    let body: super::NewName = request.json()?;
    check_agent_name(&body.name)?;
    let (id, new_name) = (agent.id.clone(), body.name.clone());
    state
        .db
        .run(move |store| store.rename_agent(&id, &new_name, store::now()))
        .await?;
    ok(&json!({
        "message": format!("Agent {} is now {}", agent.name, body.name),
        "old_name": agent.name,
        "new_name": body.name,
    }))
}

#[derive(Deserialize)]
struct RoleChange {
    role: InstanceRole,
}

/// `POST /v1/agents/{name}/role`: an owner changes an agent's instance role.
pub async fn set_role(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Owner)?;
    let agent = agent_named(state, name).await?;
    if agent.status == AgentStatus::Revoked {
        return Err(ApiError::conflict(format!(
            "Agent {name} is revoked; rotate its token to reactivate it first"
        )));
    }
    let body: RoleChange = request.json()?;
    let (id, role) = (agent.id.clone(), body.role);
    state
        .db
        .run(move |store| store.set_agent_role(&id, role))
        .await?;
    ok(&json!({ "agent": agent.name, "old_role": agent.role, "new_role": body.role }))
}
