//! The control plane's HTTP API: `/health`, `/v1/status` and the `/v1` management API.
//!
//! [`handle`] reads the request (JSON bodies capped at 1 MiB), routes it by method and path
//! to one file per resource, and turns every error into a response in one place
//! ([`ApiError::into_response`]): `{"error": message}` with the status, as the Agent Vault API
//! does. Handlers authenticate with [`Request::session`], check access with `auth::access`,
//! and reach the store through `Db::run` (off the async threads).

mod agent_invites;
mod agents;
mod approval_page;
mod auth;
mod credentials;
mod logs;
mod proposals;
mod services;
mod sessions;
mod settings;
mod status;
mod users;
mod vaults;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::access::{AccessError, Denied};
use crate::auth::{AuthError, Session};
use crate::client_addr::TrustedProxies;
use crate::plugin::registry::Registry;
use crate::ratelimit::{self, AttemptLimiter, SignInLimiter, SignInRefused};
use crate::store::{Db, Generation, OwnerKnown, StoreError, Vault};
use crate::vault::crypto::{CryptoError, DataKey, KdfParams};

/// The largest JSON body the API reads.
const MAX_BODY: usize = 1024 * 1024;

/// Everything handlers share; built once, cheap to clone behind an `Arc`.
pub struct ApiState {
    pub db: Db,
    pub data_key: Arc<DataKey>,
    pub plugins: Arc<Registry>,
    /// The server's own address, for links (`av_addr`, invite links).
    pub base_url: String,
    /// Argon2id settings for user passwords.
    pub password_kdf: KdfParams,
    /// Allow internal hosts (localhost, IPs) in services.
    pub dev_mode: bool,
    /// Whether an owner exists; until then most routes answer 503.
    pub owner_known: OwnerKnown,
    /// Serialises read-modify-write of a vault's services.
    services_lock: tokio::sync::Mutex<()>,
    /// Bumped after every successful write, so the proxy's cache drops what it read.
    pub generation: Generation,
    /// The request log's queue; the proxy records each request here.
    pub request_log: crate::request_log::RequestLog,
    /// The AUTH tier: attempts at the routes that take no session and no password, per
    /// client address.
    pub attempts: AttemptLimiter,
    /// The AUTH tier where a password is checked: failures per account and client address,
    /// or per device for a client that shows its device token.
    pub sign_ins: SignInLimiter,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Proposal notifications (the log, and webhooks).
    pub notifier: crate::notify::Notifier,
    /// The transparent proxy, if it listens: for `/v1/mitm/ca.pem`.
    pub transparent: Option<TransparentInfo>,
}

/// What the API tells about the transparent proxy.
#[derive(Debug, Clone)]
pub struct TransparentInfo {
    /// The local CA's certificate.
    pub ca_pem: String,
    pub port: u16,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(
        db: Db,
        data_key: Arc<DataKey>,
        plugins: Arc<Registry>,
        base_url: String,
        password_kdf: KdfParams,
        dev_mode: bool,
        request_log: crate::request_log::RequestLog,
    ) -> Self {
        let attempts = AttemptLimiter::new(Some(ratelimit::RateLimits::DEFAULT));
        ApiState {
            db,
            data_key,
            plugins,
            base_url,
            password_kdf,
            dev_mode,
            owner_known: OwnerKnown::default(),
            services_lock: tokio::sync::Mutex::new(()),
            generation: Generation::default(),
            request_log,
            sign_ins: SignInLimiter::alongside(&attempts),
            attempts,
            trusted_proxies: TrustedProxies::default(),
            notifier: crate::notify::Notifier::new(None),
            transparent: None,
        }
    }

    /// With the transparent proxy's CA and port.
    pub fn with_transparent(mut self, transparent: Option<TransparentInfo>) -> Self {
        self.transparent = transparent;
        self
    }

    /// With a notifier that sends proposal webhooks.
    pub fn with_notifier(mut self, notifier: crate::notify::Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    /// With reverse proxies whose `X-Forwarded-For` is believed.
    pub fn with_trusted_proxies(mut self, trusted_proxies: TrustedProxies) -> Self {
        self.trusted_proxies = trusted_proxies;
        self
    }

    /// With the AUTH tier of another rate-limit profile than the default (for sign-ins too).
    pub fn with_attempts(mut self, attempts: AttemptLimiter) -> Self {
        self.sign_ins = SignInLimiter::alongside(&attempts);
        self.attempts = attempts;
        self
    }

    /// Whether an owner exists (cached once true).
    pub(crate) async fn initialized(&self) -> Result<bool, ApiError> {
        Ok(self.owner_known.check(&self.db).await?)
    }
}

/// The body of a rename (of a vault, of an agent).
#[derive(Deserialize)]
struct NewName {
    name: String,
}

/// A request as handlers see it: the body read in full (at most 1 MiB).
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The address of the client: the TCP peer, or who a trusted reverse proxy says it
    /// talked to (`crate::client_addr`).
    pub client: IpAddr,
}

impl Request {
    /// The segments of the path after the leading `/`, each percent-decoded (so an email's
    /// `%40` or a service host's `%2F` arrive as `@` and `/`).
    fn segments(&self) -> Vec<String> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .map(crate::request::decode_component)
            .collect()
    }

    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.is_empty() {
            return serde_json::from_str("{}")
                .map_err(|error| ApiError::bad_request(format!("invalid request: {error}")));
        }
        serde_json::from_slice(&self.body)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
    }

    /// The body as JSON of type `T`, for bodies that carry credential values (setting them,
    /// approving a proposal): serde's messages quote what they could not read, so a body
    /// that does not fit is refused with where and what kind of error it is, never its text.
    pub fn json_with_secrets<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.is_empty() {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|error| {
            let what = match error.classify() {
                serde_json::error::Category::Data => {
                    "a field has the wrong type or an unknown name"
                }
                serde_json::error::Category::Eof => "the body ends too early",
                serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                    "the body is not JSON"
                }
            };
            ApiError::bad_request(format!(
                "invalid JSON body at line {}, column {}: {what} (the body carries credential \
                 values, so the error does not quote it)",
                error.line(),
                error.column()
            ))
        })
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// Count an attempt at a route that takes no session (registering, an invite) against
    /// the client's address: 429 once it has made too many. Signing in counts failures per
    /// account and address instead (`auth::check_login`).
    pub fn attempt(&self, state: &ApiState) -> Result<(), ApiError> {
        state
            .attempts
            .attempt(self.client)
            .map_err(ApiError::too_many_attempts)
    }

    /// The authenticated session behind `Authorization: Bearer`.
    pub async fn session(&self, state: &ApiState) -> Result<Session, ApiError> {
        let header = self
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let token = crate::auth::bearer(header)?.to_owned();
        let now = crate::store::now();
        let outcome = state
            .db
            .run(move |store| Ok(crate::auth::authenticate(store, &token, now)))
            .await?;
        Ok(outcome?)
    }
}

/// An error on its way to becoming a response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Extra top-level fields of the JSON body.
    pub extra: Option<Value>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// 429 for a client over the AUTH tier's limit.
    pub fn too_many_attempts(limited: ratelimit::Limited) -> Self {
        let seconds = limited.retry_after().as_secs_f64().ceil().max(1.0);
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts from your address; try again in {seconds} s"),
        )
        .with(json!({ "code": "too_many_requests" }));
        error.retry_after = Some(limited.retry_after());
        error
    }

    /// 429 for a client that failed too often to sign in (at one account, or at many).
    pub fn too_many_sign_ins(refused: SignInRefused) -> Self {
        let seconds = refused.retry_after().as_secs_f64().ceil().max(1.0);
        let what = match refused {
            SignInRefused::Account { .. } => "to this account from your address",
            SignInRefused::Client { .. } => "from your address",
        };
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed sign-ins {what}; try again in {seconds} s"),
        )
        .with(json!({ "code": "too_many_requests" }));
        error.retry_after = Some(refused.retry_after());
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    fn with(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// The one place an error becomes a status and a body.
    fn into_response(self) -> Response<Full<Bytes>> {
        let mut body = json!({ "error": self.message });
        if let (Some(Value::Object(extra)), Value::Object(object)) = (self.extra, &mut body) {
            object.extend(extra);
        }
        let mut response = json_response(self.status, &body);
        if let Some(retry_after) = self.retry_after {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::LastOwner => {
                ApiError::conflict("This would leave the instance without an owner")
            }
            StoreError::LastAdmin => {
                ApiError::conflict("This would leave the vault without an admin")
            }
            StoreError::TooMany(what) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("Too many {what}"))
            }
            StoreError::Database(message) => {
                tracing::error!("store error: {message}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
            StoreError::Unavailable(message) => {
                tracing::error!("store error: {message}");
                ApiError {
                    retry_after: Some(std::time::Duration::from_secs(5)),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The database cannot take this change right now (another program \
                         holds it, or the disk is full); retry later",
                    )
                }
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Store(error) => error.into(),
            other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ApiError::forbidden(denied.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::Denied(denied) => denied.into(),
            AccessError::Store(error) => error.into(),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(error: CryptoError) -> Self {
        tracing::error!("crypto error: {error}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).expect("response bodies serialize");
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// 200 with a JSON body.
pub fn ok(body: &impl Serialize) -> Result<Response<Full<Bytes>>, ApiError> {
    Ok(json_response(StatusCode::OK, body))
}

/// 201 with a JSON body.
pub fn created(body: &impl Serialize) -> Result<Response<Full<Bytes>>, ApiError> {
    Ok(json_response(StatusCode::CREATED, body))
}

/// Serve one request from the TCP peer `peer`.
pub async fn handle(
    state: Arc<ApiState>,
    request: http::Request<Incoming>,
    peer: IpAddr,
) -> Response<Full<Bytes>> {
    let client = state.trusted_proxies.client(peer, request.headers());
    let writes = request.method() != Method::GET && request.method() != Method::HEAD;
    let mut response = match read(request, client).await {
        Ok(request) => route(&state, &request)
            .await
            .unwrap_or_else(ApiError::into_response),
        Err(error) => error.into_response(),
    };
    if writes && response.status().is_success() {
        state.generation.bump();
    }
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    response
}

async fn read(request: http::Request<Incoming>, client: IpAddr) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is larger than 1 MiB",
            )
        })?
        .to_bytes();
    let query = parts
        .uri
        .query()
        .map(|query| {
            crate::request::raw_query_pairs(Some(query))
                .map(|(name, value)| (decode_form(name), decode_form(value)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Request {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query,
        headers: parts.headers,
        body,
        client,
    })
}

/// A query-string component: `+` is a space, then percent-decoding.
fn decode_form(raw: &str) -> String {
    crate::request::decode_component(&raw.replace('+', " "))
}

async fn route(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let owned = request.segments();
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    let method = &request.method;
    // Routes that work before the first owner exists.
    match (method, segments.as_slice()) {
        (&Method::GET, ["health"]) => return status::health(state).await,
        (&Method::GET, ["v1", "mitm", "ca.pem"]) => return transparent_ca(state),
        (&Method::GET, ["v1", "status"]) => return status::status(state).await,
        (&Method::POST, ["v1", "auth", "register"]) => return auth::register(state, request).await,
        (&Method::POST, ["v1", "users", "invites", token, "accept"]) => {
            return users::accept_invite(state, request, token).await;
        }
        // The approval page answers in HTML, errors included.
        (&Method::GET, ["approve", id]) => return Ok(approval_page::show(state, request, id).await),
        (&Method::POST, ["approve", id, "login"]) => {
            return Ok(approval_page::login(state, request, id).await);
        }
        (&Method::POST, ["approve", id, "approve"]) => {
            return Ok(approval_page::approve(state, request, id).await);
        }
        (&Method::POST, ["approve", id, "reject"]) => {
            return Ok(approval_page::reject(state, request, id).await);
        }
        (_, ["v1", ..]) => {}
        _ => return Err(ApiError::not_found("no such endpoint")),
    }
    if !state.initialized().await? {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No owner account exists. Run 'agent-vault auth register' to create one.",
        )
        .with(json!({ "code": "not_initialized" })));
    }
    match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "skills", "cli"]) => Ok(skill(state)),
        (&Method::POST, ["v1", "invites", token, "redeem"]) => {
            agent_invites::redeem(state, request, token).await
        }
        (&Method::GET, ["v1", "invites", _, "redeem"]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Redeem an invite with POST; a GET never redeems it (link previews would)",
        )),
        (&Method::POST, ["v1", "auth", "login"]) => auth::login(state, request).await,
        (&Method::POST, ["v1", "auth", "logout"]) => auth::logout(state, request).await,
        (&Method::GET, ["v1", "auth", "me"]) => auth::me(state, request).await,
        (&Method::GET, ["v1", "auth", "sessions"]) => auth::sessions(state, request).await,
        (&Method::DELETE, ["v1", "auth", "sessions", id]) => {
            auth::revoke_session(state, request, id).await
        }
        (&Method::DELETE, ["v1", "auth", "devices", id]) => {
            auth::revoke_device(state, request, id).await
        }
        (&Method::POST, ["v1", "auth", "change-password"]) => {
            auth::change_password(state, request).await
        }

        (&Method::POST, ["v1", "vaults"]) => vaults::create(state, request).await,
        (&Method::GET, ["v1", "vaults"]) => vaults::list(state, request).await,
        (&Method::DELETE, ["v1", "vaults", name]) => vaults::delete(state, request, name).await,
        (&Method::GET, ["v1", "vaults", name, "context"]) => {
            vaults::context(state, request, name).await
        }
        (&Method::GET, ["v1", "admin", "vaults"]) => vaults::all(state, request).await,
        (&Method::GET, ["v1", "admin", "settings"]) => settings::get(state, request).await,
        (&Method::PUT, ["v1", "admin", "settings"]) => settings::put(state, request).await,
        (&Method::POST, ["v1", "vaults", name, "join"]) => vaults::join(state, request, name).await,
        (&Method::POST, ["v1", "vaults", name, "leave"]) => {
            vaults::leave(state, request, name).await
        }
        (&Method::POST, ["v1", "vaults", name, "rename"]) => {
            vaults::rename(state, request, name).await
        }
        (&Method::GET, ["v1", "vaults", name, "settings"]) => {
            vaults::settings(state, request, name).await
        }
        (&Method::PATCH, ["v1", "vaults", name, "settings"]) => {
            vaults::update_settings(state, request, name).await
        }
        (&Method::GET, ["v1", "vaults", name, "users"]) => {
            vaults::users(state, request, name).await
        }
        (&Method::POST, ["v1", "vaults", name, "users"]) => {
            vaults::add_user(state, request, name).await
        }
        (&Method::DELETE, ["v1", "vaults", name, "users", email]) => {
            vaults::remove_user(state, request, name, email).await
        }
        (&Method::POST, ["v1", "vaults", name, "users", email, "role"]) => {
            vaults::set_user_role(state, request, name, email).await
        }
        (&Method::GET, ["v1", "vaults", name, "agents"]) => {
            vaults::agents(state, request, name).await
        }
        (&Method::POST, ["v1", "vaults", name, "agents"]) => {
            vaults::add_agent(state, request, name).await
        }
        (&Method::DELETE, ["v1", "vaults", name, "agents", agent]) => {
            vaults::remove_agent(state, request, name, agent).await
        }
        (&Method::POST, ["v1", "vaults", name, "agents", agent, "role"]) => {
            vaults::set_agent_role(state, request, name, agent).await
        }

        (&Method::GET, ["v1", "credentials"]) => credentials::list(state, request).await,
        (&Method::POST, ["v1", "credentials"]) => credentials::set(state, request).await,
        (&Method::DELETE, ["v1", "credentials"]) => credentials::delete(state, request).await,

        (&Method::GET, ["v1", "vaults", name, "services", "credential-usage"]) => {
            services::credential_usage(state, request, name).await
        }
        (&Method::GET, ["v1", "vaults", name, "services"]) => {
            services::list(state, request, name).await
        }
        (&Method::POST, ["v1", "vaults", name, "services"]) => {
            services::upsert(state, request, name).await
        }
        (&Method::PUT, ["v1", "vaults", name, "services"]) => {
            services::replace(state, request, name).await
        }
        (&Method::DELETE, ["v1", "vaults", name, "services"]) => {
            services::clear(state, request, name).await
        }
        (&Method::PATCH, ["v1", "vaults", name, "services", service]) => {
            services::patch(state, request, name, service).await
        }
        (&Method::DELETE, ["v1", "vaults", name, "services", service]) => {
            services::remove(state, request, name, service).await
        }

        (&Method::POST, ["v1", "sessions"]) => sessions::create(state, request).await,
        (&Method::GET, ["v1", "sessions"]) => sessions::list(state, request).await,
        (&Method::DELETE, ["v1", "sessions", id]) => sessions::revoke(state, request, id).await,

        (&Method::POST, ["v1", "agents", "invites"]) => agent_invites::create(state, request).await,
        (&Method::GET, ["v1", "agents", "invites"]) => agent_invites::list(state, request).await,
        (&Method::DELETE, ["v1", "agents", "invites", token_or_id]) => {
            agent_invites::revoke(state, request, token_or_id).await
        }
        (&Method::POST, ["v1", "agents"]) => agents::create(state, request).await,
        (&Method::GET, ["v1", "agents"]) => agents::list(state, request).await,
        (&Method::GET, ["v1", "agents", name]) => agents::get(state, request, name).await,
        (&Method::DELETE, ["v1", "agents", name]) => agents::revoke(state, request, name).await,
        (&Method::POST, ["v1", "agents", name, "delete"]) => {
            agents::delete(state, request, name).await
        }
        (&Method::POST, ["v1", "agents", name, "rotate"]) => {
            agents::rotate(state, request, name).await
        }
        (&Method::POST, ["v1", "agents", name, "rename"]) => {
            agents::rename(state, request, name).await
        }
        (&Method::POST, ["v1", "agents", name, "role"]) => {
            agents::set_role(state, request, name).await
        }

        (&Method::GET, ["v1", "users"]) => users::list(state, request).await,
        (&Method::POST, ["v1", "users", "invites"]) => users::invite(state, request).await,
        (&Method::GET, ["v1", "users", "invites"]) => users::invites(state, request).await,
        (&Method::DELETE, ["v1", "users", "invites", token]) => {
            users::revoke_invite(state, request, token).await
        }
        (&Method::POST, ["v1", "admin", "users", email, "role"]) => {
            users::set_role(state, request, email).await
        }
        (&Method::DELETE, ["v1", "admin", "users", email]) => {
            users::remove(state, request, email).await
        }

        (&Method::GET, ["v1", "vaults", name, "logs"]) => logs::list(state, request, name).await,
        (&Method::GET, ["v1", "vaults", name, "discovered-hosts"]) => {
            logs::discovered_hosts(state, request, name).await
        }

        (&Method::POST, ["v1", "proposals"]) => proposals::create(state, request).await,
        (&Method::GET, ["v1", "proposals"]) => proposals::list(state, request).await,
        (&Method::GET, ["v1", "proposals", id]) => proposals::get(state, request, id).await,
        (&Method::GET, ["v1", "admin", "proposals"]) => proposals::admin_list(state, request).await,
        (&Method::GET, ["v1", "admin", "proposals", id]) => {
            proposals::admin_get(state, request, id).await
        }
        (&Method::POST, ["v1", "admin", "proposals", id, "approve"]) => {
            proposals::admin_approve(state, request, id).await
        }
        (&Method::POST, ["v1", "admin", "proposals", id, "reject"]) => {
            proposals::admin_reject(state, request, id).await
        }

        _ => Err(ApiError::not_found("no such endpoint")),
    }
}

/// `GET /v1/mitm/ca.pem`: the local CA agents must trust, and the transparent proxy's port.
fn transparent_ca(state: &ApiState) -> Result<Response<Full<Bytes>>, ApiError> {
    let Some(transparent) = &state.transparent else {
        return Err(ApiError::not_found(
            "The transparent proxy is off on this server (--mitm-port 0)",
        ));
    };
    let mut response = Response::new(Full::new(Bytes::from(transparent.ca_pem.clone())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-pem-file"),
    );
    headers.insert("x-mitm-port", http::HeaderValue::from(transparent.port));
    Ok(response)
}

/// `GET /v1/skills/cli`: the agent guide, as markdown.
fn skill(state: &ApiState) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(crate::guide::agent_guide(
        &state.base_url,
    ))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    response
}

/// The vault named `name`, or 404 "Vault not found: name".
async fn find_vault(state: &ApiState, name: &str) -> Result<Vault, ApiError> {
    let owned = name.to_owned();
    state
        .db
        .run(move |store| store.vault(&owned))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Vault not found: {name}")))
}

/// The vault a request names with `?vault=` or a `vault` body field, else `default`.
fn vault_name_or_default(name: Option<&str>) -> String {
    match name {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => crate::store::DEFAULT_VAULT.to_owned(),
    }
}

/// RFC 3339 for a Unix time.
fn rfc3339(time: crate::store::UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(time)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
