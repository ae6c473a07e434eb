//! `/v1/users`: the people of an instance. After the first owner, people join by invite: an
//! instance member invites an email (with a role and vaults to join); the invite link
//! carries a one-time `av_uinv_` token (stored hashed, 48 hours) that the person redeems
//! with a password of their choice. Owners change roles and remove users.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::auth::{
    check_password, hash_password, issue_device_token, normalize_email, start_login_session,
};
use super::vaults::{Check, check};
use super::{ApiError, ApiState, Request, created, find_vault, ok, rfc3339};
use crate::auth::access::{self, Denied};
use crate::auth::tokens;
use crate::store::{self, ActorId, InstanceRole, Invite, InviteStatus, User, VaultRole};

/// How long an invite link works.
pub const INVITE_TTL: i64 = 48 * 3600;

pub async fn list(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let role = access::require_instance(&session.actor, InstanceRole::Member)?;
    let users = state
        .db
        .run(move |store| {
            let mut listed = Vec::new();
            for user in store.users()? {
                let mut entry = json!({ "email": user.email, "role": user.role, "created_at": rfc3339(user.created_at) });
                if role == InstanceRole::Owner {
                    let mut vaults = Vec::new();
                    for grant in store.grants_of(&ActorId::user(&user.id))? {
                        if let Some(vault) = store.vault_by_id(&grant.vault_id)? {
                            vaults.push(json!({ "vault_name": vault.name, "vault_role": grant.role }));
                        }
                    }
                    entry["vaults"] = json!(vaults);
                }
                listed.push(entry);
            }
            Ok(listed)
        })
        .await?;
    ok(&json!({ "users": users }))
}

#[derive(Deserialize)]
struct InviteVault {
    vault_name: String,
    vault_role: VaultRole,
}

#[derive(Deserialize)]
struct CreateInvite {
    #[serde(default)]
    email: String,
    role: Option<InstanceRole>,
    #[serde(default)]
    vaults: Vec<InviteVault>,
}

/// A non-secret handle on an invite: the start of its hash.
fn invite_id(hash: &str) -> &str {
    &hash[..16]
}

pub async fn invite(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let caller_role = access::require_instance(&session.actor, InstanceRole::Member)?;
    let body: CreateInvite = request.json()?;
    let email = normalize_email(&body.email)?;
    let role = body.role.unwrap_or(InstanceRole::Member);
    if role == InstanceRole::Owner && caller_role != InstanceRole::Owner {
        return Err(Denied::Owner.into());
    }
    let mut vaults = Vec::new();
    for assignment in &body.vaults {
        if assignment.vault_role == VaultRole::Proxy {
            return Err(ApiError::bad_request(
                "A user's vault role must be admin or member",
            ));
        }
        let vault = find_vault(state, &assignment.vault_name).await?;
        check(state, &session.actor, &vault, Check::Role(VaultRole::Admin)).await?;
        vaults.push((vault.id, assignment.vault_role));
    }
    let lookup = email.clone();
    let (existing_user, pending) = state
        .db
        .run(move |store| {
            let now = store::now();
            let pending = store.invites()?.into_iter().any(|i| {
                i.email == lookup && i.status == InviteStatus::Pending && i.expires_at > now
            });
            Ok((store.user_by_email(&lookup)?.is_some(), pending))
        })
        .await?;
    if existing_user {
        return Err(ApiError::conflict(format!(
            "{email} already has an account"
        )));
    }
    if pending {
        return Err(ApiError::conflict(format!(
            "{email} already has a pending invite"
        )));
    }
    let minted = tokens::mint(tokens::INVITE_PREFIX)?;
    let now = store::now();
    let record = Invite {
        hash: minted.hash.clone(),
        email: email.clone(),
        role,
        vaults: vaults.clone(),
        created_by: session.actor.id(),
        status: InviteStatus::Pending,
        created_at: now,
        expires_at: now + INVITE_TTL,
    };
    state
        .db
        .run(move |store| store.create_invite(&record))
        .await?;
    let assigned: Vec<_> = body
        .vaults
        .iter()
        .map(|v| json!({ "vault_name": v.vault_name, "vault_role": v.vault_role }))
        .collect();
    created(&json!({
        "email": email,
        "role": role,
        "vaults": assigned,
        "id": invite_id(&minted.hash),
        "token": minted.token.as_str(),
        "invite_link": format!("{}/invite/{}", request.base_url, minted.token.as_str()),
        "expires_at": rfc3339(now + INVITE_TTL),
    }))
}

pub async fn invites(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let role = access::require_instance(&session.actor, InstanceRole::Member)?;
    let me = session.actor.id();
    let status = request.query("status").map(str::to_owned);
    let listed = state
        .db
        .run(move |store| {
            Ok(store
                .invites()?
                .into_iter()
                .filter(|invite| role == InstanceRole::Owner || invite.created_by == me)
                .filter(|invite| {
                    status
                        .as_deref()
                        .is_none_or(|s| invite.status.as_str() == s)
                })
                .map(|invite| {
                    json!({
                        "id": invite_id(&invite.hash),
                        "email": invite.email,
                        "role": invite.role,
                        "status": invite.status,
                        "created_at": rfc3339(invite.created_at),
                        "expires_at": rfc3339(invite.expires_at),
                    })
                })
                .collect::<Vec<_>>())
        })
        .await?;
    ok(&json!({ "invites": listed }))
}

/// The invite a path names: its token, or its id (the start of its hash).
async fn find_invite(state: &ApiState, token_or_id: &str) -> Result<Invite, ApiError> {
    let key = token_or_id.to_owned();
    state
        .db
        .run(move |store| {
            if key.starts_with(tokens::INVITE_PREFIX) {
                return store.invite(&tokens::hash(&key));
            }
            Ok(store
                .invites()?
                .into_iter()
                .find(|i| key.len() >= 8 && i.hash.starts_with(&key)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("Invite not found"))
}

pub async fn revoke_invite(
    state: &ApiState,
    request: &Request,
    token_or_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let role = access::require_instance(&session.actor, InstanceRole::Member)?;
    let invite = find_invite(state, token_or_id).await?;
    if role != InstanceRole::Owner && invite.created_by != session.actor.id() {
        return Err(ApiError::forbidden(
            "Only the invite's creator or an owner can revoke it",
        ));
    }
    let hash = invite.hash.clone();
    state
        .db
        .run(move |store| store.revoke_invite(&hash))
        .await?;
    ok(&json!({ "message": format!("Invite for {} revoked", invite.email) }))
}

#[derive(Deserialize)]
struct Accept {
    #[serde(default)]
    password: String,
}

pub async fn accept_invite(
    state: &ApiState,
    request: &Request,
    token: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    request.attempt(state)?;
    let body: Accept = request.json()?;
    let hash = tokens::hash(token);
    let lookup = hash.clone();
    let invite = state
        .db
        .run(move |store| store.invite(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("Invite not found"))?;
    let gone = |why: &str| {
        ApiError::new(
            StatusCode::GONE,
            format!("This invite {why}; ask for a new one"),
        )
    };
    match invite.status {
        InviteStatus::Accepted => return Err(gone("was already used")),
        InviteStatus::Revoked => return Err(gone("was revoked")),
        InviteStatus::Pending if invite.expires_at <= store::now() => {
            return Err(gone("has expired"));
        }
        InviteStatus::Pending => {}
    }
    check_password(&body.password)?;
    let user = User {
        id: tokens::random_id()?,
        email: invite.email.clone(),
        role: invite.role,
        password_hash: hash_password(state, body.password).await?,
        created_at: store::now(),
    };
    let new_user = user.clone();
    state
        .db
        .run(move |store| store.accept_invite(&hash, &new_user))
        .await?;
    let (token, expires_at) = start_login_session(state, &user).await?;
    let device_token = issue_device_token(state, &user).await?;
    ok(&json!({
        "email": user.email,
        "message": "Account created",
        "token": token,
        "expires_at": rfc3339(expires_at),
        "device_token": device_token.as_str(),
    }))
}

#[derive(Deserialize)]
struct RoleChange {
    role: InstanceRole,
}

async fn user_named(state: &ApiState, email: &str) -> Result<User, ApiError> {
    let lookup = email.trim().to_ascii_lowercase();
    state
        .db
        .run(move |store| store.user_by_email(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("User not found: {email}")))
}

pub async fn set_role(
    state: &ApiState,
    request: &Request,
    email: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Owner)?;
    let body: RoleChange = request.json()?;
    let user = user_named(state, email).await?;
    let id = user.id.clone();
    state
        .db
        .run(move |store| store.set_user_role(&id, body.role))
        .await?;
    ok(&json!({ "email": user.email, "role": body.role }))
}

pub async fn remove(
    state: &ApiState,
    request: &Request,
    email: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Owner)?;
    let user = user_named(state, email).await?;
    let id = user.id.clone();
    state.db.run(move |store| store.delete_user(&id)).await?;
    ok(&json!({ "status": "removed", "email": user.email }))
}
