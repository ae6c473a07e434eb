//! The server process: the plugin registry with hot reload, the listeners (the control plane
//! and API, and the transparent proxy) handing connections to the workers, and the background
//! upkeep (request-log retention, expired tokens).
//!
//! The caller opens the store and unlocks the data key first (that may prompt for the master
//! password); [`run`] serves until `shutdown` completes, then stops accepting and lets
//! requests in flight finish, on both listeners and inside intercepted tunnels
//! (`drain.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use http_body_util::BodyExt as _;

use crate::accept::{
    Abortable, Admitted, ConnectionLimits, Counted, Door, FirstBytes, Slot, StrictHeads,
};
use crate::api::TransparentInfo;
use crate::api::{self, ApiState};
use crate::drain::Drain;
use crate::metrics::endpoint::{self as metrics_endpoint, MetricsAccess, MetricsSettings};
use crate::metrics::metrics;
use crate::notify::Notifier;
use crate::plugin::registry::{Registry, RegistryError, RegistrySettings};
use crate::plugin::{EngineError, EngineSettings, PluginEngine};
use crate::proxy::{self, Cache, ProxySettings, ProxyState};
use crate::public_url::{BasePath, PublicAddress};
use crate::ratelimit::{AttemptLimiter, RateLimiter, RateLimits};
use crate::request_log::{Journal, JournalError, RequestLog};
use crate::store::{self, Db, Store};
use crate::transparent::{LocalCa, Transparent};
use crate::upstream::{Upstream, UpstreamSettings};
use crate::vault::crypto::{DataKey, KdfParams};
use crate::workers::Workers;

/// How often the plugin directory is rescanned; a changed plugin serves within this plus
/// its compile time.
const PLUGIN_RESCAN: Duration = Duration::from_millis(500);

/// How long shutdown waits for the request log's last entries to be written.
const REQUEST_LOG_FLUSH: Duration = Duration::from_secs(3);

/// How often expired tokens and old request-log rows are deleted.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Where the transparent proxy listens (`None`: it does not; port 0: a free port).
    pub transparent_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub plugin_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The address clients and links use (`AGENT_VAULT_ADDR`); defaults to a trusted
    /// reverse proxy's `X-Forwarded-Host`, else `http://{listen}`, with the base path.
    pub base_url: Option<String>,
    /// The path prefix everything on the control plane is served under (`--base-path`).
    pub base_path: BasePath,
    /// Allow services for internal hosts (localhost, IP addresses).
    pub dev_mode: bool,
    pub log_retention: LogRetention,
    /// How the proxy reaches upstreams: trust anchors, pins, allowlist, timeouts.
    pub upstream: UpstreamSettings,
    /// Body size limits of the proxy.
    pub proxy: ProxySettings,
    /// Rate limits of the proxy (`None`: off).
    pub rate_limits: Option<RateLimits>,
    /// The `--rate-limit-profile` they started from (before `AGENT_VAULT_RATELIMIT_*`).
    pub rate_limit_profile: String,
    /// How long requests in flight may take to finish once shutdown begins.
    pub shutdown_grace: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client (none by default); they are
    /// not capped per address either.
    pub trusted_proxies: TrustedProxies,
    /// The longest deadline a plugin's `NAME.toml` may ask for.
    pub plugin_timeout_ceiling: Duration,
    /// What a client can make the server hold before it authenticates: the header timeout
    /// and the caps on open connections (`accept/`).
    pub connections: ConnectionLimits,
    /// Where `/metrics` is served, and the token it needs (`metrics/endpoint.rs`).
    pub metrics: MetricsSettings,
}

pub use crate::client_addr::TrustedProxies;
pub use crate::request_log::LogRetention;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Plugins(#[from] RegistryError),
    #[error("cannot set up the upstream client: {0}")]
    Upstream(#[from] crate::upstream::UpstreamConfigError),
    #[error("cannot set up the transparent proxy: {0}")]
    Ca(crate::store::StoreError),
    #[error("{0}")]
    Changes(crate::store::StoreError),
    #[error("cannot open the request log's journal: {0}")]
    Journal(#[from] JournalError),
    #[error("cannot start the connection workers: {0}")]
    Workers(std::io::Error),
    #[error("cannot listen on {addr}: {source} (is another agent-vault running? try --port)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The database file in a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent-vault.db")
}

/// Run until `shutdown` completes.
pub async fn run(
    config: ServerConfig,
    store: Arc<dyn Store>,
    data_key: DataKey,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    create_private_dir(&config.data_dir)?;
    create_private_dir(&config.plugin_dir)?;

    let settings = RegistrySettings {
        plugin_dir: Some(config.plugin_dir.clone()),
        cache_dir: Some(config.cache_dir.clone()),
        timeout_ceiling: config.plugin_timeout_ceiling,
        ..Default::default()
    };
    let registry = tokio::task::spawn_blocking(move || -> Result<Registry, ServerError> {
        let engine = PluginEngine::new(&EngineSettings::default())?;
        Ok(Registry::new(engine, settings)?)
    })
    .await
    .expect("the plugin loader does not panic")?;
    let plugins = Arc::new(registry);
    let _watcher = plugins.watch(PLUGIN_RESCAN);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let db = Db::new(store);
    let data_key = Arc::new(data_key);
    let transparent = match config.transparent_listen {
        Some(addr) => open_transparent(&db, &data_key, addr).await?,
        None => None,
    };
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?,
        ),
        None => None,
    };
    // No upstream client ever connects back to one of these.
    let mut upstream_settings = config.upstream.clone();
    upstream_settings.own_listeners.push(local);
    if let Some(addr) = transparent
        .as_ref()
        .and_then(|(listener, _)| listener.local_addr().ok())
    {
        upstream_settings.own_listeners.push(addr);
    }
    let metrics_addr = metrics_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());
    upstream_settings.own_listeners.extend(metrics_addr);
    // Webhooks go out from tasks on this runtime, through a client of their own.
    let webhook_client = Upstream::new(upstream_settings.clone())?;
    // Both listeners share one rule for what a client may hold before it authenticates.
    let connections = config.connections;
    let per_listener = connections.per_listener(if transparent.is_some() { 2 } else { 1 });
    let per_address = connections.max_connections_per_address;
    let door = |listener, name| {
        Door::new(
            listener,
            name,
            per_listener,
            per_address,
            config.trusted_proxies.clone(),
        )
    };
    let mut control = door(listener, "control plane");
    let transparent = transparent.map(|(listener, ca)| (door(listener, "transparent proxy"), ca));
    metrics().watch_listener("control_plane", control.gate());
    if let Some((door, _)) = &transparent {
        metrics().watch_listener("transparent", door.gate());
    }
    tracing::info!(
        "connections: at most {per_listener} open per listener and {} per client address; \
         request heads within {} s",
        per_address.map_or_else(|| "any number".to_owned(), |cap| cap.to_string()),
        connections.header_timeout.as_secs()
    );
    // Before anything is served: the rows a killed server had only in its journal.
    let journal = {
        let (data_dir, db) = (config.data_dir.clone(), db.clone());
        tokio::task::spawn_blocking(move || Journal::recover(&data_dir, db.store()))
            .await
            .expect("replaying the journal does not panic")?
    };
    let (request_log, log_writer) = RequestLog::start(db.clone(), journal, config.log_retention);
    metrics().watch_request_log(request_log.clone());
    let state = Arc::new(
        ApiState::new(
            db.clone(),
            data_key,
            plugins.clone(),
            PublicAddress::new(
                config.base_url.clone(),
                local,
                config.base_path.clone(),
                config.trusted_proxies.clone(),
            ),
            KdfParams::default(),
            config.dev_mode,
            request_log,
        )
        .with_rate_limits(&config.rate_limit_profile, config.rate_limits)
        .with_trusted_proxies(config.trusted_proxies.clone())
        .with_notifier(Notifier::new(Some(webhook_client)))
        .with_transparent(transparent.as_ref().map(|(door, ca)| TransparentInfo {
            ca_pem: ca.cert_pem().to_owned(),
            port: door.local_addr().map_or(0, |addr| addr.port()),
        })),
    );
    // Each worker gets its own upstream pool, so that an upstream connection lives on the
    // thread of the requests it carries; the cache and the limits are shared.
    let cache = Cache::new(db.clone(), state.generation.clone());
    // Other servers on the same database (PostgreSQL) move the cache's generation too.
    let _changes = {
        let (db, generation) = (db.clone(), state.generation.clone());
        tokio::task::spawn_blocking(move || db.store().watch_changes(generation))
            .await
            .expect("starting the change watcher does not panic")
            .map_err(ServerError::Changes)?
    };
    let limits = RateLimiter::new(config.rate_limits);
    let auth_failures = AttemptLimiter::new(config.rate_limits);
    let workers = Workers::per_core().map_err(ServerError::Workers)?;
    let worker_proxies = (0..workers.len())
        .map(|_| {
            Ok(Arc::new(ProxyState {
                db: state.db.clone(),
                owner_known: state.owner_known.clone(),
                data_key: state.data_key.clone(),
                plugins: state.plugins.clone(),
                request_log: state.request_log.clone(),
                address: state.address.clone(),
                trusted_proxies: state.trusted_proxies.clone(),
                upstream: Upstream::new(upstream_settings.clone())?,
                cache: cache.clone(),
                limits: limits.clone(),
                auth_failures: auth_failures.clone(),
                settings: config.proxy,
            }))
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    let metrics_access =
        MetricsAccess::new(config.metrics.token.clone(), config.trusted_proxies.clone());
    // `/metrics` on a listener of its own, or on the control plane.
    let metrics_server = metrics_listener.map(|listener| {
        let door = Door::new(
            listener,
            "metrics",
            metrics_endpoint::MAX_CONNECTIONS,
            None,
            config.trusted_proxies.clone(),
        );
        metrics().watch_listener("metrics", door.gate());
        tokio::spawn(metrics_endpoint::serve_listener(
            door,
            metrics_access.clone(),
            db.clone(),
            connections,
        ))
    });
    let control_metrics = metrics_server.is_none().then_some(metrics_access);
    let upkeep = tokio::spawn(upkeep(db, config.log_retention));
    tracing::info!(
        data_dir = %config.data_dir.display(),
        plugin_dir = %config.plugin_dir.display(),
        plugins = plugins.list().len(),
        "agent-vault started"
    );
    if !config.base_path.as_str().is_empty() {
        tracing::info!(
            "serving under {}: links read {}",
            config.base_path.as_str(),
            state.address.fixed()
        );
    }
    // Scripts and tests read the address from this line.
    println!("agent-vault listening on http://{local}");
    // The transparent listener's connections are dealt to the same workers, each with a
    // `Transparent` around that worker's proxy state.
    let (mut transparent_door, transparents) = match transparent {
        Some((door, ca)) => {
            if let Ok(addr) = door.local_addr() {
                println!("agent-vault transparent proxy listening on http://{addr}");
            }
            let transparents: Vec<Arc<Transparent>> = worker_proxies
                .iter()
                .map(|proxy| {
                    Arc::new(Transparent {
                        proxy: proxy.clone(),
                        ca: ca.clone(),
                        limits: connections,
                    })
                })
                .collect();
            (Some(door), transparents)
        }
        None => (None, Vec::new()),
    };
    if let Some(addr) = metrics_addr {
        println!("agent-vault metrics listening on http://{addr}");
    }

    let drain = Drain::new();
    let builder = connections.http();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            admitted = control.accept() => {
                let Some((stream, peer, slot)) = hand_off(admitted, "control plane") else {
                    continue;
                };
                let worker = workers.next_index();
                let (state, proxy) = (state.clone(), worker_proxies[worker].clone());
                let (builder, watcher) = (builder.clone(), drain.watcher());
                let control_metrics = control_metrics.clone();
                workers.spawn(worker, async move {
                    let Some(stream) = adopt(stream, peer) else { return };
                    let (stream, abort) = Abortable::new(stream);
                    let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                        let (state, proxy) = (state.clone(), proxy.clone());
                        let control_metrics = control_metrics.clone();
                        request.extensions_mut().insert(abort.clone());
                        // Before any route: the routes never see the base path.
                        let inside = state.address.base_path().enter(&mut request);
                        async move {
                            let metrics = control_metrics;
                            let response =
                                control_plane_request(state, proxy, metrics, request, inside, peer);
                            Ok::<_, Infallible>(response.await)
                        }
                    });
                    let stream = Counted::new(StrictHeads::new(stream), slot);
                    let io = FirstBytes::new(stream, connections.header_timeout);
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(io), service)
                        .into_owned();
                    let finished =
                        watcher.watch(connection, |connection| connection.graceful_shutdown());
                    if let Err(error) = finished.await {
                        tracing::debug!(%peer, "connection ended: {error}");
                    }
                });
            }
            admitted = accept_on(transparent_door.as_mut()) => {
                let Some((stream, peer, slot)) = hand_off(admitted, "transparent proxy") else {
                    continue;
                };
                let worker = workers.next_index();
                let transparent = transparents[worker].clone();
                let watcher = drain.watcher();
                workers.spawn(worker, async move {
                    let Some(stream) = adopt(stream, peer) else { return };
                    let (stream, abort) = Abortable::new(stream);
                    let stream = Counted::new(StrictHeads::new(stream), slot);
                    crate::transparent::serve_connection(transparent, stream, abort, peer, watcher).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down; waiting for requests in flight");
    upkeep.abort();
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    drop((control, transparent_door));
    tokio::select! {
        () = drain.drain() => {}
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!(
                "requests still in flight after {} s (--shutdown-grace); stopping anyway",
                config.shutdown_grace.as_secs()
            );
        }
    }
    let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    log_writer.shutdown(REQUEST_LOG_FLUSH).await;
    Ok(())
}

/// The next admitted connection of `door`; never, without one.
async fn accept_on(door: Option<&mut Door>) -> Admitted {
    match door {
        Some(door) => door.accept().await,
        None => std::future::pending().await,
    }
}

/// An admitted connection, made ready to move to a worker's runtime (which polls it from
/// then on); `None`, with a warning naming the `listener`, if it cannot be.
fn hand_off(admitted: Admitted, listener: &str) -> Option<(std::net::TcpStream, SocketAddr, Slot)> {
    let Admitted { stream, peer, slot } = admitted;
    // Small responses must not wait for Nagle's algorithm (a 40 ms stall with delayed ACKs
    // on the other side).
    let _ = stream.set_nodelay(true);
    match stream.into_std() {
        Ok(stream) => Some((stream, peer, slot)),
        Err(error) => {
            tracing::warn!(%peer, "{listener}: cannot hand the connection to a worker: {error}");
            None
        }
    }
}

/// The connection a worker was handed, registered with that worker's runtime (call it
/// there); `None`, with a warning, if it cannot be.
fn adopt(stream: std::net::TcpStream, peer: SocketAddr) -> Option<tokio::net::TcpStream> {
    match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::warn!(%peer, "a worker cannot take the connection: {error}");
            None
        }
    }
}

/// The transparent proxy's listener and the local CA, or `None` if the port cannot be
/// bound (a warning, as a second server on one machine is common).
async fn open_transparent(
    db: &Db,
    data_key: &Arc<DataKey>,
    addr: SocketAddr,
) -> Result<Option<(TcpListener, Arc<LocalCa>)>, ServerError> {
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(
                "the transparent proxy cannot listen on {addr}: {error}; it is off (choose \
                 another --mitm-port, or 0 to turn it off)"
            );
            return Ok(None);
        }
    };
    let key = data_key.clone();
    let ca = db
        .run(move |store| {
            LocalCa::load_or_create(store, &key).map_err(|error| {
                crate::store::StoreError::Database(format!("the local CA: {error}"))
            })
        })
        .await
        .map_err(ServerError::Ca)?;
    Ok(Some((listener, Arc::new(ca))))
}

/// Delete expired tokens and request-log rows past retention, now and every hour.
async fn upkeep(db: Db, retention: LogRetention) {
    let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        interval.tick().await;
        let now = store::now();
        let older_than = now - retention.max_age.as_secs() as i64;
        let outcome = db
            .run(move |store| {
                let tokens = store.delete_expired_tokens(now)?;
                let logs = store.prune_logs(older_than, retention.max_rows_per_vault)?;
                Ok((tokens, logs))
            })
            .await;
        match outcome {
            Ok((0, 0)) => {}
            Ok((tokens, logs)) => tracing::info!(
                tokens,
                logs,
                "deleted expired tokens and old request-log rows"
            ),
            Err(error) => tracing::warn!("upkeep failed: {error}"),
        }
    }
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed now, not at the
/// first poll: the server announces its address before it polls this, and a SIGTERM sent
/// in between must stop it cleanly rather than kill it. Call inside the runtime.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

fn create_private_dir(path: &Path) -> Result<(), ServerError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .map_err(|source| ServerError::CreateDir {
            path: path.to_owned(),
            source,
        })
}

/// One request on the control plane, its base path taken off (`inside`: it had it): a proxy
/// request, `/metrics` when served here, or the management API.
async fn control_plane_request(
    state: Arc<ApiState>,
    proxy: Arc<ProxyState>,
    metrics_access: Option<MetricsAccess>,
    request: http::Request<hyper::body::Incoming>,
    inside: bool,
    peer: SocketAddr,
) -> http::Response<crate::upstream::ProxyBody> {
    let boxed = |response: http::Response<http_body_util::Full<bytes::Bytes>>| {
        response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
    };
    if !inside {
        return boxed(api::outside_base_path());
    }
    let path = request.uri().path();
    if proxy::is_proxy_request(path) {
        return proxy::handle(proxy, request, peer.ip()).await;
    }
    match metrics_access.filter(|_| path == metrics_endpoint::PATH) {
        Some(access) => boxed(
            metrics_endpoint::serve(
                &access,
                &state.db,
                request.method(),
                request.headers(),
                peer.ip(),
            )
            .await,
        ),
        None if api::owns(path) => boxed(api::handle(state, request, peer.ip()).await),
        None => boxed(crate::console::handle(state, request, peer.ip()).await),
    }
}
