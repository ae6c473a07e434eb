//! The control plane's HTTP API: `/health`, `/v1/status` and the `/v1` management API.
//!
//! [`handle`] reads the request (JSON bodies capped at 1 MiB), routes it by method and path
//! to one file per resource, and turns every error into a response in one place
//! ([`ApiError::into_response`]): `{"error": message}` with the status, as the Agent Vault API
//! does. Handlers authenticate with [`Request::session`], check access with `auth::access`,
//! and reach the store through `Db::run` (off the async threads).
//!
//! This file holds the shared state, the request as handlers see it and [`handle`];
//! `router.rs` the routes, `errors.rs` the errors and how they become responses.

mod agent_grants;
mod agent_invites;
mod agents;
mod approval_page;
mod auth;
mod credentials;
mod errors;
mod logs;
mod plugins;
mod proposals;
mod router;
mod services;
mod sessions;
pub mod settings;
mod status;
mod users;
mod vaults;
pub(crate) mod web_session;

pub(crate) use auth::LOGIN_MAX_SECONDS;
pub use errors::ApiError;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::Session;
use crate::client_addr::TrustedProxies;
use crate::plugin::registry::Registry;
use crate::public_url::PublicAddress;
use crate::ratelimit::{self, AttemptLimiter, SignInLimiter};
use crate::store::{Db, Generation, OwnerKnown, Vault};
use crate::vault::crypto::{DataKey, KdfParams};
use router::route;

/// The largest JSON body the API reads.
const MAX_BODY: usize = 1024 * 1024;

/// Everything handlers share; built once, cheap to clone behind an `Arc`.
pub struct ApiState {
    pub db: Db,
    pub data_key: Arc<DataKey>,
    pub plugins: Arc<Registry>,
    /// The server's own address, for links (`av_addr`, invite links): each request's is
    /// [`Request::base_url`].
    pub address: PublicAddress,
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
    /// The rate limits in force, for `GET /v1/admin/settings`.
    pub rate_limits: settings::RateLimitsInForce,
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
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(
        db: Db,
        data_key: Arc<DataKey>,
        plugins: Arc<Registry>,
        address: PublicAddress,
        password_kdf: KdfParams,
        dev_mode: bool,
        request_log: crate::request_log::RequestLog,
    ) -> Self {
        let attempts = AttemptLimiter::new(Some(ratelimit::RateLimits::DEFAULT));
        ApiState {
            db,
            data_key,
            plugins,
            address,
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
            rate_limits: settings::RateLimitsInForce::new(
                "default",
                Some(ratelimit::RateLimits::DEFAULT),
            ),
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

    /// With other rate limits than the default profile's (`None`: off), which the server
    /// started with from `profile`: the AUTH tier counts attempts and sign-ins with them.
    pub fn with_rate_limits(
        mut self,
        profile: &str,
        limits: Option<ratelimit::RateLimits>,
    ) -> Self {
        let attempts = AttemptLimiter::new(limits);
        self.sign_ins = SignInLimiter::alongside(&attempts);
        self.attempts = attempts;
        self.rate_limits = settings::RateLimitsInForce::new(profile, limits);
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
    /// The server's address as this client reaches it, base path included, for the links
    /// in the answer (`crate::public_url`).
    pub base_url: String,
}

impl Request {
    /// The segments of the path after the leading `/`, each percent-decoded (so an email's
    /// `%40` or a service host's `%2F` arrive as `@` and `/`).
    pub(crate) fn segments(&self) -> Vec<String> {
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

impl ApiState {
    /// After a management write committed: drop this server's caches. Other servers on
    /// the same database hear of it from the database ([`crate::store::Store::watch_changes`]).
    pub fn changed(&self) {
        self.generation.bump();
    }
}

/// Whether the API answers `path` (the `/v1` routes, `/health` and the approval page, and
/// `/metrics` when the metrics listen elsewhere: a scraper gets the API's 404, not a sign-in
/// page); every other path of the control plane is the web console's (`crate::console`).
pub fn owns(path: &str) -> bool {
    path == "/health"
        || path == crate::metrics::endpoint::PATH
        || path == "/v1"
        || path.starts_with("/v1/")
        || path.starts_with("/approve/")
}

/// Serve one request from the TCP peer `peer`.
pub async fn handle(
    state: Arc<ApiState>,
    request: http::Request<Incoming>,
    peer: IpAddr,
) -> Response<Full<Bytes>> {
    let writes = request.method() != Method::GET && request.method() != Method::HEAD;
    let mut response = match read_request(&state, request, peer).await {
        Ok(request) => route(&state, &request)
            .await
            .unwrap_or_else(ApiError::into_response),
        Err(error) => error.into_response(),
    };
    if writes && response.status().is_success() {
        state.changed();
    }
    harden(&mut response);
    response
}

/// A request from the TCP peer `peer` as handlers (the API's and the console's) see it: the
/// client's address, the base URL it reached, the body read in full (at most 1 MiB).
pub(crate) async fn read_request(
    state: &ApiState,
    request: http::Request<Incoming>,
    peer: IpAddr,
) -> Result<Request, ApiError> {
    let client = state.trusted_proxies.client(peer, request.headers());
    let base_url = state.address.for_request(peer, request.headers());
    read(request, client, base_url).await
}

/// The answer to a request outside the base path (`--base-path`): the unknown route's.
pub fn outside_base_path() -> Response<Full<Bytes>> {
    let mut response = ApiError::not_found("no such endpoint").into_response();
    harden(&mut response);
    response
}

/// The headers every answer of the API and the console carries.
pub(crate) fn harden(response: &mut Response<Full<Bytes>>) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
}

async fn read(
    request: http::Request<Incoming>,
    client: IpAddr,
    base_url: String,
) -> Result<Request, ApiError> {
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
    let query = query_pairs(parts.uri.query());
    Ok(Request {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query,
        headers: parts.headers,
        body,
        client,
        base_url,
    })
}

/// A query string's parameters, decoded (none without a query).
fn query_pairs(query: Option<&str>) -> HashMap<String, String> {
    crate::request::raw_query_pairs(query)
        .map(|(name, value)| (decode_form(name), decode_form(value)))
        .collect()
}

/// A query-string component: `+` is a space, then percent-decoding.
pub(crate) fn decode_form(raw: &str) -> String {
    crate::request::decode_component(&raw.replace('+', " "))
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

/// An answer of the API to a call made in-process ([`call`]): its status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

/// A call to the API made in-process by the web console, as the person signed in with the
/// login session `token`: the same route, the same checks and the same answer as over HTTP,
/// so the console can show and do only what the API lets that person see and do. `path_and_query`
/// is an API path (`/v1/...`, without the base path); the client address and base URL are the
/// browser's request's.
pub(crate) async fn call(
    state: &ApiState,
    from: &Request,
    token: Option<&str>,
    method: Method,
    path_and_query: &str,
    body: Option<&serde_json::Value>,
) -> Result<Answer, ApiError> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        let mut value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::bad_request("invalid session token"))?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    let body = match body {
        Some(body) => {
            headers.insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Bytes::from(serde_json::to_vec(body).expect("JSON values serialize"))
        }
        None => Bytes::new(),
    };
    let writes = method != Method::GET && method != Method::HEAD;
    let request = Request {
        method,
        path: path.to_owned(),
        query: query_pairs(query),
        headers,
        body,
        client: from.client,
        base_url: from.base_url.clone(),
    };
    let response = route(state, &request).await?;
    let status = response.status();
    if writes && status.is_success() {
        state.changed();
    }
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Answer { status, body })
}
