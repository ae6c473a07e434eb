//! The forward step: send the finished request to the upstream and hand back its answer.
//!
//! [`Upstream`] is built once per server and shared. [`Upstream::send`] owns the request as it
//! goes on the wire: the absolute URI from the [`RequestHead`] (its authority becomes `Host`),
//! hop-by-hop headers removed, every other header and the body's bytes untouched (a plugin may
//! have signed them), the body streamed, redirects never followed. [`clean_response_headers`]
//! is the matching step for the answer.
//!
//! Underneath is hyper-util's pooling client over rustls (TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, webpki roots plus `--upstream-ca`), with our own connector (`GuardedConnector`): it
//! resolves (or takes a `--resolve` pin), refuses the host if *any* address fails
//! [`netguard::check`], and connects only to an address it checked, so DNS cannot change
//! between the check and the connect.
//!
//! Failures come back as [`UpstreamError`], found by type (the connector's own error, rustls,
//! hyper), never by message text. Messages name the host and the failing step, never a header
//! or a body. This module knows nothing of plugins, vaults or agents.

pub mod netguard;
mod upgrade;
pub mod websocket;

pub use upgrade::Upgrading;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::IpNet;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::request::RequestHead;

/// An error from a body or a connector, as hyper and `http-body-util` pass them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body on the proxy's path. Not `Sync`: bodies are polled from one
/// task, and requiring `Sync` would rule out bodies that hold non-`Sync` state.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// How the proxy reaches upstreams.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Extra trust anchors (PEM files given with `--upstream-ca`), on top of the webpki roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// `--resolve HOST:PORT:ADDR` pins, like curl's: connect to ADDR for HOST:PORT without DNS.
    pub resolve: Vec<ResolvePin>,
    /// `AGENT_VAULT_NETWORK_ALLOWLIST`: ranges allowed even though private, loopback, ...
    pub allowlist: Vec<IpNet>,
    /// Resolving the host and opening the TCP connection, all addresses together.
    pub connect_timeout: Duration,
    /// Waiting for the upstream: for the TLS handshake, while it does not take the request
    /// body, and from the end of the request to the response head.
    pub response_header_timeout: Duration,
    /// How long a pooled connection may stay unused.
    pub idle_timeout: Duration,
    /// The addresses agent-vault itself listens on, which the proxy never connects to.
    pub own_listeners: Vec<SocketAddr>,
    /// Name lookups other than the system's (`None`: the system resolver).
    pub resolver: Option<Resolver>,
}

/// A name lookup in place of the system resolver: `(host, port)` to its addresses. For
/// embedders with a resolver of their own, and for tests that need DNS to misbehave.
#[derive(Clone)]
pub struct Resolver(pub Arc<LookupFn>);

/// What a [`Resolver`] calls: `(host, port)` to the host's addresses.
pub type LookupFn = dyn Fn(&str, u16) -> std::io::Result<Vec<IpAddr>> + Send + Sync;

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            extra_roots: Vec::new(),
            resolve: Vec::new(),
            allowlist: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            response_header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            own_listeners: Vec::new(),
            resolver: None,
        }
    }
}

/// A setting the upstream client cannot be built with.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("cannot read the CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error(
        "the CA file {} holds no certificate; it must be PEM with \
         -----BEGIN CERTIFICATE----- blocks",
        path.display()
    )]
    NoCertificates { path: PathBuf },
    #[error("certificate {number} of the CA file {} is not a usable CA: {reason}", path.display())]
    BadCaCertificate {
        path: PathBuf,
        number: usize,
        reason: String,
    },
    #[error("extra trust anchor {number} is not a usable CA certificate: {reason}")]
    BadRoot { number: usize, reason: String },
    #[error("setting up TLS failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Read the certificates of a PEM file given with `--upstream-ca` (one or several; other
/// PEM sections, such as keys, are skipped).
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamConfigError> {
    let unreadable = |error: rustls_pki_types::pem::Error| UpstreamConfigError::CaFile {
        path: path.to_owned(),
        reason: match error {
            rustls_pki_types::pem::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        },
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    if certificates.is_empty() {
        return Err(UpstreamConfigError::NoCertificates {
            path: path.to_owned(),
        });
    }
    for (index, certificate) in certificates.iter().enumerate() {
        RootCertStore::empty()
            .add(certificate.clone())
            .map_err(|error| UpstreamConfigError::BadCaCertificate {
                path: path.to_owned(),
                number: index + 1,
                reason: error.to_string(),
            })?;
    }
    Ok(certificates)
}

/// `--resolve HOST:PORT:ADDR`: connections to HOST:PORT go to ADDR, without DNS. The address
/// is still checked by [`netguard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvePin {
    /// Lower case.
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

/// A `--resolve` value that [`ResolvePin::from_str`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --resolve {input:?}: {reason}")]
pub struct InvalidResolvePin {
    input: String,
    reason: &'static str,
}

impl FromStr for ResolvePin {
    type Err = InvalidResolvePin;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidResolvePin {
            input: input.to_owned(),
            reason,
        };
        let (host, rest) = input.split_once(':').ok_or_else(|| {
            invalid("expected HOST:PORT:ADDR, like api.example.com:443:127.0.0.1")
        })?;
        let (port, addr) = rest.split_once(':').ok_or_else(|| {
            invalid("expected HOST:PORT:ADDR, like api.example.com:443:127.0.0.1")
        })?;
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(invalid(
                "the host must be a DNS name (letters, digits, '-', '_' and '.')",
            ));
        }
        let port = match port.parse::<u16>() {
            Ok(number) if number != 0 && port.bytes().all(|b| b.is_ascii_digit()) => number,
            _ => return Err(invalid("the port must be a number from 1 to 65535")),
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(addr);
        let addr = addr.parse::<IpAddr>().map_err(|_| {
            invalid("the address must be one IP address, an IPv6 one in brackets like [::1]")
        })?;
        Ok(ResolvePin {
            host: host.to_ascii_lowercase(),
            port,
            addr,
        })
    }
}

impl fmt::Display for ResolvePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(addr) => write!(f, "{}:{}:{addr}", self.host, self.port),
            IpAddr::V6(addr) => write!(f, "{}:{}:[{addr}]", self.host, self.port),
        }
    }
}

/// Why a request did not get a response from the upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("{}", blocked_message(host, addr, reason))]
    Blocked {
        host: String,
        addr: IpAddr,
        reason: netguard::Blocked,
    },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("the TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("timed out waiting for {host} ({phase})")]
    Timeout { host: String, phase: &'static str },
    #[error("the exchange with {host} failed: {reason}")]
    Protocol { host: String, reason: String },
    /// The request's own body failed while it was being sent (the agent went away, or a
    /// size limit the caller put on the body). `cause` is the body's error, for downcasting.
    #[error("the request body failed while it was sent to {host}: {cause}")]
    RequestBody {
        host: String,
        cause: Arc<dyn StdError + Send + Sync>,
    },
}

impl UpstreamError {
    /// The machine-readable code for the error body and the request log.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Blocked { .. } => "upstream_blocked",
            UpstreamError::Timeout { .. } => "upstream_timeout",
            UpstreamError::RequestBody { .. } => "request_body_error",
            UpstreamError::Resolve { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::Tls { .. }
            | UpstreamError::Protocol { .. } => "upstream_error",
        }
    }
}

fn blocked_message(host: &str, addr: &IpAddr, reason: &netguard::Blocked) -> String {
    let what = if host == addr.to_string() {
        format!("{addr} is {reason}")
    } else {
        format!("{host} resolves to {addr}, {reason}")
    };
    if reason.range == netguard::Range::Metadata {
        what
    } else {
        format!(
            "{what}; the proxy does not connect there unless AGENT_VAULT_NETWORK_ALLOWLIST holds it"
        )
    }
}

/// The HTTP(S) client toward upstreams. Cheap to clone; one per server.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<GuardedConnector>, WatchedBody>,
    connector: Arc<ConnectConfig>,
    /// The same trust with ALPN `http/1.1` only, for `Upgrade` handshakes.
    tls_http1: Arc<rustls::ClientConfig>,
    response_header_timeout: Duration,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("response_header_timeout", &self.response_header_timeout)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(settings: UpstreamSettings) -> Result<Upstream, UpstreamConfigError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for (index, root) in settings.extra_roots.into_iter().enumerate() {
            roots
                .add(root)
                .map_err(|error| UpstreamConfigError::BadRoot {
                    number: index + 1,
                    reason: error.to_string(),
                })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tls_http1 = tls.clone();
        tls_http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connect = Arc::new(ConnectConfig {
            resolve: settings.resolve,
            allowlist: settings.allowlist,
            own_listeners: settings.own_listeners,
            resolver: settings.resolver,
            connect_timeout: settings.connect_timeout,
        });
        let connector = GuardedConnector {
            config: connect.clone(),
        };
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Upstream {
            client,
            connector: connect,
            tls_http1: Arc::new(tls_http1),
            response_header_timeout: settings.response_header_timeout,
        })
    }

    /// A TCP connection to `host:port` through the same resolution, pins and network guard
    /// as requests (for blind tunnels).
    pub async fn connect_tcp(&self, host: &str, port: u16) -> Result<TcpStream, UpstreamError> {
        Ok(self.connector.connect_to(host, port).await?.into_inner())
    }

    /// Check that `host:port` may be reached (resolving it as a connection would), without
    /// connecting.
    pub async fn check_reachable(&self, host: &str, port: u16) -> Result<(), UpstreamError> {
        let deadline = Instant::now() + self.connector.connect_timeout;
        self.connector
            .checked_addrs(host, port, deadline)
            .await
            .map(drop)
    }

    /// Send `head` with `body` to `head.scheme://head.host:head.port`.
    pub async fn send(
        &self,
        head: RequestHead,
        body: ProxyBody,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let invalid_target = || UpstreamError::Protocol {
            host: head.host.clone(),
            reason: "the request target is not a valid URI".to_owned(),
        };
        let authority = head.authority();
        let uri = Uri::builder()
            .scheme(head.scheme.as_str())
            .authority(authority.as_str())
            .path_and_query(head.path_and_query())
            .build()
            .map_err(|_| invalid_target())?;
        let RequestHead {
            method,
            host,
            mut headers,
            ..
        } = head;
        clean_request_headers(&mut headers);
        // The client writes `Host` from the URI on HTTP/1.1 (the head's authority) and
        // `:authority` on HTTP/2; a `Host` header as well would be a duplicate that some
        // servers (nginx) refuse.
        headers.remove(header::HOST);

        let (body, turn, body_failure) = WatchedBody::new(body);
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;

        let exchange = self.client.request(request);
        match upstream_deadline(exchange, turn, self.response_header_timeout).await {
            Some(Ok(response)) => Ok(response),
            Some(Err(error)) => {
                let failure = body_failure.lock().expect("never poisoned").take();
                Err(match failure {
                    Some(cause) => UpstreamError::RequestBody {
                        host,
                        cause: Arc::from(cause),
                    },
                    None => classify(&host, &error),
                })
            }
            None => Err(UpstreamError::Timeout {
                host,
                phase: "response headers",
            }),
        }
    }
}

/// Request headers that belong to one hop: never forwarded.
const HOP_BY_HOP_REQUEST: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Response headers that must not travel back to the agent.
const HOP_BY_HOP_RESPONSE: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // A session cookie the upstream sets is as good as the credential that earned it.
    header::SET_COOKIE,
    HeaderName::from_static("set-cookie2"),
];

/// Remove the hop-by-hop headers of a request: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-Connection`, `Proxy-Authorization`, `TE` (but `TE: trailers` is kept),
/// `Trailer`, `Transfer-Encoding`, `Upgrade`. [`Upstream::send`] does this; the ingress should
/// too, before the plugin runs, so that an agent cannot name the credential's header in
/// `Connection` and have it removed after the plugin set it.
pub fn clean_request_headers(headers: &mut HeaderMap) {
    let wants_trailers = headers.get_all(header::TE).iter().any(|value| {
        tokens(value).any(|token| {
            let name = token.split(|b| *b == b';').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
    });
    remove_connection_named(headers);
    for name in &HOP_BY_HOP_REQUEST {
        headers.remove(name);
    }
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Remove what must not travel back to the agent: hop-by-hop headers (and any header the
/// upstream names in `Connection`) and `Set-Cookie`.
pub fn clean_response_headers(headers: &mut HeaderMap) {
    remove_connection_named(headers);
    for name in &HOP_BY_HOP_RESPONSE {
        headers.remove(name);
    }
}

/// Remove every header named in a `Connection` header (RFC 9110 §7.6.1).
fn remove_connection_named(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(tokens)
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// The comma-separated elements of a header value, trimmed, empty ones left out.
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// Find what failed by the types in the error's chain.
fn classify(host: &str, error: &hyper_util::client::legacy::Error) -> UpstreamError {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(ConnectError(error)) = current.downcast_ref::<ConnectError>() {
            return error.clone();
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return UpstreamError::Tls {
                host: host.to_owned(),
                reason: tls_reason(tls),
            };
        }
        if current
            .downcast_ref::<rustls_pki_types::InvalidDnsNameError>()
            .is_some()
        {
            return UpstreamError::Tls {
                host: host.to_owned(),
                reason: "the host is not a valid TLS server name".to_owned(),
            };
        }
        // `io::Error::source` skips the error it wraps; rustls errors travel wrapped in one.
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        };
    }
    let reason = chain_text(error);
    if error.is_connect() {
        UpstreamError::Connect {
            host: host.to_owned(),
            reason,
        }
    } else {
        UpstreamError::Protocol {
            host: host.to_owned(),
            reason,
        }
    }
}

fn tls_reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            format!("{error}; if the upstream uses a private CA, trust it with --upstream-ca")
        }
        _ => error.to_string(),
    }
}

/// The messages under hyper-util's own ("client error (Connect)"), joined.
fn chain_text(error: &hyper_util::client::legacy::Error) -> String {
    let mut parts = Vec::new();
    let mut next = error.source();
    while let Some(current) = next {
        parts.push(current.to_string());
        next = current.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

/// Whose turn it is: `Some(since)` while the proxy waits for the upstream (to connect, to take
/// the next piece of the body, to answer), `None` while it waits for the request body.
type Turn = Option<Instant>;

/// Run `exchange` until it ends, or until the upstream has had the turn for `limit` without
/// giving it back (`None`). Waiting for the request body does not count: a slow upload is
/// not a slow upstream.
async fn upstream_deadline<F: Future>(
    exchange: F,
    mut turn: watch::Receiver<Turn>,
    limit: Duration,
) -> Option<F::Output> {
    let mut exchange = pin!(exchange);
    let mut current = *turn.borrow_and_update();
    let mut watching = true;
    loop {
        let deadline = current.map(|since| since + limit);
        tokio::select! {
            output = &mut exchange => return Some(output),
            () = sleep_until_some(deadline) => {
                let latest = *turn.borrow_and_update();
                if latest == current {
                    return None;
                }
                current = latest;
            }
            changed = turn.changed(), if watching => match changed {
                Ok(()) => current = *turn.borrow_and_update(),
                // The body is gone (sent, or dropped by hyper): the rest is the upstream's.
                Err(_) => {
                    watching = false;
                    current = Some(current.unwrap_or_else(Instant::now));
                }
            },
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The request body as hyper sees it: the caller's body, reporting whose turn it is and
/// keeping the body's own error for [`Upstream::send`] to return by type.
struct WatchedBody {
    inner: ProxyBody,
    turn: watch::Sender<Turn>,
    failure: BodyFailure,
}

/// Where [`WatchedBody`] keeps the body's own error.
type BodyFailure = Arc<Mutex<Option<BoxError>>>;

/// What hyper gets when the request body failed; the real error is kept aside.
#[derive(Debug, thiserror::Error)]
#[error("the request body failed")]
struct BodyFailed;

impl WatchedBody {
    fn new(inner: ProxyBody) -> (WatchedBody, watch::Receiver<Turn>, BodyFailure) {
        let (turn, receiver) = watch::channel(Some(Instant::now()));
        let failure = Arc::new(Mutex::new(None));
        let body = WatchedBody {
            inner,
            turn,
            failure: failure.clone(),
        };
        (body, receiver, failure)
    }

    fn upstream_turn(&self) {
        let now = Instant::now();
        // Moving the start of an upstream turn needs no wake-up: the deadline re-reads it.
        self.turn.send_if_modified(|turn| {
            let changed_hands = turn.is_none();
            *turn = Some(now);
            changed_hands
        });
    }

    fn agent_turn(&self) {
        self.turn.send_if_modified(|turn| turn.take().is_some());
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                this.agent_turn();
                Poll::Pending
            }
            Poll::Ready(Some(Err(error))) => {
                *this.failure.lock().expect("never poisoned") = Some(error);
                this.upstream_turn();
                Poll::Ready(Some(Err(Box::new(BodyFailed))))
            }
            Poll::Ready(frame) => {
                this.upstream_turn();
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves, checks every address with [`netguard`], connects to a checked one.
#[derive(Debug, Clone)]
struct GuardedConnector {
    config: Arc<ConnectConfig>,
}

#[derive(Debug)]
struct ConnectConfig {
    resolve: Vec<ResolvePin>,
    allowlist: Vec<IpNet>,
    own_listeners: Vec<SocketAddr>,
    resolver: Option<Resolver>,
    connect_timeout: Duration,
}

/// The connector's failure, carried through hyper-util and found again by type in `classify`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ConnectError(UpstreamError);

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move { config.connect(&uri).await.map_err(ConnectError) })
    }
}

impl ConnectConfig {
    async fn connect(&self, uri: &Uri) -> Result<TokioIo<TcpStream>, UpstreamError> {
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                443
            } else {
                80
            });
        self.connect_to(&host, port).await
    }

    /// The addresses of `host:port`, every one checked by the network guard.
    async fn checked_addrs(
        &self,
        host: &str,
        port: u16,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, UpstreamError> {
        let addrs = self.resolve(host, port, deadline).await?;
        for &addr in &addrs {
            netguard::check(addr, &self.allowlist)
                .and_then(|()| netguard::check_not_own_listener(addr, port, &self.own_listeners))
                .map_err(|reason| UpstreamError::Blocked {
                    host: host.to_owned(),
                    addr,
                    reason,
                })?;
        }
        Ok(addrs)
    }

    async fn connect_to(&self, host: &str, port: u16) -> Result<TokioIo<TcpStream>, UpstreamError> {
        let host = host.to_owned();
        let deadline = Instant::now() + self.connect_timeout;
        let addrs = self.checked_addrs(&host, port, deadline).await?;

        // Connect to the checked addresses in order, sharing out the time that is left.
        let mut refused = None;
        for (index, &addr) in addrs.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / u32::try_from(addrs.len() - index).unwrap_or(u32::MAX);
            let socket = SocketAddr::new(addr, port);
            match tokio::time::timeout(share, TcpStream::connect(socket)).await {
                Ok(Ok(stream)) => {
                    // Without it, small writes (a request head, an h2 frame) wait for ACKs.
                    let _ = stream.set_nodelay(true);
                    return Ok(TokioIo::new(stream));
                }
                Ok(Err(error)) => refused = Some(format!("{socket}: {error}")),
                Err(_) => {}
            }
        }
        Err(match refused {
            Some(reason) => UpstreamError::Connect { host, reason },
            None => UpstreamError::Timeout {
                host,
                phase: "connect",
            },
        })
    }

    /// The addresses for `host:port`: the host itself if it is an IP address, else the
    /// `--resolve` pins for it, else DNS. Never empty.
    async fn resolve(
        &self,
        host: &str,
        port: u16,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, UpstreamError> {
        if let Ok(addr) = host.parse::<IpAddr>() {
            return Ok(vec![addr]);
        }
        let pinned: Vec<IpAddr> = self
            .resolve
            .iter()
            .filter(|pin| pin.host == host && pin.port == port)
            .map(|pin| pin.addr)
            .collect();
        if !pinned.is_empty() {
            return Ok(pinned);
        }
        if let Some(Resolver(lookup)) = &self.resolver {
            let addrs = lookup(host, port).map_err(|error| UpstreamError::Resolve {
                host: host.to_owned(),
                reason: error.to_string(),
            })?;
            if addrs.is_empty() {
                return Err(UpstreamError::Resolve {
                    host: host.to_owned(),
                    reason: "no addresses".to_owned(),
                });
            }
            return Ok(addrs);
        }
        let lookup = tokio::net::lookup_host((host, port));
        let found = tokio::time::timeout_at(deadline, lookup)
            .await
            .map_err(|_| UpstreamError::Timeout {
                host: host.to_owned(),
                phase: "resolve",
            })?
            .map_err(|error| UpstreamError::Resolve {
                host: host.to_owned(),
                reason: error.to_string(),
            })?;
        let mut addrs: Vec<IpAddr> = Vec::new();
        for socket in found {
            if !addrs.contains(&socket.ip()) {
                addrs.push(socket.ip());
            }
        }
        if addrs.is_empty() {
            return Err(UpstreamError::Resolve {
                host: host.to_owned(),
                reason: "no addresses".to_owned(),
            });
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests;
