//! Inside a CONNECT tunnel: intercepted (TLS terminated with a leaf from the local CA, each
//! request served like one of the explicit ingress), or blind (bytes copied both ways).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::Response;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{ProxyCredentials, Transparent, caller};
use crate::accept::{Abortable, FirstBytes, StrictHeads};
use crate::authority::{canonical_host, display_authority};
use crate::drain::DrainWatcher;
use crate::proxy::{Ingress, ProxyError, Target, count_unlogged, serve_request};
use crate::request::Scheme;
use crate::upstream::ProxyBody;

/// Copy bytes between the agent and the upstream until either side closes.
pub(super) async fn blind(upgraded: Upgraded, mut upstream: TcpStream) {
    let mut agent = TokioIo::new(upgraded);
    if let Err(error) = tokio::io::copy_bidirectional(&mut agent, &mut upstream).await {
        tracing::debug!("blind tunnel ended: {error}");
    }
}

/// Terminate TLS for the tunnel's host and serve the requests inside, HTTP/1.1 or HTTP/2 as
/// the agent's ALPN chose. At shutdown a tunnel still in its handshake is dropped (nothing
/// was asked yet); one serving requests answers the one in flight, then closes.
pub(super) async fn intercept(tunnel: Tunnel, upgraded: Upgraded, mut watcher: DrainWatcher) {
    let tls = tokio::select! {
        tls = accept_tls(&tunnel, upgraded) => tls,
        () = watcher.draining() => None,
    };
    let Some(tls) = tls else { return };
    // After the handshake, the same limits as on the listeners: the request heads (and the
    // first bytes) within the header timeout, HTTP/2 bounded.
    let limits = tunnel.transparent.limits;
    let tunnel = Arc::new(tunnel);
    let (tls, abort) = Abortable::new(tls);
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        let tunnel = tunnel.clone();
        request.extensions_mut().insert(abort.clone());
        async move { Ok::<_, Infallible>(tunnel.serve(request).await) }
    });
    let io = FirstBytes::new(StrictHeads::new(tls), limits.header_timeout);
    let connection = limits
        .http()
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let finished = watcher.watch(connection, |connection| connection.graceful_shutdown());
    if let Err(error) = finished.await {
        tracing::debug!("intercepted tunnel ended: {error}");
    }
}

/// The agent's TLS, terminated with a certificate for the tunnel's host; `None` (logged) if
/// the handshake fails, times out or names another host.
async fn accept_tls(
    tunnel: &Tunnel,
    upgraded: Upgraded,
) -> Option<tokio_rustls::server::TlsStream<TokioIo<Upgraded>>> {
    let host = &tunnel.host;
    let timeout = tunnel.transparent.limits.header_timeout;
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        TokioIo::new(upgraded),
    );
    let start = match tokio::time::timeout(timeout, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(error)) => {
            tracing::debug!(%host, "TLS from the agent failed: {error}");
            return None;
        }
        Err(_) => {
            tracing::debug!(%host, "the agent did not start TLS in time");
            return None;
        }
    };
    // The name the agent's TLS asks for must be the one it CONNECTed to: a certificate for
    // another name would let a tunnel opened to one host carry requests for another.
    if let Some(sni) = start.client_hello().server_name()
        && !sni.eq_ignore_ascii_case(host)
    {
        tracing::warn!(connect = %host, sni, "refused a tunnel whose TLS names another host");
        return None;
    }
    let config = match tunnel.transparent.ca.server_config(host) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%host, "cannot make a certificate: {error}");
            return None;
        }
    };
    match tokio::time::timeout(timeout, start.into_stream(config)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%host, "TLS handshake with the agent failed: {error}");
            None
        }
        Err(_) => {
            tracing::debug!(%host, "the TLS handshake with the agent timed out");
            None
        }
    }
}

/// One intercepted tunnel: where it goes and who opened it.
pub(super) struct Tunnel {
    pub(super) transparent: Arc<Transparent>,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) credentials: ProxyCredentials,
    /// Who opened it, for the authentication failures counted per client.
    pub(super) client: std::net::IpAddr,
}

impl Tunnel {
    async fn serve(&self, request: http::Request<Incoming>) -> Response<ProxyBody> {
        let proxy = &self.transparent.proxy;
        // Checked again for every request: a token revoked or expired while the tunnel is
        // open stops working at once.
        let started = Instant::now();
        let unlogged = |error: ProxyError| {
            let response = error.into_response();
            count_unlogged(Ingress::Transparent, &response, started);
            response
        };
        let caller = match caller(proxy, &self.credentials, self.client).await {
            Ok(caller) => caller,
            Err(ProxyError::ProxyAuthRequired(message)) => {
                return unlogged(ProxyError::Unauthorized(message));
            }
            Err(error) => return unlogged(error),
        };
        if let Err(error) = self.check_host(&request) {
            return unlogged(error);
        }
        let target = Target {
            scheme: Scheme::Https,
            host: self.host.clone(),
            port: self.port,
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
        };
        serve_request(proxy, &caller, &target, request, Ingress::Transparent).await
    }

    /// The request's host (HTTP/2 `:authority`, else `Host`) must be the tunnel's.
    fn check_host(&self, request: &http::Request<Incoming>) -> Result<(), ProxyError> {
        let authority = match request.uri().authority() {
            Some(authority) => Some(authority.clone()),
            None => request
                .headers()
                .get(http::header::HOST)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<http::uri::Authority>().ok()),
        };
        let Some(authority) = authority else {
            return Err(ProxyError::BadRequest("the request has no Host".into()));
        };
        let same_host = canonical_host(authority.host()).is_ok_and(|host| host == self.host);
        let same_port = authority.port_u16().is_none_or(|port| port == self.port);
        if same_host && same_port {
            Ok(())
        } else {
            Err(ProxyError::Misdirected(format!(
                "This tunnel goes to {}, not to {authority}",
                display_authority(&self.host, self.port)
            )))
        }
    }
}
