//! The transparent ingress: a standard forward proxy for agents that cannot rewrite URLs but,
//! like every HTTP client, honour `HTTPS_PROXY`.
//!
//! An agent authenticates with `Proxy-Authorization` (Basic `token:vault`, as
//! `HTTPS_PROXY=http://{token}:{vault}@127.0.0.1:14322` sends it, or Bearer); without it the
//! answer is 407. Then:
//!
//! - `CONNECT host:port` to a host one of the vault's services covers: the proxy answers 200,
//!   terminates TLS with a certificate for that host from the local CA (`ca.rs`), and serves
//!   each request inside the tunnel through the same route, plugin and forward steps as the
//!   explicit ingress (`tunnel.rs`), re-checking the token every time. The SNI and every
//!   request's `Host` must name the CONNECT host.
//! - `CONNECT` to any other host: under the vault's default `passthrough` policy a blind TCP
//!   tunnel (nothing intercepted, so certificate-pinning clients keep working); under `deny`,
//!   403 with the `proposal_hint`. Either way the address passes the network guard first.
//! - An absolute-form request (`GET http://host/path`): forwarded like one inside a tunnel, to
//!   a plain-http upstream.

pub mod ca;
mod tunnel;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::accept::{AbortSignal, Abortable, ConnectionLimits, Counted, StrictHeads};
use crate::authority::{AuthorityError, display_authority, parse_authority};
use crate::drain::DrainWatcher;
use crate::metrics::{TunnelKind, metrics};
use crate::proxy::{
    Caller, Ingress, ProxyError, ProxyState, Target, authenticate, count_unlogged, route,
};
use crate::request::Scheme;
use crate::store::{self, LogEntry};
use crate::upstream::ProxyBody;
pub use ca::LocalCa;

/// What every connection of the transparent listener shares.
#[derive(Debug)]
pub struct Transparent {
    pub proxy: Arc<ProxyState>,
    pub ca: Arc<LocalCa>,
    /// The header timeout and the HTTP limits, for the listener's connections and inside
    /// intercepted tunnels (`accept/`).
    pub limits: ConnectionLimits,
}

/// The proxy credentials of a request: the token, and the vault it names, if any.
#[derive(Clone)]
pub(crate) struct ProxyCredentials {
    token: Zeroizing<String>,
    vault: Option<String>,
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCredentials")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

const AUTH_HELP: &str = "Proxy credentials required: set HTTPS_PROXY=http://{token}:{vault}@{proxy address} \
     (or send Proxy-Authorization: Bearer {token})";

/// `Proxy-Authorization`: Basic `token:vault` (the vault may be empty) or Bearer `token`.
fn proxy_credentials(headers: &HeaderMap) -> Result<ProxyCredentials, ProxyError> {
    let missing = || ProxyError::ProxyAuthRequired(AUTH_HELP.to_owned());
    let value = headers
        .get(header::PROXY_AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(missing)?
        .trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(missing)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(ProxyCredentials {
            token: Zeroizing::new(rest.to_owned()),
            vault: None,
        });
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(missing());
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| missing())?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| missing())?;
    let (token, vault) = text.split_once(':').unwrap_or((text, ""));
    if token.is_empty() {
        return Err(missing());
    }
    let vault = crate::request::decode_component(vault);
    Ok(ProxyCredentials {
        token: Zeroizing::new(token.to_owned()),
        vault: Some(vault).filter(|vault| !vault.is_empty()),
    })
}

/// Who is calling from `client`, by the proxy credentials: an unknown or expired token is
/// a 407, as proxies answer it.
pub(crate) async fn caller(
    proxy: &ProxyState,
    credentials: &ProxyCredentials,
    client: IpAddr,
) -> Result<Caller, ProxyError> {
    let vault = credentials.vault.clone();
    authenticate::token_caller(proxy, &credentials.token, vault, true, client)
        .await
        .map_err(|error| match error {
            ProxyError::Unauthorized(message) => ProxyError::ProxyAuthRequired(message),
            other => other,
        })
}

/// `host:port` of a CONNECT request.
fn connect_target(authority: Option<&http::uri::Authority>) -> Result<(String, u16), ProxyError> {
    let bad = || ProxyError::BadRequest("CONNECT needs a target host:port".into());
    let authority = authority.ok_or_else(bad)?;
    match parse_authority(authority.as_str()) {
        Ok((host, Some(port))) => Ok((host, port)),
        Ok((_, None)) | Err(AuthorityError::Port) => Err(bad()),
        Err(AuthorityError::Host) => Err(ProxyError::BadRequest(format!(
            "invalid CONNECT target {authority}"
        ))),
    }
}

/// Serve one connection of the transparent listener until the client closes it, or until
/// shutdown once its request in flight is answered (intercepted tunnels it opened get their
/// own watcher). The server hands it to a worker with that worker's [`Transparent`], so the
/// connection, its tunnels and its upstream connections all live on that worker's thread.
pub async fn serve_connection(
    transparent: Arc<Transparent>,
    stream: Counted<StrictHeads<Abortable<TcpStream>>>,
    abort: AbortSignal,
    peer: SocketAddr,
    watcher: DrainWatcher,
) {
    let tunnels = watcher.clone();
    // A client that never finishes its request head must not hold a connection forever.
    let builder = transparent.limits.http1();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        let (transparent, tunnels) = (transparent.clone(), tunnels.clone());
        request.extensions_mut().insert(abort.clone());
        async move { Ok::<_, Infallible>(transparent.handle(request, tunnels, peer.ip()).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let finished = watcher.watch(connection, |connection| connection.graceful_shutdown());
    if let Err(error) = finished.await {
        tracing::debug!(%peer, "transparent proxy connection ended: {error}");
    }
}

impl Transparent {
    /// One request on the proxy hop: a CONNECT, an absolute-form request, or a mistake. An
    /// intercepted tunnel runs under `tunnels`, a watcher of its own.
    async fn handle(
        self: Arc<Self>,
        request: http::Request<Incoming>,
        tunnels: DrainWatcher,
        client: IpAddr,
    ) -> Response<ProxyBody> {
        // Answers that are not logged (a refusal before the vault is known, a refused tunnel)
        // are counted here; the rest where their log row is written. An intercepted tunnel
        // is not a request itself: each request inside it is.
        let started = Instant::now();
        let unlogged = |error: ProxyError| {
            let response = error.into_response();
            count_unlogged(Ingress::Transparent, &response, started);
            response
        };
        if request.method() == Method::CONNECT {
            return self
                .connect(request, tunnels, client, started)
                .await
                .unwrap_or_else(unlogged);
        }
        if request.uri().scheme_str() == Some("http") {
            return self
                .plain_http(request, client)
                .await
                .unwrap_or_else(unlogged);
        }
        unlogged(ProxyError::BadRequest(
            "This is an HTTP forward proxy: send CONNECT host:port for https, or an absolute \
             http:// URL; for /proxy/{host}/{path} use the control-plane address"
                .into(),
        ))
    }

    async fn connect(
        self: &Arc<Self>,
        mut request: http::Request<Incoming>,
        watcher: DrainWatcher,
        client: IpAddr,
        started: Instant,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (host, port) = connect_target(request.uri().authority())?;
        let credentials = proxy_credentials(request.headers())?;
        let caller = caller(&self.proxy, &credentials, client).await?;
        // Nothing opens that the request log cannot record (an intercepted tunnel's
        // requests are also admitted one by one, as they come).
        self.proxy
            .request_log
            .accepting()
            .map_err(|_| ProxyError::LogUnavailable)?;
        let view = self
            .proxy
            .cache
            .view(&caller.vault)
            .await
            .map_err(ProxyError::Internal)?;
        let intercept = route::covers_host(&view.services, &host, port);
        if !intercept && view.deny_unmatched {
            let error = ProxyError::NoService {
                host: display_authority(&host, port),
                vault: caller.vault.name.clone(),
                base_url: self.proxy.address.fixed().to_owned(),
            };
            let error_code = error.code();
            let response = error.into_response();
            self.log_tunnel(
                &caller,
                (&host, port),
                response.status(),
                Some(error_code),
                started,
            )
            .await;
            return Ok(response);
        }
        let upgrade = hyper::upgrade::on(&mut request);
        let transparent = self.clone();
        if intercept {
            // Refuse a blocked address now, with a clear answer, rather than as a broken
            // tunnel (a blind tunnel connects first, which checks it).
            self.proxy
                .upstream
                .check_reachable(&host, port)
                .await
                .map_err(ProxyError::Upstream)?;
            tokio::spawn(async move {
                match upgrade.await {
                    Ok(upgraded) => {
                        let _open = metrics().tunnel(TunnelKind::Intercepted);
                        let tunnel = tunnel::Tunnel {
                            transparent,
                            host,
                            port,
                            credentials,
                            client,
                        };
                        tunnel::intercept(tunnel, upgraded, watcher).await
                    }
                    Err(error) => tracing::debug!("CONNECT upgrade failed: {error}"),
                }
            });
        } else {
            let upstream = self
                .proxy
                .upstream
                .connect_tcp(&host, port)
                .await
                .map_err(ProxyError::Upstream)?;
            let response = Response::new(empty());
            self.log_tunnel(&caller, (&host, port), response.status(), None, started)
                .await;
            tokio::spawn(async move {
                match upgrade.await {
                    Ok(upgraded) => {
                        let _open = metrics().tunnel(TunnelKind::Blind);
                        tunnel::blind(upgraded, upstream).await
                    }
                    Err(error) => tracing::debug!("CONNECT upgrade failed: {error}"),
                }
            });
            return Ok(response);
        }
        Ok(Response::new(empty()))
    }

    async fn plain_http(
        &self,
        request: http::Request<Incoming>,
        client: IpAddr,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let uri = request.uri();
        let invalid = || ProxyError::BadRequest(format!("invalid target URL {uri}"));
        // The same rule as every other host: `user:password@` before it is refused, not
        // dropped.
        let (host, port) = match uri
            .authority()
            .map(|authority| parse_authority(authority.as_str()))
        {
            Some(Ok((host, port))) => (host, port.unwrap_or(80)),
            Some(Err(AuthorityError::Port)) => {
                return Err(ProxyError::BadRequest(format!("invalid port in URL {uri}")));
            }
            Some(Err(AuthorityError::Host)) | None => return Err(invalid()),
        };
        let target = Target {
            scheme: Scheme::Http,
            host,
            port,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
        };
        let credentials = proxy_credentials(request.headers())?;
        let caller = caller(&self.proxy, &credentials, client).await?;
        Ok(crate::proxy::serve_request(
            &self.proxy,
            &caller,
            &target,
            request,
            Ingress::Transparent,
        )
        .await)
    }

    /// A request-log row (and its count in `/metrics`) for a tunnel that carries no
    /// intercepted requests, answered with `status`.
    async fn log_tunnel(
        &self,
        caller: &Caller,
        (host, port): (&str, u16),
        status: http::StatusCode,
        error_code: Option<&str>,
        started: Instant,
    ) {
        let status = status.as_u16();
        metrics().request(
            Some(&caller.vault.name),
            None,
            Ingress::Transparent.as_str(),
            status,
            started.elapsed(),
        );
        let entry = LogEntry {
            id: 0,
            vault_id: caller.vault.id.clone(),
            ingress: Ingress::Transparent.as_str().into(),
            method: "CONNECT".into(),
            host: display_authority(host, port),
            path: String::new(),
            matched_service: None,
            credential_keys: Vec::new(),
            status,
            latency_ms: 0,
            error_code: error_code.map(str::to_owned),
            actor: caller.actor.id(),
            created_at: store::now(),
        };
        self.proxy.request_log.record(entry).await;
    }
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::PROXY_AUTHORIZATION, value.parse().unwrap());
        headers
    }

    fn basic(userinfo: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(userinfo)
        )
    }

    #[test]
    fn proxy_credentials_come_as_basic_token_and_vault_or_bearer() {
        let both = proxy_credentials(&headers(&basic("av_sess_abc:team"))).unwrap();
        assert_eq!(
            (both.token.as_str(), both.vault.as_deref()),
            ("av_sess_abc", Some("team"))
        );
        let no_vault = proxy_credentials(&headers(&basic("av_agt_abc:"))).unwrap();
        assert_eq!(no_vault.vault, None);
        let encoded = proxy_credentials(&headers(&basic("av_agt_abc:my%20vault"))).unwrap();
        assert_eq!(encoded.vault.as_deref(), Some("my vault"));
        let bearer = proxy_credentials(&headers("Bearer av_sess_xyz")).unwrap();
        assert_eq!(bearer.token.as_str(), "av_sess_xyz");
        for bad in [
            "",
            "Basic",
            "Basic !!!",
            "Digest x",
            "Bearer ",
            &basic(":team"),
        ] {
            let error = proxy_credentials(&headers(bad)).unwrap_err();
            assert_eq!(
                error.status(),
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "{bad}"
            );
        }
        assert!(proxy_credentials(&HeaderMap::new()).is_err());
        assert!(!format!("{both:?}").contains("av_sess_abc"));
    }

    #[test]
    fn connect_targets_are_host_and_port() {
        let target = |text: &str| {
            let authority: http::uri::Authority = text.parse().unwrap();
            connect_target(Some(&authority))
        };
        assert_eq!(
            target("API.Example.com:443").unwrap(),
            ("api.example.com".into(), 443)
        );
        assert_eq!(target("[::1]:8443").unwrap(), ("::1".into(), 8443));
        assert!(target("api.example.com").is_err());
        assert!(target("api.example.com:0").is_err());
        assert!(target("bad_host.example:443").is_err());
        assert_eq!(
            target("api.example.com.:443").unwrap(),
            ("api.example.com".into(), 443)
        );
        assert!(connect_target(None).is_err());
    }
}
