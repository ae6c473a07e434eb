//! `/v1/auth/*`: register the first owner, log in and out, and say who is calling.
//!
//! After the first owner, people join by invite (`/v1/users/invites`); registration answers
//! 403 and says so. Login sessions expire after 30 days without use and after a year in any
//! case. Unknown emails cost the same password hashing as known ones. Failed passwords are
//! counted per account and client address (`ratelimit::SignInLimiter`), never per address
//! alone, so another client's failures do not lock a person out.

use std::net::IpAddr;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState, Request, created, ok, rfc3339};
use crate::auth::{Actor, passwords, tokens};
use crate::store::{self, ActorId, InstanceRole, TokenKind, TokenRecord, User};

/// A login session ends after this long without use...
pub const LOGIN_IDLE_SECONDS: i64 = 30 * 24 * 3600;
/// ... and after this long in any case.
pub const LOGIN_MAX_SECONDS: i64 = 365 * 24 * 3600;

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// The longest email an account can have.
const MAX_EMAIL_LEN: usize = 254;

/// Lower-cased, checked email.
pub fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_ascii_lowercase();
    let valid = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(ApiError::bad_request("A valid email address is required"))
    }
}

/// A password long enough to keep.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < passwords::MIN_PASSWORD_LEN {
        return Err(ApiError::bad_request(format!(
            "Password must be at least {} characters",
            passwords::MIN_PASSWORD_LEN
        )));
    }
    Ok(())
}

/// Hash a password off the async threads.
pub async fn hash_password(state: &ApiState, password: String) -> Result<String, ApiError> {
    let kdf = state.password_kdf;
    tokio::task::spawn_blocking(move || passwords::hash(&password, kdf))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(ApiError::from)
}

/// Start a login session for `user`; returns the token and its absolute expiry.
pub async fn start_login_session(state: &ApiState, user: &User) -> Result<(String, i64), ApiError> {
    let minted = tokens::mint(tokens::SESSION_PREFIX)?;
    let now = store::now();
    let expires_at = now + LOGIN_MAX_SECONDS;
    let record = TokenRecord {
        hash: minted.hash.clone(),
        public_id: minted.public_id.clone(),
        kind: TokenKind::Login {
            user_id: user.id.clone(),
            idle_seconds: LOGIN_IDLE_SECONDS,
        },
        created_by: Some(ActorId::user(&user.id)),
        created_at: now,
        last_used_at: now,
        expires_at: Some(expires_at),
    };
    state
        .db
        .run(move |store| store.insert_token(&record))
        .await?;
    Ok((minted.token.to_string(), expires_at))
}

pub async fn register(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    request.attempt(state)?;
    let body: Credentials = request.json()?;
    let email = normalize_email(&body.email)?;
    check_password(&body.password)?;
    let invite_only = || {
        ApiError::forbidden(
            "This instance already has an owner; new users join by invite (ask an owner or member to run `agent-vault user invite`)",
        )
    };
    if state.initialized().await? {
        return Err(invite_only());
    }
    let user = User {
        id: tokens::random_id()?,
        email: email.clone(),
        role: InstanceRole::Owner,
        password_hash: hash_password(state, body.password).await?,
        created_at: store::now(),
    };
    let first = user.clone();
    match state
        .db
        .run(move |store| store.create_first_owner(&first))
        .await
    {
        Ok(()) => {}
        Err(store::StoreError::Conflict(_)) => return Err(invite_only()),
        Err(error) => return Err(error.into()),
    }
    let (token, expires_at) = start_login_session(state, &user).await?;
    created(&json!({
        "email": email,
        "role": "owner",
        "requires_verification": false,
        "authenticated": true,
        "message": "Owner account created; you are the admin of the default vault.",
        "token": token,
        "expires_at": rfc3339(expires_at),
    }))
}

/// The user whose email and password these are, tried from `client`; 401 otherwise (an
/// unknown email costs the same hashing as a wrong password), 429 once this client has
/// failed too often at this account or across accounts.
pub async fn check_login(
    state: &ApiState,
    client: IpAddr,
    email: &str,
    password: String,
) -> Result<User, ApiError> {
    if email.is_empty() || password.is_empty() {
        return Err(ApiError::bad_request("Email and password are required"));
    }
    let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, "Invalid email or password");
    let email = email.trim().to_ascii_lowercase();
    if email.len() > MAX_EMAIL_LEN {
        // No account has such an email (`normalize_email`), and it is not worth a bucket.
        return Err(invalid());
    }
    let attempt = state
        .sign_ins
        .attempt(&email, client)
        .map_err(ApiError::too_many_sign_ins)?;
    let user = state
        .db
        .run(move |store| store.user_by_email(&email))
        .await?;
    let stored = user.as_ref().map(|user| user.password_hash.clone());
    let kdf = state.password_kdf;
    let valid =
        tokio::task::spawn_blocking(move || passwords::verify(&password, stored.as_deref(), kdf))
            .await
            .unwrap_or(false);
    match (valid, user) {
        (true, Some(user)) => {
            attempt.succeeded();
            Ok(user)
        }
        // The attempt stays counted as a failure.
        _ => Err(invalid()),
    }
}

pub async fn login(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let body: Credentials = request.json()?;
    let user = check_login(state, request.client, &body.email, body.password).await?;
    let (token, expires_at) = start_login_session(state, &user).await?;
    ok(&json!({
        "token": token,
        "expires_at": rfc3339(expires_at),
        "email": user.email,
        "role": user.role,
    }))
}

pub async fn logout(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if let Ok(session) = request.session(state).await {
        let hash = session.token_hash;
        state.db.run(move |store| store.delete_token(&hash)).await?;
    }
    ok(&json!({ "status": "ok" }))
}

#[derive(Deserialize)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /v1/auth/change-password`: a signed-in user's new password. Every login session of
/// theirs ends (one stolen with the old password too); the answer carries a new one.
pub async fn change_password(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let Actor::User(user) = session.actor else {
        return Err(ApiError::forbidden(
            "Only a signed-in user can change their password",
        ));
    };
    // Guessing the current password with a stolen session counts as failed sign-ins.
    let body: PasswordChange = request.json()?;
    check_password(&body.new_password)?;
    let user = check_login(state, request.client, &user.email, body.current_password)
        .await
        .map_err(|error| {
            if error.status == StatusCode::UNAUTHORIZED {
                ApiError::new(StatusCode::UNAUTHORIZED, "The current password is wrong")
            } else {
                error
            }
        })?;
    let password_hash = hash_password(state, body.new_password).await?;
    let id = user.id.clone();
    state
        .db
        .run(move |store| store.set_user_password(&id, &password_hash))
        .await?;
    let (token, expires_at) = start_login_session(state, &user).await?;
    ok(&json!({
        "message": "Password changed; every other session of yours has ended.",
        "token": token,
        "expires_at": rfc3339(expires_at),
    }))
}

/// The login sessions of the user signed in with `request`, and the hash of the token it
/// came with.
async fn own_login_sessions(
    state: &ApiState,
    request: &Request,
) -> Result<(Vec<TokenRecord>, String), ApiError> {
    let session = request.session(state).await?;
    let Actor::User(user) = session.actor else {
        return Err(ApiError::forbidden(
            "Only a signed-in user has login sessions",
        ));
    };
    let records = state
        .db
        .run(move |store| store.user_sessions(&user.id))
        .await?;
    Ok((records, session.token_hash))
}

/// `GET /v1/auth/sessions`: the user's login sessions, the one asking marked `current`.
pub async fn sessions(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (records, current) = own_login_sessions(state, request).await?;
    let sessions: Vec<_> = records
        .iter()
        .map(|record| {
            let idle_expiry = match &record.kind {
                TokenKind::Login { idle_seconds, .. } => Some(record.last_used_at + idle_seconds),
                _ => None,
            };
            let expires_at = match (record.expires_at, idle_expiry) {
                (Some(at), Some(idle)) => Some(at.min(idle)),
                (at, idle) => at.or(idle),
            };
            json!({
                "id": record.public_id,
                "created_at": rfc3339(record.created_at),
                "last_used_at": rfc3339(record.last_used_at),
                "expires_at": expires_at.map(rfc3339),
                "current": record.hash == current,
            })
        })
        .collect();
    ok(&json!({ "sessions": sessions }))
}

/// `DELETE /v1/auth/sessions/{id}`: end one of the user's login sessions (the asking one
/// too, if named).
pub async fn revoke_session(
    state: &ApiState,
    request: &Request,
    id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (records, current) = own_login_sessions(state, request).await?;
    let record = records
        .into_iter()
        .find(|record| record.public_id == id)
        .ok_or_else(|| ApiError::not_found("No such session of yours"))?;
    let is_current = record.hash == current;
    state
        .db
        .run(move |store| store.delete_token(&record.hash))
        .await?;
    ok(&json!({ "status": "revoked", "current": is_current }))
}

pub async fn me(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    match session.actor {
        Actor::User(user) => ok(&json!({
            "type": "user",
            "email": user.email,
            "role": user.role,
            "is_owner": user.role == InstanceRole::Owner,
        })),
        Actor::Agent(agent) => ok(&json!({
            "type": "agent",
            "agent_name": agent.name,
            "role": agent.role,
            "is_owner": agent.role == InstanceRole::Owner,
        })),
        Actor::Scoped { vault_id, role, .. } => {
            let vault = state
                .db
                .run(move |store| store.vault_by_id(&vault_id))
                .await?;
            ok(&json!({
                "type": "session",
                "vault": vault.map(|vault| vault.name),
                "vault_role": role,
            }))
        }
    }
}
