//! Agent invites: connecting an agent that cannot be started under `vault run` (a hosted chat
//! agent, a long-running session, a CI job) without pasting a long-lived secret anywhere.
//!
//! An instance member creates an invite for an agent name, with its role and vault grants
//! checked as if the agent were created now (`POST /v1/agents/invites`). The answer carries a
//! prompt to paste into the agent's chat, with a one-time link holding an `av_inv_` token
//! (256 random bits, stored only as SHA-256, 24 hours by default). The agent POSTs to the link
//! itself (`/v1/invites/{token}/redeem`, no other authentication, attempts limited per client
//! address) and gets, once, its own `av_agt_` token with the agent guide. Owners and the
//! invite's creator list and revoke invites; a pending invite reserves its agent name and
//! shows in the agent list.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};

use super::agent_grants::{VaultAssignment, check_agent_name, vault_assignments};
use super::{ApiError, ApiState, Request, created, ok, rfc3339};
use crate::auth::access::{self, Denied};
use crate::auth::{Actor, tokens};
use crate::store::{
    self, AgentInvite, AgentInviteStatus, InstanceRole, Store, StoreError, TokenKind, TokenRecord,
    VaultRole,
};

/// How long an invite works unless its creator says otherwise, and the bounds of what they
/// may say: long enough to reach a busy agent, short enough that a forgotten link dies.
pub const DEFAULT_TTL: i64 = 24 * 3600;
pub const MIN_TTL: i64 = 300;
pub const MAX_TTL: i64 = 7 * 24 * 3600;

#[derive(Deserialize)]
struct CreateInvite {
    #[serde(default)]
    name: String,
    role: Option<InstanceRole>,
    #[serde(default)]
    vaults: Vec<VaultAssignment>,
    ttl_seconds: Option<i64>,
}

/// A non-secret handle on an invite: the start of its hash.
fn invite_id(hash: &str) -> &str {
    &hash[..16]
}

/// The link an agent redeems its invite at.
fn redeem_url(request: &Request, token: &str) -> String {
    format!("{}/v1/invites/{token}/redeem", request.base_url)
}

/// Whether `actor` may see and revoke `invite`: owners any, members the ones they made.
pub(super) fn may_manage(actor: &Actor, invite: &AgentInvite) -> bool {
    match actor.instance_role() {
        Some(InstanceRole::Owner) => true,
        Some(InstanceRole::Member) => {
            invite.created_by.is_some() && invite.created_by == actor.id()
        }
        _ => false,
    }
}

/// `[{vault_name, vault_role}]` of vault ids, skipping vaults deleted since.
fn named_vaults(store: &dyn Store, vaults: &[(String, VaultRole)]) -> store::Result<Vec<Value>> {
    let mut named = Vec::new();
    for (vault_id, role) in vaults {
        if let Some(vault) = store.vault_by_id(vault_id)? {
            named.push(json!({ "vault_name": vault.name, "vault_role": role }));
        }
    }
    Ok(named)
}

/// What the status of an invite is now: a pending one past its time is `expired`.
fn status_now(invite: &AgentInvite, now: store::UnixTime) -> &'static str {
    match invite.status {
        AgentInviteStatus::Pending if invite.expires_at <= now => "expired",
        status => status.as_str(),
    }
}

/// A pending invite as an entry of the agent list.
pub(super) fn describe_as_agent(store: &dyn Store, invite: &AgentInvite) -> store::Result<Value> {
    Ok(json!({
        "name": invite.agent_name,
        "role": invite.role,
        "status": "pending",
        "vaults": named_vaults(store, &invite.vaults)?,
        "created_at": rfc3339(invite.created_at),
        "invite_expires_at": rfc3339(invite.expires_at),
    }))
}

pub async fn create(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let caller_role = access::require_instance(&session.actor, InstanceRole::Member)?;
    let body: CreateInvite = request.json()?;
    check_agent_name(&body.name)?;
    let role = body.role.unwrap_or(InstanceRole::NoAccess);
    if role == InstanceRole::Owner && caller_role != InstanceRole::Owner {
        return Err(Denied::Owner.into());
    }
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL);
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds must be between {MIN_TTL} (5 minutes) and {MAX_TTL} (7 days)"
        )));
    }
    let (vaults, shown) = vault_assignments(state, &session.actor, &body.vaults).await?;
    let minted = tokens::mint(tokens::AGENT_INVITE_PREFIX)?;
    let now = store::now();
    let invite = AgentInvite {
        hash: minted.hash.clone(),
        agent_name: body.name.clone(),
        role,
        vaults,
        created_by: session.actor.id(),
        status: AgentInviteStatus::Pending,
        created_at: now,
        expires_at: now + ttl,
        agent_id: None,
        redeemed_at: None,
    };
    state
        .db
        .run(move |store| store.create_agent_invite(&invite))
        .await
        .map_err(|error| match error {
            StoreError::Conflict(what) if what.starts_with("agent ") => {
                ApiError::conflict(format!("Agent {} already exists", body.name))
            }
            StoreError::Conflict(_) => ApiError::conflict(format!(
                "Agent {} already has a pending invite; revoke it first",
                body.name
            )),
            other => other.into(),
        })?;
    let url = redeem_url(request, &minted.token);
    let expires_at = rfc3339(now + ttl);
    created(&json!({
        "id": invite_id(&minted.hash),
        "name": body.name,
        "role": role,
        "vaults": shown,
        "token": minted.token.as_str(),
        "invite_url": url,
        "expires_at": expires_at,
        "prompt": crate::guide::invite_prompt(&url, &request.base_url, &expires_at),
    }))
}

pub async fn list(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Member)?;
    let status = request.query("status").map(str::to_owned);
    if let Some(status) = &status
        && !["pending", "redeemed", "revoked", "expired"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status {status:?} is not one of: pending, redeemed, revoked, expired"
        )));
    }
    let actor = session.actor;
    let listed = state
        .db
        .run(move |store| {
            let now = store::now();
            let mut listed = Vec::new();
            for invite in store.agent_invites()? {
                let current = status_now(&invite, now);
                if !may_manage(&actor, &invite) || status.as_deref().is_some_and(|s| s != current) {
                    continue;
                }
                let agent_name = match &invite.agent_id {
                    Some(id) => store.agent(id)?.map(|agent| agent.name),
                    None => None,
                };
                listed.push(json!({
                    "id": invite_id(&invite.hash),
                    "name": invite.agent_name,
                    "role": invite.role,
                    "vaults": named_vaults(store, &invite.vaults)?,
                    "status": current,
                    "created_at": rfc3339(invite.created_at),
                    "expires_at": rfc3339(invite.expires_at),
                    "redeemed_at": invite.redeemed_at.map(rfc3339),
                    "agent": agent_name,
                }));
            }
            Ok(listed)
        })
        .await?;
    ok(&json!({ "invites": listed }))
}

/// The invite a path names: its token, or its id (at least 8 characters of the start of its
/// hash, as `invite list` shows).
async fn find(state: &ApiState, token_or_id: &str) -> Result<AgentInvite, ApiError> {
    let key = token_or_id.to_owned();
    let found = state
        .db
        .run(move |store| {
            if key.starts_with(tokens::AGENT_INVITE_PREFIX) {
                return Ok(store
                    .agent_invite(&tokens::hash(&key))?
                    .into_iter()
                    .collect());
            }
            if key.len() < 8 {
                return Ok(Vec::new());
            }
            Ok(store
                .agent_invites()?
                .into_iter()
                .filter(|invite| invite.hash.starts_with(&key))
                .collect::<Vec<_>>())
        })
        .await?;
    match <[AgentInvite; 1]>::try_from(found) {
        Ok([invite]) => Ok(invite),
        Err(found) if found.is_empty() => Err(ApiError::not_found("Invite not found")),
        Err(_) => Err(ApiError::bad_request(
            "More than one invite starts with this id; give more of it",
        )),
    }
}

pub async fn revoke(
    state: &ApiState,
    request: &Request,
    token_or_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Member)?;
    let invite = find(state, token_or_id).await?;
    if !may_manage(&session.actor, &invite) {
        // As for agents: someone else's invite is not there for a member.
        return Err(ApiError::not_found("Invite not found"));
    }
    match invite.status {
        AgentInviteStatus::Redeemed => {
            return Err(ApiError::conflict(format!(
                "The invite for {} was already redeemed; revoke the agent instead",
                invite.agent_name
            )));
        }
        AgentInviteStatus::Revoked => {
            return Err(ApiError::conflict(format!(
                "The invite for {} is already revoked",
                invite.agent_name
            )));
        }
        AgentInviteStatus::Pending => {}
    }
    let hash = invite.hash.clone();
    state
        .db
        .run(move |store| store.revoke_agent_invite(&hash))
        .await
        .map_err(|error| match error {
            StoreError::NotFound(_) => ApiError::conflict("The invite is no longer pending"),
            other => other.into(),
        })?;
    ok(&json!({
        "message": format!("Invite for agent {} revoked; its link no longer works", invite.agent_name)
    }))
}

fn gone(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        format!("This invite {why}; ask the person who invited you for a new one"),
    )
}

pub async fn redeem(
    state: &ApiState,
    request: &Request,
    token: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    request.attempt(state)?;
    let not_found = || ApiError::not_found("Invite not found: check that the link is complete");
    if !token.starts_with(tokens::AGENT_INVITE_PREFIX) {
        return Err(not_found());
    }
    let hash = tokens::hash(token);
    let lookup = hash.clone();
    let invite = state
        .db
        .run(move |store| store.agent_invite(&lookup))
        .await?
        .ok_or_else(not_found)?;
    let now = store::now();
    match invite.status {
        AgentInviteStatus::Redeemed => return Err(gone("was already used")),
        AgentInviteStatus::Revoked => return Err(gone("was revoked")),
        AgentInviteStatus::Pending if invite.expires_at <= now => {
            return Err(gone("has expired"));
        }
        AgentInviteStatus::Pending => {}
    }
    let agent_id = tokens::random_id()?;
    let minted = tokens::mint(tokens::AGENT_PREFIX)?;
    let record = TokenRecord {
        hash: minted.hash.clone(),
        public_id: minted.public_id.clone(),
        kind: TokenKind::Agent {
            agent_id: agent_id.clone(),
        },
        created_by: invite.created_by.clone(),
        created_at: now,
        last_used_at: now,
        expires_at: None,
    };
    let (agent, vaults) = state
        .db
        .run(move |store| {
            let agent = store.redeem_agent_invite(&hash, &agent_id, &record, now)?;
            let vaults = named_vaults(store, &invite.vaults)?;
            Ok((agent, vaults))
        })
        .await
        .map_err(|error| match error {
            // Another redemption of the same link won the race.
            StoreError::NotFound(_) => gone("was already used"),
            StoreError::Conflict(_) => ApiError::conflict(
                "An agent with this invite's name exists already; ask for a new invite",
            ),
            other => other.into(),
        })?;
    tracing::info!(agent = %agent.name, "agent invite redeemed");
    created(&json!({
        "av_agent_token": minted.token.as_str(),
        "agent_name": agent.name,
        "vaults": vaults,
        "av_addr": request.base_url,
        "instructions": crate::guide::agent_guide(&request.base_url),
    }))
}
