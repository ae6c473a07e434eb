//! Proposals over HTTP: agents ask (`/v1/proposals`), humans review (`/v1/admin/proposals`
//! and the approval page in `approval_page.rs`).
//!
//! An agent (a vault session, or an agent token with `X-Vault`) posts services and credential
//! slots; the answer carries an approval link with a one-time `av_appr_` token (stored only as
//! SHA-256, 24 hours) that opens the approval page. At most 20 proposals of a vault are
//! pending; a pending proposal expires after 7 days. Every proposal records who is answerable
//! for it: the agent behind the token, or whoever minted the vault session it came through.
//! A person with the member or admin role in the vault approves (typing the credential
//! values) or rejects, never one who made it (`access::check_review` has the whole rule);
//! approving writes the merged services and the credentials in one transaction, at most once.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::vaults::{Check, check};
use super::{ApiError, ApiState, Request, created, find_vault, ok, rfc3339, vault_name_or_default};
use crate::auth::access::{self, Denied, Origin, Review};
use crate::auth::{Actor, Session, tokens};
use crate::notify::Event;
use crate::proposals::{self, Checked, ProposalRequest, Refused};
use crate::services::{self, Rules, Service};
use crate::store::{
    self, Proposal, ProposalApplication, ProposalStatus, StoreError, StoredCredential, Vault,
    VaultRole,
};
use crate::vault::Secret;

/// Pending proposals a vault may have at once.
pub const MAX_PENDING: usize = 20;
/// How long a proposal stays pending.
pub const PROPOSAL_TTL: i64 = 7 * 24 * 3600;
/// How long the approval link works.
pub const APPROVAL_TTL: i64 = 24 * 3600;
const APPROVAL_PREFIX: &str = "av_appr_";

/// A proposal's status now: a pending one past its time is `expired`.
pub fn status_now(proposal: &Proposal, now: store::UnixTime) -> &'static str {
    match proposal.status {
        ProposalStatus::Pending if proposal.expires_at <= now => "expired",
        status => status.as_str(),
    }
}

fn rules(state: &ApiState) -> Rules<'_> {
    Rules {
        dev_mode: state.dev_mode,
        plugins: Some(&state.plugins),
    }
}

/// The vault's services and credential keys as they are now.
pub async fn vault_contents(
    state: &ApiState,
    vault: &Vault,
) -> Result<(Option<String>, Vec<Service>, Vec<String>), ApiError> {
    let id = vault.id.clone();
    let (document, keys) = state
        .db
        .run(move |store| Ok((store.services(&id)?, store.credential_keys(&id)?)))
        .await?;
    let services = match &document {
        Some(document) => services::from_document(document).map_err(|message| {
            tracing::error!(vault = %vault.name, "{message}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the vault's services cannot be read",
            )
        })?,
        None => Vec::new(),
    };
    Ok((document, services, keys))
}

fn refused(refusal: Refused) -> ApiError {
    match refusal {
        Refused::Invalid(message) => ApiError::bad_request(message),
        Refused::NotFound(message) => ApiError::not_found(message),
        Refused::Ambiguous {
            message,
            candidates,
        } => {
            let candidates: Vec<Value> = candidates
                .into_iter()
                .map(|(name, host)| json!({ "name": name, "host": host }))
                .collect();
            ApiError::conflict(message).with(json!({ "candidates": candidates }))
        }
    }
}

/// Who proposes and in which vault: a vault session in its own vault, or an agent in the
/// vault `X-Vault` (or `?vault=`) names, with any role there. People change services and
/// credentials directly, so a login session is refused.
async fn proposer(state: &ApiState, request: &Request) -> Result<(Session, Vault), ApiError> {
    let session = request.session(state).await?;
    let named = request
        .headers
        .get("x-vault")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .or_else(|| request.query("vault"))
        .map(str::to_owned);
    let vault = match (&session.actor, named) {
        (Actor::Scoped { vault_id, .. }, named) => {
            let id = vault_id.clone();
            let vault = state
                .db
                .run(move |store| store.vault_by_id(&id))
                .await?
                .ok_or_else(|| ApiError::not_found("Vault not found"))?;
            if named.is_some_and(|name| name != vault.name) {
                return Err(Denied::WrongVault.into());
            }
            vault
        }
        (Actor::Agent(_), Some(name)) => find_vault(state, &name).await?,
        (Actor::Agent(_), None) => {
            return Err(ApiError::bad_request(
                "Agent tokens require an X-Vault header naming the vault",
            ));
        }
        (Actor::User(_), _) => {
            return Err(ApiError::forbidden(
                "Proposals are made by agents (a vault session or an agent token); \
                 people change services and credentials directly",
            ));
        }
    };
    check(state, &session.actor, &vault, Check::Role(VaultRole::Proxy)).await?;
    Ok((session, vault))
}

pub async fn create(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (session, vault) = proposer(state, request).await?;
    let Some(creator) = session.actor.accountable() else {
        return Err(ApiError::forbidden(
            "This vault session does not record who minted it; ask for a new one",
        ));
    };
    let body: ProposalRequest = request.json()?;
    let (_, existing, keys) = vault_contents(state, &vault).await?;
    let checked = proposals::validate(&body, &existing, &keys, rules(state)).map_err(refused)?;
    let minted = tokens::mint(APPROVAL_PREFIX)?;
    let now = store::now();
    let proposal = Proposal {
        vault_id: vault.id.clone(),
        id: 0,
        status: ProposalStatus::Pending,
        services_json: checked.services_json(),
        credentials_json: checked.credentials_json(),
        message: body.message.clone(),
        user_message: body.user_message.clone(),
        created_by: Some(creator),
        created_by_session: match session.actor {
            Actor::Scoped { .. } => Some(session.record.public_id.clone()),
            _ => None,
        },
        approval_hash: minted.hash.clone(),
        approval_expires_at: now + APPROVAL_TTL,
        created_at: now,
        expires_at: now + PROPOSAL_TTL,
        reviewed_by: None,
        reviewed_at: None,
        review_note: None,
    };
    let id = state
        .db
        .run(move |store| store.create_proposal(&proposal, MAX_PENDING))
        .await?;
    let url = format!(
        "{}/approve/{id}?token={}",
        request.base_url,
        minted.token.as_str()
    );
    state.notifier.proposal(
        &state.db,
        &vault,
        id,
        &body.message,
        Event::Created {
            approval_url: url.clone(),
        },
    );
    created(&json!({
        "id": id,
        "status": "pending",
        "vault": vault.name,
        "approval_url": url,
        "message": format!("Proposal created. Approve here: {url}"),
    }))
}

/// A proposal in full, as both sides read it.
fn detail(proposal: &Proposal, checked: Option<&Checked>, now: store::UnixTime) -> Value {
    let services: Value = serde_json::from_str(&proposal.services_json).unwrap_or(Value::Null);
    let credentials: Value =
        serde_json::from_str(&proposal.credentials_json).unwrap_or(Value::Null);
    let mut detail = json!({
        "id": proposal.id,
        "status": status_now(proposal, now),
        "services": services,
        "credentials": credentials,
        "message": proposal.message,
        "user_message": proposal.user_message,
        "review_note": proposal.review_note,
        "reviewed_at": proposal.reviewed_at.map(rfc3339),
        "created_at": rfc3339(proposal.created_at),
        "expires_at": rfc3339(proposal.expires_at),
    });
    if let Some(checked) = checked {
        detail["changes"] = json!(
            checked
                .services
                .iter()
                .map(proposals::describe)
                .collect::<Vec<_>>()
        );
    }
    detail
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(format!("Proposal not found: {id}")))
}

async fn load(state: &ApiState, vault: &Vault, id: &str) -> Result<Proposal, ApiError> {
    let number = parse_id(id)?;
    let vault_id = vault.id.clone();
    state
        .db
        .run(move |store| store.proposal(&vault_id, number))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Proposal not found: {id}")))
}

fn status_filter(request: &Request) -> Result<Option<String>, ApiError> {
    match request.query("status") {
        None | Some("") => Ok(None),
        Some(status @ ("pending" | "applied" | "rejected" | "expired")) => {
            Ok(Some(status.to_owned()))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "status {other:?} is not one of: pending, applied, rejected, expired"
        ))),
    }
}

async fn listed(
    state: &ApiState,
    vault: &Vault,
    status: Option<String>,
    entry: fn(&Proposal, store::UnixTime) -> Value,
) -> Result<Vec<Value>, ApiError> {
    let vault_id = vault.id.clone();
    let all = state
        .db
        .run(move |store| store.proposals(&vault_id))
        .await?;
    let now = store::now();
    Ok(all
        .iter()
        .filter(|p| status.as_deref().is_none_or(|s| status_now(p, now) == s))
        .map(|p| entry(p, now))
        .collect())
}

pub async fn get(
    state: &ApiState,
    request: &Request,
    id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = proposer(state, request).await?;
    let proposal = load(state, &vault, id).await?;
    ok(&detail(&proposal, None, store::now()))
}

pub async fn list(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = proposer(state, request).await?;
    let status = status_filter(request)?;
    let proposals = listed(state, &vault, status, |p, now| {
        json!({ "id": p.id, "status": status_now(p, now), "message": p.message, "created_at": rfc3339(p.created_at) })
    })
    .await?;
    ok(&json!({ "proposals": proposals }))
}

/// The vault a reviewer names (`?vault=` or the body's `vault`, else `default`), if the
/// reviewer is a member or admin there.
async fn review_vault(
    state: &ApiState,
    session: &Session,
    named: Option<&str>,
) -> Result<Vault, ApiError> {
    let vault = find_vault(state, &vault_name_or_default(named)).await?;
    check(
        state,
        &session.actor,
        &vault,
        Check::Role(VaultRole::Member),
    )
    .await?;
    Ok(vault)
}

pub async fn admin_list(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let vault = review_vault(state, &session, request.query("vault")).await?;
    let status = status_filter(request)?;
    let proposals = listed(state, &vault, status, |p, now| detail(p, None, now)).await?;
    ok(&json!({ "vault": vault.name, "proposals": proposals }))
}

/// Who made `proposal`, in words a reviewer reads: "the agent build-bot", "an agent with a
/// vault session that alice@example.com minted".
pub async fn proposed_by(state: &ApiState, proposal: &Proposal) -> String {
    let Some(creator) = proposal.created_by.clone() else {
        return "an agent (who made it was not recorded)".to_owned();
    };
    let name = state
        .db
        .run(move |store| {
            Ok(match creator.kind {
                store::ActorKind::Agent => store
                    .agent(&creator.id)?
                    .map(|agent| format!("the agent {}", agent.name)),
                store::ActorKind::User => store.user(&creator.id)?.map(|user| user.email),
            })
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "someone since removed".to_owned());
    if proposal.created_by_session.is_some() {
        format!("an agent with a vault session that {name} minted")
    } else {
        name
    }
}

pub async fn admin_get(
    state: &ApiState,
    request: &Request,
    id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let vault = review_vault(state, &session, request.query("vault")).await?;
    let proposal = load(state, &vault, id).await?;
    let checked = pending_changes(state, &vault, &proposal).await.ok();
    let mut body = detail(&proposal, checked.as_ref(), store::now());
    body["vault"] = json!(vault.name);
    body["proposed_by"] = json!(proposed_by(state, &proposal).await);
    ok(&body)
}

#[derive(Deserialize)]
struct Approve {
    vault: Option<String>,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Reject {
    vault: Option<String>,
    reason: Option<String>,
}

pub async fn admin_approve(
    state: &ApiState,
    request: &Request,
    id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let body: Approve = request.json_with_secrets()?;
    let vault = find_vault(
        state,
        &vault_name_or_default(body.vault.as_deref().or(request.query("vault"))),
    )
    .await?;
    let proposal = load(state, &vault, id).await?;
    let values = body
        .credentials
        .into_iter()
        .map(|(key, value)| (key, Zeroizing::new(value)))
        .collect();
    approve(state, &session.actor, &vault, &proposal, values).await?;
    ok(&json!({ "id": proposal.id, "status": "applied" }))
}

pub async fn admin_reject(
    state: &ApiState,
    request: &Request,
    id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let body: Reject = request.json()?;
    let vault = find_vault(
        state,
        &vault_name_or_default(body.vault.as_deref().or(request.query("vault"))),
    )
    .await?;
    let proposal = load(state, &vault, id).await?;
    reject(state, &session.actor, &vault, &proposal, body.reason).await?;
    ok(&json!({ "id": proposal.id, "status": "rejected" }))
}

/// Whether `actor` may `review` `proposal`: a member or admin of the vault, and then
/// `access::check_review` (people decide, agents only if an owner allows it, never on one's
/// own proposal).
pub async fn may_review(
    state: &ApiState,
    actor: &Actor,
    vault: &Vault,
    proposal: &Proposal,
    review: Review,
) -> Result<(), ApiError> {
    if matches!(actor, Actor::Scoped { .. }) {
        return Err(Denied::SessionCannotReview.into());
    }
    let (checked_actor, checked_vault) = (actor.clone(), vault.clone());
    let role = state
        .db
        .run(move |store| {
            Ok(access::require_vault(
                store,
                &checked_actor,
                &checked_vault,
                VaultRole::Member,
            ))
        })
        .await??;
    let agents_may_review = match actor {
        Actor::Agent(_) => {
            super::settings::load(state)
                .await?
                .agents_can_approve_proposals
        }
        _ => false,
    };
    let origin = Origin {
        created_by: proposal.created_by.as_ref(),
        through_session: proposal.created_by_session.is_some(),
    };
    access::check_review(actor, role, origin, review, agents_may_review)?;
    Ok(())
}

/// 409 unless the proposal is pending and unexpired.
fn require_pending(proposal: &Proposal) -> Result<(), ApiError> {
    match status_now(proposal, store::now()) {
        "pending" => Ok(()),
        "expired" => Err(ApiError::conflict(format!(
            "Proposal {} has expired",
            proposal.id
        ))),
        status => Err(ApiError::conflict(format!(
            "Proposal {} is already {status}",
            proposal.id
        ))),
    }
}

/// What a stored proposal would do to the vault now, and the values it needs.
pub async fn pending_changes(
    state: &ApiState,
    vault: &Vault,
    proposal: &Proposal,
) -> Result<Checked, ApiError> {
    let (_, existing, _) = vault_contents(state, vault).await?;
    proposals::stored(
        &proposal.services_json,
        &proposal.credentials_json,
        &existing,
        rules(state),
    )
    .map_err(refused)
}

/// Approve `proposal` as `actor` with the credential `values` it needs: merge its services
/// into the vault's, seal the values, and write it all at once.
pub async fn approve(
    state: &ApiState,
    actor: &Actor,
    vault: &Vault,
    proposal: &Proposal,
    mut values: BTreeMap<String, Zeroizing<String>>,
) -> Result<(), ApiError> {
    may_review(state, actor, vault, proposal, Review::Approve).await?;
    require_pending(proposal)?;
    let _writing = state.services_lock.lock().await;
    let (document, existing, _) = vault_contents(state, vault).await?;
    let checked = proposals::stored(
        &proposal.services_json,
        &proposal.credentials_json,
        &existing,
        rules(state),
    )
    .map_err(refused)?;
    let to_set = checked.keys_to_set();
    if let Some(extra) = values.keys().find(|key| !to_set.contains(&key.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{extra} is not a credential of this proposal"
        )));
    }
    let mut put = Vec::with_capacity(to_set.len());
    for key in to_set {
        let value = values.remove(key).ok_or_else(|| {
            ApiError::bad_request(format!("Missing value for credential {key:?}"))
        })?;
        if value.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Credential {key:?} cannot be empty"
            )));
        }
        let secret = Secret::new(value.as_bytes().to_vec());
        put.push(StoredCredential {
            sealed: state.data_key.seal_credential(&vault.id, key, &secret)?,
            key: key.to_owned(),
        });
    }
    let services = if checked.services.is_empty() {
        None
    } else {
        let merged = proposals::merge(existing, &checked.services).map_err(ApiError::conflict)?;
        Some((services::to_document(&merged), document))
    };
    let application = ProposalApplication {
        services,
        put,
        delete: checked.keys_to_delete(),
    };
    let reviewer = actor.id().expect("reviewers are users or agents");
    let (vault_id, number) = (vault.id.clone(), proposal.id);
    state
        .db
        .run(move |store| {
            store.apply_proposal(&vault_id, number, &application, &reviewer, store::now())
        })
        .await
        .map_err(|error| match error {
            StoreError::NotFound(_) => {
                ApiError::conflict(format!("Proposal {number} is no longer pending"))
            }
            StoreError::Conflict(_) => {
                ApiError::conflict("The vault's services changed while approving; try again")
            }
            other => other.into(),
        })?;
    state.changed();
    state.notifier.proposal(
        &state.db,
        vault,
        number,
        &proposal.message,
        Event::Applied {
            by: actor.display_name(),
        },
    );
    Ok(())
}

/// Reject `proposal` as `actor`, with an optional reason the agent can read.
pub async fn reject(
    state: &ApiState,
    actor: &Actor,
    vault: &Vault,
    proposal: &Proposal,
    reason: Option<String>,
) -> Result<(), ApiError> {
    may_review(state, actor, vault, proposal, Review::Reject).await?;
    require_pending(proposal)?;
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > proposals::MAX_MESSAGE)
    {
        return Err(ApiError::bad_request(format!(
            "reason: at most {} characters",
            proposals::MAX_MESSAGE
        )));
    }
    let reviewer = actor.id().expect("reviewers are users or agents");
    let (vault_id, number) = (vault.id.clone(), proposal.id);
    let note = reason.clone();
    state
        .db
        .run(move |store| {
            store.reject_proposal(
                &vault_id,
                number,
                &reviewer,
                reason.as_deref(),
                store::now(),
            )
        })
        .await
        .map_err(|error| match error {
            StoreError::NotFound(_) => {
                ApiError::conflict(format!("Proposal {number} is no longer pending"))
            }
            other => other.into(),
        })?;
    state.notifier.proposal(
        &state.db,
        vault,
        number,
        &proposal.message,
        Event::Rejected {
            by: actor.display_name(),
            reason: note,
        },
    );
    Ok(())
}

/// The proposal an approval link's token opens, if the token is one.
pub async fn by_approval_token(
    state: &ApiState,
    token: &str,
) -> Result<Option<Proposal>, ApiError> {
    if !token.starts_with(APPROVAL_PREFIX) {
        return Ok(None);
    }
    let hash = tokens::hash(token);
    Ok(state
        .db
        .run(move |store| store.proposal_by_approval(&hash))
        .await?)
}
