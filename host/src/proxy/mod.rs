//! The proxy's request path: an agent's request in, the upstream's answer out, with the
//! credential attached on the way. Start at [`handle`] (the explicit ingress; the transparent
//! one enters at [`serve_request`]); after accept and authenticate, `exchange` calls the
//! stages in order, each in a file named after it:
//!
//! 1. accept (`ingress.rs`): `/proxy/{host}/{path}` becomes a [`Target`];
//! 2. authenticate (`authenticate.rs`): the token and the vault it acts in;
//! 3. admit (`admit.rs`): framing, declared size, the request log's readiness, a rate-limit
//!    permit;
//! 4. route (`route.rs`): the vault's service for the host, port and path, and its allow
//!    rules;
//! 5. open credentials (`credentials.rs`): the service's credentials opened once, unless they
//!    would leave in clear text;
//! 6. outgoing (`outgoing.rs`): the agent's head without its session material, its body
//!    limited, placeholders replaced in it (`body_fill.rs`), hashed if the plugin signs it;
//! 7. decide (`decide.rs`): the service's plugin decides (`crate::plugin`), and its checked
//!    decision comes back as a plan in the host's types;
//! 8. fill (`fill.rs`): the plan written into the request (`crate::fill`: credentials
//!    rendered by the vault, placeholders in the path, query and headers, signers last); then
//!    the request as it will leave is checked against the route again;
//! 9. forward (`send.rs`): to the upstream over TLS (`crate::upstream`), or an upgrade joined;
//! 10. respond (`respond.rs`): the answer streamed back without hop-by-hop headers or
//!     `Set-Cookie`, searched for echoed credentials (`redact.rs`);
//! 11. log (`crate::request_log`): one metadata-only row per request, written by the caller of
//!     `exchange` whatever the outcome.
//!
//! Every failure is a [`ProxyError`], turned into a response in `errors.rs` alone.

mod admit;
pub mod authenticate;
mod body_fill;
pub mod cache;
mod credentials;
mod decide;
mod discover;
pub mod errors;
mod fill;
pub mod ingress;
mod outgoing;
mod redact;
mod respond;
pub mod route;
mod send;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::authority::display_authority;
use crate::client_addr::TrustedProxies;
use crate::plugin::registry::Registry;
use crate::public_url::{ControlPlanePeer, PublicAddress};
use crate::ratelimit::{AttemptLimiter, RateLimiter};
use crate::request_log::RequestLog;
use crate::store::{self, Db, LogEntry, OwnerKnown};
use crate::upstream::{ProxyBody, Upstream};
use crate::vault::crypto::DataKey;
pub use authenticate::Caller;
pub use cache::Cache;
pub use errors::ProxyError;
pub use ingress::Target;

/// Limits of the data path.
#[derive(Debug, Clone, Copy)]
pub struct ProxySettings {
    /// The largest request body forwarded (413 beyond).
    pub max_request_bytes: u64,
    /// The largest response body relayed (502 beyond; `None`: no limit).
    pub max_response_bytes: Option<u64>,
    /// The largest body hashed for a plugin that signs it.
    pub max_hashed_body: usize,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            max_request_bytes: 1024 * 1024 * 1024,
            max_response_bytes: None,
            max_hashed_body: crate::plugin::body::DEFAULT_MAX_HASHED_BODY,
        }
    }
}

/// Everything the request path needs; built once, shared. The handles it shares with the
/// management API (the store, the data key, the plugins, the request log) are clones of the
/// same ones, given to each by `server.rs`.
#[derive(Debug)]
pub struct ProxyState {
    pub db: Db,
    /// Whether the instance has an owner yet (the proxy answers 503 before).
    pub owner_known: OwnerKnown,
    /// Opens the credentials a request needs (`credentials.rs`).
    pub data_key: Arc<DataKey>,
    pub plugins: Arc<Registry>,
    /// The queue each request's log row goes to.
    pub request_log: RequestLog,
    /// The server's own address, for the links in errors (`proposal_hint`), as the peer of
    /// a request on the control plane sees it (`ControlPlanePeer`, set by [`handle`]).
    pub address: PublicAddress,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    pub cache: Cache,
    pub upstream: Upstream,
    pub limits: RateLimiter,
    /// Failed token lookups per client address (the AUTH tier, failures only).
    pub auth_failures: AttemptLimiter,
    pub settings: ProxySettings,
}

/// Whether a request is for the proxy rather than the management API.
pub fn is_proxy_request(path: &str) -> bool {
    path.starts_with("/proxy/") || path == "/discover"
}

/// Serve one proxy request (or `GET /discover`) from the TCP peer `peer`.
pub async fn handle(
    state: Arc<ProxyState>,
    mut request: http::Request<Incoming>,
    peer: IpAddr,
) -> Response<ProxyBody> {
    let client = state.trusted_proxies.client(peer, request.headers());
    request.extensions_mut().insert(ControlPlanePeer(peer));
    if request.uri().path() == "/discover" {
        return discover::discover(&state, &request, client)
            .await
            .unwrap_or_else(ProxyError::into_response);
    }
    let started = Instant::now();
    let mut draft = LogDraft::new(request.method(), Ingress::Explicit);
    let mut caller = None;
    let response = match proxy(&state, request, client, &mut draft, &mut caller).await {
        Ok(response) => response,
        Err(error) => {
            draft.error_code = Some(error.code());
            error.into_response()
        }
    };
    draft.count(caller.as_ref(), response.status().as_u16(), started);
    if let Some(entry) = draft.finish(response.status().as_u16(), started) {
        state.request_log.record(entry).await;
    }
    response
}

async fn proxy(
    state: &ProxyState,
    request: http::Request<Incoming>,
    client: IpAddr,
    draft: &mut LogDraft,
    caller: &mut Option<Caller>,
) -> Result<Response<ProxyBody>, ProxyError> {
    // 1. Accept.
    let (parts, body) = request.into_parts();
    let target = ingress::target(&parts.uri)?;
    draft.host = display_authority(&target.host, target.port);
    draft.path = target.path.clone();
    if parts.method == Method::CONNECT {
        return Err(ProxyError::BadRequest(
            "CONNECT goes to the transparent proxy port".into(),
        ));
    }

    // 2. Authenticate.
    let caller = caller.insert(authenticate::caller(state, &parts.headers, client).await?);
    exchange(state, caller, &target, parts, body, draft).await
}

/// Serve one request of an authenticated caller, whichever ingress it came in by: admit it,
/// route it, let the service's plugin attach the credential, forward it. Errors are the
/// caller's to turn into a response (and a log row: `draft` says how far it got).
pub async fn serve_request(
    state: &ProxyState,
    caller: &Caller,
    target: &Target,
    request: http::Request<Incoming>,
    ingress: Ingress,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let mut draft = LogDraft::new(request.method(), ingress);
    draft.host = display_authority(&target.host, target.port);
    draft.path = target.path.clone();
    let (parts, body) = request.into_parts();
    let response = match exchange(state, caller, target, parts, body, &mut draft).await {
        Ok(response) => response,
        Err(error) => {
            // A refusal because the log cannot be written is the one failure not logged.
            if !matches!(error, ProxyError::LogUnavailable) {
                draft
                    .vault_id
                    .get_or_insert_with(|| caller.vault.id.clone());
            }
            draft.error_code = Some(error.code());
            error.into_response()
        }
    };
    draft.count(Some(caller), response.status().as_u16(), started);
    if let Some(entry) = draft.finish(response.status().as_u16(), started) {
        state.request_log.record(entry).await;
    }
    response
}

/// The stages of one request after authentication, in order; each refuses by returning the
/// error the agent gets.
async fn exchange(
    state: &ProxyState,
    caller: &Caller,
    target: &Target,
    mut parts: http::request::Parts,
    body: Incoming,
    draft: &mut LogDraft,
) -> Result<Response<ProxyBody>, ProxyError> {
    let admitted = admit::admit(state, caller, &mut parts, draft).await?;
    let view = state.cache.view(&caller.vault).await.map_err(internal)?;
    let service = route::select_service(state, caller, &view, target, &parts, draft)?;
    let binding = service.binding();
    let opened =
        credentials::open_for_request(state, caller, &view, (service, &binding), target, draft)?;
    let plugin = decide::plugin(state, &binding)?;
    let requirements = decide::requirements(&view, service, &plugin).await?;
    let redacting = opened.redactor.is_some();
    let mut outgoing = outgoing::prepare(
        state,
        (&parts, body),
        target,
        &caller.token,
        (service, &opened.placeholders, redacting),
        &requirements,
    )
    .await?;
    let now = SystemTime::now();
    let hashed = (outgoing.body_sha256.as_ref(), now);
    let plan = decide::decide(
        &plugin,
        (service, &binding),
        caller,
        &opened.credentials,
        &outgoing.head,
        hashed,
    )
    .await?;
    fill::fill(
        &plan,
        (service, plugin.name()),
        (opened.credentials, &opened.placeholders),
        &mut outgoing.head,
        hashed,
    )?;
    let mut permit = Some(admitted.permit);
    let answer = send::forward(
        state,
        (service, &caller.vault.name),
        outgoing,
        admitted.upgrade,
        opened.placeholders,
        (opened.redactor.as_ref(), &mut permit),
    )
    .await?;
    let response = match answer {
        send::Answer::Switched(response) => return Ok(response),
        send::Answer::Body(response) => response,
    };
    let echo = redact::Echo {
        service: &service.name,
        vault: &caller.vault.name,
        policy: service.responses,
        request_method: &admitted.method,
        host: &target.host,
        response_limit: state.settings.max_response_bytes,
    };
    let permit = permit.expect("kept unless the connection was upgraded");
    respond::relay(
        state,
        response,
        (echo, opened.redactor),
        admitted.abort,
        permit,
    )
    .await
}

fn internal(error: store::StoreError) -> ProxyError {
    ProxyError::Internal(error)
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Count in `/metrics` a refusal of `ingress` that gets no log row (`vault=""`), answered
/// with `response` since `started`.
pub fn count_unlogged(ingress: Ingress, response: &Response<ProxyBody>, started: Instant) {
    crate::metrics::metrics().request(
        None,
        None,
        ingress.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
}

/// Which door a request came in by, as the request log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// `/proxy/{host}/{path}` on the control-plane port.
    Explicit,
    /// The forward proxy (`HTTPS_PROXY`).
    Transparent,
}

impl Ingress {
    pub fn as_str(self) -> &'static str {
        match self {
            Ingress::Explicit => "explicit",
            Ingress::Transparent => "transparent",
        }
    }
}

/// The request log row, filled in as the request goes.
#[derive(Debug)]
struct LogDraft {
    ingress: Ingress,
    method: String,
    host: String,
    path: String,
    vault_id: Option<String>,
    actor: Option<store::ActorId>,
    service: Option<String>,
    credential_keys: Vec<String>,
    error_code: Option<&'static str>,
}

impl LogDraft {
    fn new(method: &Method, ingress: Ingress) -> Self {
        LogDraft {
            ingress,
            method: method.as_str().to_owned(),
            host: String::new(),
            path: String::new(),
            vault_id: None,
            actor: None,
            service: None,
            credential_keys: Vec::new(),
            error_code: None,
        }
    }

    /// Count the request in `/metrics`, answered with `status`: under its vault (`caller`'s)
    /// and service exactly when it gets a log row, so the counters add up to the log.
    fn count(&self, caller: Option<&Caller>, status: u16, started: Instant) {
        let vault = caller
            .filter(|_| self.vault_id.is_some())
            .map(|caller| caller.vault.name.as_str());
        crate::metrics::metrics().request(
            vault,
            self.service.as_deref().filter(|_| vault.is_some()),
            self.ingress.as_str(),
            status,
            started.elapsed(),
        );
    }

    /// The row, if the request got far enough to know its vault.
    fn finish(self, status: u16, started: Instant) -> Option<LogEntry> {
        Some(LogEntry {
            id: 0,
            vault_id: self.vault_id?,
            ingress: self.ingress.as_str().into(),
            method: self.method,
            host: self.host,
            path: self.path,
            matched_service: self.service,
            credential_keys: self.credential_keys,
            status,
            latency_ms: started.elapsed().as_millis() as u64,
            error_code: self.error_code.map(str::to_owned),
            actor: self.actor,
            created_at: store::now(),
        })
    }
}
