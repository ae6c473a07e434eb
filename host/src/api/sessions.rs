//! `/v1/sessions`: vault-scoped sessions for sandboxes and `vault run`. A member or admin of
//! a vault mints one (`proxy` role, 5 minutes to 7 days, 24 hours by default); the token is
//! shown once. Scoped sessions die with the agent or user who minted them.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::vaults::{Check, authorized_vault, check};
use super::{ApiError, ApiState, Request, find_vault, ok, rfc3339};
use crate::auth::tokens;
use crate::store::{self, ActorKind, TokenKind, TokenRecord, VaultRole};

pub const MIN_TTL: i64 = 300;
pub const MAX_TTL: i64 = 7 * 24 * 3600;
pub const DEFAULT_TTL: i64 = 24 * 3600;
const MAX_LABEL: usize = 100;

#[derive(Deserialize)]
struct CreateSession {
    #[serde(default)]
    vault: String,
    vault_role: Option<String>,
    ttl_seconds: Option<i64>,
    #[serde(default)]
    label: String,
}

pub async fn create(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let body: CreateSession = request.json()?;
    if body.vault.is_empty() {
        return Err(ApiError::bad_request("Vault is required"));
    }
    if body
        .vault_role
        .as_deref()
        .is_some_and(|role| role != "proxy")
    {
        return Err(ApiError::bad_request("vault_role must be 'proxy'"));
    }
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL);
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds must be between {MIN_TTL} and {MAX_TTL}"
        )));
    }
    let label: String = body.label.chars().filter(|c| !c.is_control()).collect();
    if label.chars().count() > MAX_LABEL {
        return Err(ApiError::bad_request(format!(
            "label must be at most {MAX_LABEL} characters"
        )));
    }
    let vault = find_vault(state, &body.vault).await?;
    check(
        state,
        &session.actor,
        &vault,
        Check::Role(VaultRole::Member),
    )
    .await?;
    let created_by = session.actor.accountable();
    let minted = tokens::mint(tokens::SESSION_PREFIX)?;
    let now = store::now();
    let expires_at = now + ttl;
    let record = TokenRecord {
        hash: minted.hash.clone(),
        public_id: minted.public_id.clone(),
        kind: TokenKind::Scoped {
            vault_id: vault.id.clone(),
            role: VaultRole::Proxy,
            label,
        },
        created_by,
        created_at: now,
        last_used_at: now,
        expires_at: Some(expires_at),
    };
    state
        .db
        .run(move |store| store.insert_token(&record))
        .await?;
    ok(&json!({
        "token": minted.token.as_str(),
        "expires_at": rfc3339(expires_at),
        "av_addr": request.base_url,
        "vault": vault.name,
    }))
}

/// The vault of `?vault=`, which the caller must be a member (or admin) of.
async fn queried_vault(
    state: &ApiState,
    request: &Request,
) -> Result<crate::store::Vault, ApiError> {
    let name = request
        .query("vault")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request("vault is required"))?;
    Ok(
        authorized_vault(state, request, name, Check::Role(VaultRole::Member))
            .await?
            .1,
    )
}

pub async fn list(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = queried_vault(state, request).await?;
    let vault_id = vault.id.clone();
    let sessions = state
        .db
        .run(move |store| {
            let mut listed = Vec::new();
            for token in store.scoped_tokens(&vault_id, store::now())? {
                let TokenKind::Scoped { role, label, .. } = &token.kind else {
                    continue;
                };
                let created_by = match &token.created_by {
                    Some(actor) => {
                        let display_name = match actor.kind {
                            ActorKind::User => store.user(&actor.id)?.map(|u| u.email),
                            ActorKind::Agent => store.agent(&actor.id)?.map(|a| a.name),
                        };
                        json!({ "id": actor.id, "type": actor.kind, "display_name": display_name })
                    }
                    None => serde_json::Value::Null,
                };
                listed.push(json!({
                    "id": token.public_id,
                    "label": label,
                    "vault_role": role,
                    "created_by": created_by,
                    "created_at": rfc3339(token.created_at),
                    "expires_at": token.expires_at.map(rfc3339),
                }));
            }
            Ok(listed)
        })
        .await?;
    ok(&json!({ "sessions": sessions }))
}

pub async fn revoke(
    state: &ApiState,
    request: &Request,
    id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = queried_vault(state, request).await?;
    let (vault_id, public_id) = (vault.id.clone(), id.to_owned());
    if state
        .db
        .run(move |store| store.delete_scoped_token(&vault_id, &public_id))
        .await?
    {
        ok(&json!({ "status": "revoked" }))
    } else {
        Err(ApiError::not_found(format!("Session not found: {id}")))
    }
}
