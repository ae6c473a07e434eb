//! `GET /metrics`: who may scrape, and the scrape itself. Served on the control plane, or on
//! a listener of its own (`--metrics-addr`), by `server.rs`.
//!
//! The guard: with a metrics token configured (`--metrics-token-file`,
//! `AGENT_VAULT_METRICS_TOKEN`), every scrape must carry it as `Authorization: Bearer`,
//! from loopback too (agents often run on the server's machine); it is compared as SHA-256
//! digests, in constant time. Without one, only loopback clients may scrape; behind a
//! reverse proxy named in `--trusted-proxies` the client is the one it forwards for
//! (`client_addr.rs`), so a proxy on the same machine does not make every client loopback.
//! No agent or session token opens `/metrics`: the token is its own.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use zeroize::Zeroizing;

use super::{CONTENT_TYPE, metrics};
use crate::accept::{ConnectionLimits, Counted, Door, FirstBytes, StrictHeads};
use crate::auth::tokens;
use crate::client_addr::TrustedProxies;
use crate::store::{self, Db};

/// The path scraped.
pub const PATH: &str = "/metrics";

/// The most connections the metrics listener keeps open (scrapers are few).
pub const MAX_CONNECTIONS: usize = 64;

/// Where `/metrics` is served and who may scrape it.
#[derive(Clone, Default)]
pub struct MetricsSettings {
    /// A listener of its own (`--metrics-addr`); `None`: the control plane's `/metrics`.
    pub listen: Option<SocketAddr>,
    /// The bearer token a scrape needs; `None`: loopback clients only.
    pub token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "[set]"))
            .finish()
    }
}

/// Who may scrape.
#[derive(Clone)]
pub struct MetricsAccess {
    /// The metrics token's hash (`auth::tokens::hash`), if one is configured.
    token_hash: Option<String>,
    trusted_proxies: TrustedProxies,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAccess")
            .field("token", &self.token_hash.as_ref().map(|_| "[set]"))
            .finish_non_exhaustive()
    }
}

/// Why a scrape was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "/metrics answers loopback clients only; set a metrics token \
         (--metrics-token-file or AGENT_VAULT_METRICS_TOKEN) to scrape from elsewhere"
    )]
    NotLoopback,
    #[error("/metrics needs the metrics token as Authorization: Bearer")]
    TokenRequired,
    #[error("the metrics token is not valid")]
    WrongToken,
}

impl Refused {
    fn code(self) -> &'static str {
        match self {
            Refused::NotLoopback => "metrics_loopback_only",
            Refused::TokenRequired => "metrics_token_required",
            Refused::WrongToken => "metrics_token_invalid",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refused::NotLoopback => StatusCode::FORBIDDEN,
            Refused::TokenRequired | Refused::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }
}

impl MetricsAccess {
    /// Scrapes with `token` (if `Some`), else from loopback clients behind `trusted_proxies`.
    pub fn new(token: Option<Zeroizing<String>>, trusted_proxies: TrustedProxies) -> Self {
        MetricsAccess {
            token_hash: token.map(|token| tokens::hash(&token)),
            trusted_proxies,
        }
    }

    /// Whether the request with `headers` from the TCP peer `peer` may scrape.
    pub fn check(&self, peer: IpAddr, headers: &HeaderMap) -> Result<(), Refused> {
        match &self.token_hash {
            Some(expected) => {
                let header = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok());
                let given = crate::auth::bearer(header).map_err(|_| Refused::TokenRequired)?;
                if tokens::matches(given, expected) {
                    Ok(())
                } else {
                    Err(Refused::WrongToken)
                }
            }
            None if is_loopback(self.trusted_proxies.client(peer, headers)) => Ok(()),
            None => Err(Refused::NotLoopback),
        }
    }
}

fn is_loopback(client: IpAddr) -> bool {
    client.to_canonical().is_loopback()
}

/// Answer a request for [`PATH`] from `peer`: the scrape, or a refusal.
pub async fn serve(
    access: &MetricsAccess,
    db: &Db,
    method: &Method,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Response<Full<Bytes>> {
    if let Err(refused) = access.check(peer, headers) {
        let body = serde_json::json!({ "error": refused.to_string(), "code": refused.code() });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = refused.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if refused.status() == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"agent-vault metrics\""),
            );
        }
        return response;
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"{\"error\":\"/metrics answers GET\",\"code\":\"method_not_allowed\"}",
        )));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let pending = match db.run(|store| store.pending_proposals(store::now())).await {
        Ok(pending) => Some(pending),
        Err(error) => {
            tracing::warn!("/metrics: cannot count the pending proposals: {error}");
            None
        }
    };
    let text = metrics().encode(pending);
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// Serve `/metrics` alone on `door` (`--metrics-addr`), until the task is dropped; any
/// other path is 404.
pub async fn serve_listener(
    mut door: Door,
    access: MetricsAccess,
    db: Db,
    limits: ConnectionLimits,
) {
    loop {
        let admitted = door.accept().await;
        let (access, db) = (access.clone(), db.clone());
        let peer = admitted.peer;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let (access, db) = (access.clone(), db.clone());
                async move {
                    let response = if request.uri().path() == PATH {
                        serve(&access, &db, request.method(), request.headers(), peer.ip()).await
                    } else {
                        let mut response = Response::new(Full::new(Bytes::from_static(
                            b"{\"error\":\"this listener serves /metrics only\",\"code\":\"not_found\"}",
                        )));
                        *response.status_mut() = StatusCode::NOT_FOUND;
                        response
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let stream = Counted::new(StrictHeads::new(admitted.stream), admitted.slot);
            let io = FirstBytes::new(stream, limits.header_timeout);
            if let Err(error) = limits
                .http1()
                .serve_connection(TokioIo::new(io), service)
                .await
            {
                tracing::debug!(%peer, "metrics connection ended: {error}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_a_token_only_loopback_scrapes() {
        let access = MetricsAccess::new(None, TrustedProxies::default());
        let none = HeaderMap::new();
        assert_eq!(access.check(ip("127.0.0.1"), &none), Ok(()));
        assert_eq!(access.check(ip("127.0.0.2"), &none), Ok(()));
        assert_eq!(access.check(ip("::1"), &none), Ok(()));
        assert_eq!(access.check(ip("::ffff:127.0.0.1"), &none), Ok(()));
        assert_eq!(
            access.check(ip("10.0.0.5"), &none),
            Err(Refused::NotLoopback)
        );
        assert_eq!(
            access.check(ip("192.0.2.1"), &with_token("anything")),
            Err(Refused::NotLoopback)
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_forwarded_client_decides() {
        let trusted = crate::client_addr::parse("127.0.0.1").unwrap();
        let access = MetricsAccess::new(None, trusted);
        let mut forwarded = HeaderMap::new();
        forwarded.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert_eq!(
            access.check(ip("127.0.0.1"), &forwarded),
            Err(Refused::NotLoopback)
        );
        // A client that is not a trusted proxy cannot claim loopback.
        let mut claimed = HeaderMap::new();
        claimed.insert("x-forwarded-for", "127.0.0.1".parse().unwrap());
        assert_eq!(
            access.check(ip("203.0.113.9"), &claimed),
            Err(Refused::NotLoopback)
        );
    }

    #[test]
    fn with_a_token_every_client_needs_it() {
        let access = MetricsAccess::new(
            Some(Zeroizing::new("s3cret-metrics".to_owned())),
            TrustedProxies::default(),
        );
        assert_eq!(
            access.check(ip("127.0.0.1"), &HeaderMap::new()),
            Err(Refused::TokenRequired)
        );
        assert_eq!(
            access.check(ip("127.0.0.1"), &with_token("s3cret-metric")),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            access.check(ip("198.51.100.7"), &with_token("s3cret-metrics")),
            Ok(())
        );
    }
}
