//! The proxy's request path: an agent's request in, the upstream's answer out, with the
//! credential attached on the way. Start at [`handle`]; it calls the steps in order:
//!
//! 1. accept (`ingress.rs`): `/proxy/{host}/{path}` becomes the outgoing [`RequestHead`],
//!    minus the agent's own `Authorization` and `X-Vault`;
//! 2. authenticate (`authenticate.rs`): the token and the vault it acts in, then the rate
//!    limits;
//! 3. route (`route.rs`): the vault's service for the host, port and path, and its allow rules;
//! 4. plugin (`crate::plugin`): credentials opened from the vault (`credentials.rs`), the
//!    service's plugin shapes the request (hashing the body first if it signs it), and the
//!    service's placeholders become values (`substitution.rs`, `crate::vault::substitute`;
//!    in the path, query and headers before a signer signs); then the request as it will
//!    leave is checked against the route again (`check_outgoing`);
//! 5. forward (`crate::forward`): to the upstream over TLS, the answer streamed back without
//!    hop-by-hop headers or `Set-Cookie`, searched for echoed credentials (`echo.rs`);
//! 6. log (`crate::audit`): one metadata-only row per request.
//!
//! Every failure is a [`ProxyError`], turned into a response in `errors.rs` alone.

pub mod authenticate;
mod credentials;
pub mod directory;
mod discover;
mod echo;
pub mod errors;
pub mod ingress;
pub mod route;
mod substitution;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::accept::AbortSignal;
use crate::audit::RequestLog;
use crate::authority::display_authority;
use crate::forward::websocket::NewRewriter;
use crate::forward::{
    BoxError, ProxyBody, Upgrading, Upstream, UpstreamError, clean_response_headers,
};
use crate::forwarded::TrustedProxies;
use crate::plugin::apply::ApplyError;
use crate::plugin::body::hash_body;
use crate::plugin::registry::Registry;
use crate::plugin::{Call, CallError, Outcome, PluginConfigError, PluginError, needs_body_sha256};
use crate::ratelimit::{AttemptLimiter, RateLimiter};
use crate::request::Scheme;
use crate::store::{self, Db, LogEntry, OwnerKnown};
use crate::vault::crypto::DataKey;
use crate::vault::redact::Redactor;
pub use authenticate::Caller;
pub use directory::Directory;
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
    /// The server's own address, for the links in errors (`proposal_hint`).
    pub base_url: String,
    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    pub directory: Directory,
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
    request: http::Request<Incoming>,
    peer: IpAddr,
) -> Response<ProxyBody> {
    let client = state.trusted_proxies.client(peer, request.headers());
    if request.uri().path() == "/discover" {
        return discover::discover(&state, &request, client)
            .await
            .unwrap_or_else(ProxyError::into_response);
    }
    let started = Instant::now();
    let mut draft = LogDraft::new(request.method(), Ingress::Explicit);
    let response = match proxy(&state, request, client, &mut draft).await {
        Ok(response) => response,
        Err(error) => {
            draft.error_code = Some(error.code());
            error.into_response()
        }
    };
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
    let caller = authenticate::caller(state, &parts.headers, client).await?;
    exchange(state, &caller, &target, parts, body, draft).await
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
    if let Some(entry) = draft.finish(response.status().as_u16(), started) {
        state.request_log.record(entry).await;
    }
    response
}

async fn exchange(
    state: &ProxyState,
    caller: &Caller,
    target: &Target,
    mut parts: http::request::Parts,
    body: Incoming,
    draft: &mut LogDraft,
) -> Result<Response<ProxyBody>, ProxyError> {
    let request_method = parts.method.clone();
    // An HTTP/1 connection ends in an abort if the answer relayed on it breaks off.
    let abort = (parts.version < http::Version::HTTP_2)
        .then(|| parts.extensions.get::<AbortSignal>().cloned())
        .flatten();
    // A WebSocket (or other) upgrade: the protocol asked for, and the agent's side of it.
    let upgrade = ingress::upgrade_protocol(&parts.headers).map(|protocol| {
        (
            protocol,
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
        )
    });
    ingress::check_framing(&parts.headers)?;
    if ingress::content_length(&parts.headers)
        .is_some_and(|length| length > state.settings.max_request_bytes)
    {
        return Err(ProxyError::RequestTooLarge {
            limit: state.settings.max_request_bytes,
        });
    }

    // Admit: nothing goes out that the request log could not record.
    state
        .request_log
        .accepting()
        .map_err(|_| ProxyError::LogUnavailable)?;
    draft.vault_id = Some(caller.vault.id.clone());
    draft.actor = caller.actor.id();
    // Held until the response body is done, so the concurrency cap counts whole exchanges.
    let permit = state
        .limits
        .admit(&caller.scope)
        .await
        .map_err(ProxyError::RateLimited)?;

    // 3. Route.
    let view = state
        .directory
        .view(&caller.vault)
        .await
        .map_err(internal)?;
    let path = route::canonical_path(&target.path)
        .map_err(|error| ProxyError::BadRequest(error.to_string()))?;
    let service = route::match_service(&view.services, &target.host, target.port, &path)
        .ok_or_else(|| ProxyError::NoService {
            host: display_authority(&target.host, target.port),
            vault: caller.vault.name.clone(),
            base_url: state.base_url.clone(),
        })?;
    draft.service = Some(service.name.clone());
    if !service.enabled {
        return Err(ProxyError::ServiceDisabled {
            service: service.name.clone(),
            vault: caller.vault.name.clone(),
        });
    }
    // The request's own method and path, and any an override header asks the upstream for.
    let taken_for = route::taken_for(&parts.method, &path, &parts.headers)
        .map_err(|error| ProxyError::BadRequest(error.to_string()))?;
    for (method, path) in &taken_for {
        route::check_method(&service.allow, method).map_err(|refusal| {
            ProxyError::MethodNotAllowed(format!("{refusal} (service \"{}\")", service.name))
        })?;
        if !route::allowed(&service.allow, method.as_str(), path) {
            return Err(ProxyError::PathNotAllowed(format!(
                "{method} {path} is not allowed by the allow rules of service \"{}\"",
                service.name
            )));
        }
    }

    // 4. Plugin.
    let binding = service.binding();
    draft.credential_keys = service.credential_keys_with(&binding);
    if target.scheme == Scheme::Http
        && !draft.credential_keys.is_empty()
        && !service.allow_plaintext
    {
        return Err(ProxyError::PlaintextRefused {
            service: service.name.clone(),
            host: target.host.clone(),
        });
    }
    let plugin = state
        .plugins
        .get_pinned(&binding.plugin, binding.sha256.as_deref())
        .map_err(|error| ProxyError::Plugin(error.to_string()))?;
    let opened = credentials::open(
        state,
        caller,
        &view,
        service,
        &binding,
        &draft.credential_keys,
    )?;
    let requirements = view
        .requirements(service, &plugin)
        .await
        .map_err(|error| match error {
            PluginConfigError::Plugin(error) => plugin_failure(error, &service.name),
            error => ProxyError::Plugin(error.to_string()),
        })?;
    let mut head = ingress::request_head(&parts, target);
    ingress::drop_session_material(&mut head, &caller.token);
    if opened.redactor.is_some() {
        // Redaction reads response bodies; ask for them uncompressed (see echo.rs).
        head.headers.insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
    }
    let body_limit = state.settings.max_request_bytes;
    let body_replacements = substitution::body_replacements(service, &opened.placeholders, &head)?;
    let (body, body_sha256) = if needs_body_sha256(&requirements.body, &head) {
        let limit = state
            .settings
            .max_hashed_body
            .min(usize::try_from(body_limit).unwrap_or(usize::MAX));
        let hashed = hash_body(body, limit).await.map_err(|error| match error {
            crate::plugin::body::BodyHashError::TooLarge { limit } => ProxyError::RequestTooLarge {
                limit: limit as u64,
            },
            crate::plugin::body::BodyHashError::Read(reason) => {
                ProxyError::BadRequest(format!("reading the request body failed: {reason}"))
            }
        })?;
        // A signing plugin signs the body that goes out, placeholders already replaced.
        let hashed = substitution::replace_hashed(hashed, body_replacements, &mut head.headers);
        (full(hashed.bytes), Some(hashed.sha256))
    } else {
        let limited = Limited::new(body, usize::try_from(body_limit).unwrap_or(usize::MAX))
            .map_err(BoxError::from)
            .boxed_unsync();
        let body = match body_replacements {
            Some(replacements) => {
                substitution::replace_streamed(limited, replacements, &mut head.headers, body_limit)
                    .await?
            }
            None => limited,
        };
        (body, None)
    };
    let credentials = opened.credentials;
    let call = Call {
        service: &service.name,
        vault: &caller.vault.name,
        config: &binding.config,
        credentials: &credentials,
        now: SystemTime::now(),
        body_sha256: body_sha256.as_ref(),
        placeholders: Some(&opened.placeholders),
    };
    let leaving_for = Destination::of(&head);
    match plugin.authorize(&mut head, &call).await {
        Ok(Outcome::Forward) => {}
        Ok(Outcome::Deny { status, reason }) => return Err(ProxyError::Denied { status, reason }),
        Err(error) => return Err(plugin_failure(error, &service.name)),
    }
    drop(credentials);
    check_outgoing(service, plugin.name(), &leaving_for, &head)?;
    let websocket = matches!(&upgrade, Some((protocol, _))
        if protocol.as_bytes().eq_ignore_ascii_case(b"websocket"));
    // The agent's placeholders in its messages, if the service substitutes there.
    let message_placeholders = websocket
        .then(|| opened.placeholders.for_websocket())
        .flatten();
    if message_placeholders.is_some() || (websocket && opened.redactor.is_some()) {
        // Messages are rewritten as they pass (placeholders one way, echoed credentials the
        // other), which no negotiated extension (such as compression) would survive.
        head.headers.remove(http::header::SEC_WEBSOCKET_EXTENSIONS);
    }
    drop(opened.placeholders);

    // 5. Forward.
    let response = match upgrade {
        Some((protocol, agent)) => {
            let agent = agent.ok_or_else(|| {
                ProxyError::BadRequest(
                    "this connection cannot be upgraded (use HTTP/1.1 for WebSocket)".into(),
                )
            })?;
            match state
                .upstream
                .upgrade(head, protocol)
                .await
                .map_err(ProxyError::Upstream)?
            {
                Upgrading::Answered(response) => response,
                Upgrading::Switched { response, upstream } => {
                    let to_upstream = message_placeholders.map(|replacements| -> NewRewriter {
                        Box::new(move || substitution::text_rewriter(&replacements))
                    });
                    let to_agent = match &opened.redactor {
                        Some(redactor) if websocket => Some(echo::websocket_messages(
                            redactor,
                            &service.name,
                            &caller.vault.name,
                        )),
                        _ => None,
                    };
                    return Ok(switched(
                        response,
                        agent,
                        upstream,
                        permit,
                        opened.redactor.as_ref(),
                        (to_upstream, to_agent),
                    ));
                }
            }
        }
        None => state
            .upstream
            .send(head, body)
            .await
            .map_err(|error| upstream_failure(error, body_limit))?,
    };
    let (mut parts, body) = response.into_parts();
    clean_response_headers(&mut parts.headers);
    let body = match state.settings.max_response_bytes {
        Some(limit) => {
            if ingress::content_length(&parts.headers).is_some_and(|length| length > limit) {
                return Err(ProxyError::ResponseTooLarge { limit });
            }
            Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
                .map_err(BoxError::from)
                .boxed_unsync()
        }
        None => body.map_err(BoxError::from).boxed_unsync(),
    };
    let body = match opened.redactor {
        Some(redactor) => {
            let echo = echo::Echo {
                service: &service.name,
                vault: &caller.vault.name,
                policy: service.responses,
                request_method: &request_method,
                host: &target.host,
                response_limit: state.settings.max_response_bytes,
            };
            echo::redact(&echo, &redactor, &mut parts, body).await?
        }
        None => body,
    };
    let body = relay_failures(body, abort)
        .map_frame(move |frame| {
            let _held = &permit;
            frame
        })
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

/// The agent's `101`, once the upstream switched: the upstream's headers (without cookies,
/// searched for credentials), and a task that joins the two upgraded connections, holding
/// the rate-limit permit as long as they are open. A direction with a rewriter (a WebSocket's
/// messages) goes through the frame relay; without either, the bytes are copied.
fn switched(
    response: Response<()>,
    agent: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::Upgraded,
    permit: crate::ratelimit::Permit,
    redactor: Option<&Redactor>,
    (to_upstream, to_agent): (Option<NewRewriter>, Option<NewRewriter>),
) -> Response<ProxyBody> {
    let (mut parts, ()) = response.into_parts();
    let upgrade = parts.headers.get(http::header::UPGRADE).cloned();
    clean_response_headers(&mut parts.headers);
    if let Some(redactor) = redactor {
        redactor.headers(&mut parts.headers);
    }
    if let Some(upgrade) = upgrade {
        parts.headers.insert(http::header::UPGRADE, upgrade);
    }
    parts.headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    tokio::spawn(async move {
        let _held = permit;
        match agent.await {
            Ok(agent) => {
                let mut agent = hyper_util::rt::TokioIo::new(agent);
                let mut upstream = hyper_util::rt::TokioIo::new(upstream);
                let ended = if to_upstream.is_none() && to_agent.is_none() {
                    tokio::io::copy_bidirectional(&mut agent, &mut upstream)
                        .await
                        .map(drop)
                } else {
                    crate::forward::websocket::join(agent, upstream, to_upstream, to_agent).await
                };
                if let Err(error) = ended {
                    tracing::debug!("upgraded connection ended: {error}");
                }
            }
            Err(error) => tracing::debug!("the agent's side of the upgrade failed: {error}"),
        }
    });
    Response::from_parts(parts, full(Bytes::new()))
}

/// A plugin's failure as the agent sees it: a placeholder that does not fit
/// (`substitution_error`), a credential that does not fit where the plugin put it
/// (`credential_unrenderable`, saying no more), a plugin at its limit of slow calls
/// (`plugin_busy`), anything else `plugin_error`.
fn plugin_failure(error: PluginError, service: &str) -> ProxyError {
    match error {
        PluginError::Apply {
            error: ApplyError::Substitution(error),
            ..
        } => ProxyError::Substitution(error.to_string()),
        PluginError::Apply { plugin, error } if error.is_unrenderable_credential() => {
            ProxyError::CredentialUnrenderable {
                plugin,
                service: service.to_owned(),
            }
        }
        error @ PluginError::Call {
            error: CallError::Busy { .. },
            ..
        } => ProxyError::PluginBusy(error.to_string()),
        error => ProxyError::Plugin(error.to_string()),
    }
}

/// Where the request was going before the plugin ran: what no plugin may change.
#[derive(Debug, PartialEq, Eq)]
struct Destination {
    method: Method,
    scheme: crate::request::Scheme,
    host: String,
    port: u16,
}

impl Destination {
    fn of(head: &crate::request::RequestHead) -> Destination {
        Destination {
            method: head.method.clone(),
            scheme: head.scheme,
            host: head.host.clone(),
            port: head.port,
        }
    }
}

/// The request as it will leave, after the plugin and the placeholders, checked as the route
/// checked the agent's: the same method, scheme, host and port, and a path the service covers
/// and its allow rules let through. A plugin's path rewrite cannot reach what the rules
/// exclude. The message names the plugin and never repeats the outgoing path, which may hold
/// a credential.
fn check_outgoing(
    service: &crate::services::Service,
    plugin: &str,
    before: &Destination,
    head: &crate::request::RequestHead,
) -> Result<(), ProxyError> {
    let allowed = Destination::of(head) == *before
        && route::canonical_path(&head.path).is_ok_and(|path| {
            (service.path.is_empty() || route::glob_matches(&service.path, &path))
                && route::allowed(&service.allow, head.method.as_str(), &path)
        });
    if allowed {
        return Ok(());
    }
    Err(ProxyError::PathNotAllowed(format!(
        "the request as plugin \"{plugin}\" leaves it is not allowed by service \"{}\": its \
         path and allow rules are checked again on the request after the plugin and the \
         placeholders",
        service.name
    )))
}

/// `body`, raising `abort` if it fails: the agent's connection must then end in an abort,
/// not a close that would pass for the end of the answer (`accept/abort.rs`).
fn relay_failures(body: ProxyBody, abort: Option<AbortSignal>) -> ProxyBody {
    match abort {
        Some(abort) => body
            .map_err(move |error| {
                abort.raise();
                error
            })
            .boxed_unsync(),
        None => body,
    }
}

/// An upstream failure, unless it was the agent's body that failed: too large (413) or cut
/// off (400).
fn upstream_failure(error: UpstreamError, body_limit: u64) -> ProxyError {
    match &error {
        UpstreamError::RequestBody { cause, .. } if cause.is::<LengthLimitError>() => {
            ProxyError::RequestTooLarge { limit: body_limit }
        }
        UpstreamError::RequestBody { .. } => {
            ProxyError::BadRequest(format!("reading the request body failed: {error}"))
        }
        _ => ProxyError::Upstream(error),
    }
}

fn internal(error: store::StoreError) -> ProxyError {
    ProxyError::Internal(error.to_string())
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
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
