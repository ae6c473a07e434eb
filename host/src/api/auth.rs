//! `/v1/auth/*`: register the first owner, log in and out, and say who is calling.
//!
//! After the first owner, people join by invite (`/v1/users/invites`); registration answers
//! 403 and says so. Login sessions expire after 30 days without use and after a year in any
//! case. Unknown emails cost the same password hashing as known ones. Failed passwords are
//! counted per account and client address (`ratelimit::SignInLimiter`), never per address
//! alone, so another client's failures do not lock a person out; and a client that signed in
//! before holds a device token (`auth::devices`, the answer's `device_token`, shown once)
//! whose sign-ins count apart even from the failures of other clients at its own address.

use std::net::IpAddr;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{ApiError, ApiState, Request, created, ok, rfc3339};
use crate::auth::devices::{self, MAX_DEVICES_PER_USER};
use crate::auth::{Actor, passwords, tokens};
use crate::store::{
    self, ActorId, DeviceRecord, InstanceRole, StoreError, TokenKind, TokenRecord, User,
};

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
    /// The device token an earlier sign-in gave this client, if it has one. In the body,
    /// next to the password it goes with: never in a URL, nor in a header a reverse proxy
    /// might log.
    #[serde(default)]
    device_token: Option<String>,
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
    let device_token = issue_device_token(state, &user).await?;
    created(&json!({
        "email": email,
        "role": "owner",
        "requires_verification": false,
        "authenticated": true,
        "message": "Owner account created; you are the admin of the default vault.",
        "token": token,
        "expires_at": rfc3339(expires_at),
        "device_token": device_token.as_str(),
    }))
}

/// A sign-in whose password was right: the user, and the device token the client showed, if
/// it was one of theirs.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    device: Option<DeviceRecord>,
}

/// The user whose email and password these are, tried from `client` with the device token
/// it holds, if any; 401 otherwise (an unknown email costs the same hashing as a wrong
/// password), 429 once this device, or without one this client, has failed too often at
/// this account, or this client across accounts. A device token that is not a live one of
/// this account counts as none.
pub async fn check_login(
    state: &ApiState,
    client: IpAddr,
    email: &str,
    password: String,
    device_token: Option<&str>,
) -> Result<SignedIn, ApiError> {
    if email.is_empty() || password.is_empty() {
        return Err(ApiError::bad_request("Email and password are required"));
    }
    let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, "Invalid email or password");
    let email = email.trim().to_ascii_lowercase();
    if email.len() > MAX_EMAIL_LEN {
        // No account has such an email (`normalize_email`), and it is not worth a bucket.
        return Err(invalid());
    }
    let device = match device_token {
        Some(token) => recognise_device(state, token, &email).await?,
        None => None,
    };
    let attempt = state
        .sign_ins
        .attempt(
            &email,
            client,
            device.as_ref().map(|device| device.public_id.as_str()),
        )
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
            let device = device.filter(|device| device.user_id == user.id);
            Ok(SignedIn { user, device })
        }
        // The attempt stays counted as a failure.
        _ => Err(invalid()),
    }
}

/// The record of `token` if it is a live device token of the account `email`.
async fn recognise_device(
    state: &ApiState,
    token: &str,
    email: &str,
) -> Result<Option<DeviceRecord>, ApiError> {
    let token = Zeroizing::new(token.to_owned());
    let email = email.to_owned();
    let now = store::now();
    Ok(state
        .db
        .run(move |store| devices::recognise(store, &token, &email, now))
        .await?)
}

/// The device token to hand the client of `signed_in`: none if it showed a valid one (its
/// use is recorded), else a new one.
pub async fn device_token_for(
    state: &ApiState,
    signed_in: &SignedIn,
) -> Result<Option<Zeroizing<String>>, ApiError> {
    if let Some(device) = &signed_in.device {
        let hash = device.hash.clone();
        let now = store::now();
        match state
            .db
            .run(move |store| store.touch_device(&hash, now))
            .await
        {
            Ok(()) => return Ok(None),
            // Ended since it was recognised (a new password, revoked): give a new one.
            Err(StoreError::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    issue_device_token(state, &signed_in.user).await.map(Some)
}

/// A new device token for `user`, stored by its hash; shown once.
pub async fn issue_device_token(
    state: &ApiState,
    user: &User,
) -> Result<Zeroizing<String>, ApiError> {
    let (token, record) = devices::mint(&user.id, store::now())?;
    state
        .db
        .run(move |store| store.insert_device(&record, MAX_DEVICES_PER_USER))
        .await?;
    Ok(token)
}

/// `answer` with `device_token`, if there is a new one to hand out.
fn with_device_token(mut answer: Value, device_token: Option<&Zeroizing<String>>) -> Value {
    if let Some(token) = device_token {
        answer["device_token"] = json!(token.as_str());
    }
    answer
}

pub async fn login(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let body: Credentials = request.json()?;
    let signed_in = check_login(
        state,
        request.client,
        &body.email,
        body.password,
        body.device_token.as_deref(),
    )
    .await?;
    let (token, expires_at) = start_login_session(state, &signed_in.user).await?;
    let device_token = device_token_for(state, &signed_in).await?;
    let user = signed_in.user;
    ok(&with_device_token(
        json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "email": user.email,
            "role": user.role,
        }),
        device_token.as_ref(),
    ))
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
    /// As at login: the device token of this client, if it has one.
    #[serde(default)]
    device_token: Option<String>,
}

/// `POST /v1/auth/change-password`: a signed-in user's new password. Every login session and
/// device token of theirs ends (one stolen with the old password too); the answer carries a
/// new session and a new device token for this client.
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
    let signed_in = check_login(
        state,
        request.client,
        &user.email,
        body.current_password,
        body.device_token.as_deref(),
    )
    .await
    .map_err(|error| {
        if error.status == StatusCode::UNAUTHORIZED {
            ApiError::new(StatusCode::UNAUTHORIZED, "The current password is wrong")
        } else {
            error
        }
    })?;
    let user = signed_in.user;
    let password_hash = hash_password(state, body.new_password).await?;
    let id = user.id.clone();
    state
        .db
        .run(move |store| store.set_user_password(&id, &password_hash))
        .await?;
    let (token, expires_at) = start_login_session(state, &user).await?;
    let device_token = issue_device_token(state, &user).await?;
    ok(&json!({
        "message": "Password changed; every other session of yours has ended.",
        "token": token,
        "expires_at": rfc3339(expires_at),
        "device_token": device_token.as_str(),
    }))
}

/// The user signed in with `request` (a person's login session), and the hash of the token
/// it came with.
async fn own_account(state: &ApiState, request: &Request) -> Result<(User, String), ApiError> {
    let session = request.session(state).await?;
    let Actor::User(user) = session.actor else {
        return Err(ApiError::forbidden(
            "Only a signed-in user has login sessions",
        ));
    };
    Ok((user, session.token_hash))
}

/// The login sessions of the user signed in with `request`, and the hash of the token it
/// came with.
async fn own_login_sessions(
    state: &ApiState,
    request: &Request,
) -> Result<(Vec<TokenRecord>, String), ApiError> {
    let (user, current) = own_account(state, request).await?;
    let records = state
        .db
        .run(move |store| store.user_sessions(&user.id))
        .await?;
    Ok((records, current))
}

/// `GET /v1/auth/sessions`: the user's login sessions, the one asking marked `current`, and
/// the device tokens their clients hold.
pub async fn sessions(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (user, current) = own_account(state, request).await?;
    let (records, devices) = state
        .db
        .run(move |store| {
            Ok((
                store.user_sessions(&user.id)?,
                store.user_devices(&user.id)?,
            ))
        })
        .await?;
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
    let devices: Vec<_> = devices
        .iter()
        .map(|device| {
            json!({
                "id": device.public_id,
                "created_at": rfc3339(device.created_at),
                "last_used_at": rfc3339(device.last_used_at),
                "expires_at": rfc3339(device.last_used_at.saturating_add(device.idle_seconds)),
            })
        })
        .collect();
    ok(&json!({ "sessions": sessions, "devices": devices }))
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

/// `DELETE /v1/auth/devices/{id}`: end one of the user's device tokens; the client holding it
/// signs in as one without from then on (and gets a new one when it does).
pub async fn revoke_device(
    state: &ApiState,
    request: &Request,
    id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (user, _) = own_account(state, request).await?;
    let public_id = id.to_owned();
    let deleted = state
        .db
        .run(move |store| store.delete_device(&user.id, &public_id))
        .await?;
    if !deleted {
        return Err(ApiError::not_found("No such device of yours"));
    }
    ok(&json!({ "status": "revoked" }))
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
