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
//! between the check and the connect. With `--egress-proxy` that connection is a `CONNECT`
//! tunnel through the operator's proxy to the checked address (`egress_proxy.rs`); TLS and
//! HTTP run end to end inside it.
//!
//! Failures come back as [`UpstreamError`], found by type (the connector's own error, rustls,
//! hyper), never by message text. Messages name the host and the failing step, never a header
//! or a body. This module knows nothing of plugins, vaults or agents.

//! Files: `settings.rs` (settings, `--upstream-ca`, `--resolve`), `connect.rs` (the guarded
//! connector), `egress_proxy.rs` (`--egress-proxy` and `--no-egress-proxy`), `deadline.rs`
//! (the response-header deadline over the upstream's turns), `headers.rs` (hop-by-hop
//! hygiene), `errors.rs` (what failed, by type); `upgrade.rs`, `websocket.rs` and
//! `netguard.rs` as before.

mod connect;
mod deadline;
mod egress_proxy;
mod errors;
mod headers;
pub mod netguard;
mod settings;
mod upgrade;
pub mod websocket;

pub use egress_proxy::{EgressProxy, InvalidEgressProxy, InvalidNoProxy, NoProxy};
pub use errors::UpstreamError;
pub use headers::{clean_request_headers, clean_response_headers};
pub use settings::{
    InvalidResolvePin, LookupFn, ResolvePin, Resolver, UpstreamConfigError, UpstreamSettings,
    load_ca_file,
};
pub use upgrade::Upgrading;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::request::RequestHead;
use connect::{ConnectConfig, GuardedConnector};
use deadline::{WatchedBody, upstream_deadline};
use errors::{classify, tls_reason};

/// An error from a body or a connector, as hyper and `http-body-util` pass them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body on the proxy's path. Not `Sync`: bodies are polled from one
/// task, and requiring `Sync` would rule out bodies that hold non-`Sync` state.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

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
            egress_proxy: settings.egress_proxy,
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

#[cfg(test)]
mod tests;
