//! The connector under the pooling client: it resolves a host (or takes a `--resolve` pin, or
//! the embedder's resolver), refuses the host if *any* address fails the network guard, and
//! connects only to an address it checked, so DNS cannot change between the check and the
//! connect. Blind tunnels connect through it too (`Upstream::connect_tcp`). With an egress
//! proxy (`egress_proxy.rs`) the connection to a checked address is a `CONNECT` tunnel
//! through the proxy; the proxy's own address is reached without the guard.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::egress_proxy::EgressProxy;
use super::{ResolvePin, Resolver, UpstreamError, netguard};

/// Resolves, checks every address with [`netguard`], connects to a checked one.
#[derive(Debug, Clone)]
pub(super) struct GuardedConnector {
    pub(super) config: Arc<ConnectConfig>,
}

#[derive(Debug)]
pub(super) struct ConnectConfig {
    pub(super) resolve: Vec<ResolvePin>,
    pub(super) allowlist: Vec<IpNet>,
    pub(super) own_listeners: Vec<SocketAddr>,
    pub(super) resolver: Option<Resolver>,
    pub(super) connect_timeout: Duration,
    pub(super) egress_proxy: Option<EgressProxy>,
}

/// The connector's failure, carried through hyper-util and found again by type in `classify`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(super) struct ConnectError(pub(super) UpstreamError);

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
    pub(super) async fn checked_addrs(
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

    pub(super) async fn connect_to(
        &self,
        host: &str,
        port: u16,
    ) -> Result<TokioIo<TcpStream>, UpstreamError> {
        let deadline = Instant::now() + self.connect_timeout;
        let addrs = self.checked_addrs(host, port, deadline).await?;
        let stream = match &self.egress_proxy {
            Some(proxy) if proxy.applies_to(host) => {
                self.tunnel(proxy, host, &addrs, port, deadline).await?
            }
            _ => connect_first(host, &addrs, port, deadline).await?,
        };
        // Without it, small writes (a request head, an h2 frame) wait for ACKs.
        let _ = stream.set_nodelay(true);
        Ok(TokioIo::new(stream))
    }

    /// A tunnel through `proxy` to one of `addrs`, the checked addresses of `host`, in
    /// order: the next is tried only when the proxy could not reach one.
    async fn tunnel(
        &self,
        proxy: &EgressProxy,
        host: &str,
        addrs: &[IpAddr],
        port: u16,
        deadline: Instant,
    ) -> Result<TcpStream, UpstreamError> {
        // The proxy is the operator's choice: resolved (or pinned), never checked.
        let proxy_addrs = self
            .resolve(proxy.host(), proxy.port(), deadline)
            .await
            .map_err(|error| proxy.failed(host, error.to_string()))?;
        let mut last = None;
        for &addr in addrs {
            let stream = connect_first(proxy.host(), &proxy_addrs, proxy.port(), deadline)
                .await
                .map_err(|error| match error {
                    UpstreamError::Timeout { .. } => UpstreamError::Timeout {
                        host: host.to_owned(),
                        phase: "connecting to the egress proxy",
                    },
                    other => proxy.failed(host, other.to_string()),
                })?;
            match proxy
                .open_tunnel(stream, host, SocketAddr::new(addr, port), deadline)
                .await
            {
                Ok(tunnel) => return Ok(tunnel),
                Err(refused) if refused.try_another_address => last = Some(refused.error),
                Err(refused) => return Err(refused.error),
            }
        }
        Err(last.expect("checked_addrs is never empty"))
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

/// A TCP connection to the first of `addrs` (of `host`, for messages) that answers, sharing
/// out the time left before `deadline`.
async fn connect_first(
    host: &str,
    addrs: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> Result<TcpStream, UpstreamError> {
    let mut refused = None;
    for (index, &addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(addrs.len() - index).unwrap_or(u32::MAX);
        let socket = SocketAddr::new(addr, port);
        match tokio::time::timeout(share, TcpStream::connect(socket)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => refused = Some(format!("{socket}: {error}")),
            Err(_) => {}
        }
    }
    Err(match refused {
        Some(reason) => UpstreamError::Connect {
            host: host.to_owned(),
            reason,
        },
        None => UpstreamError::Timeout {
            host: host.to_owned(),
            phase: "connect",
        },
    })
}
