//! The server process: state directories, the plugin registry with hot reload, and the HTTP
//! listener of the control plane.
//!
//! Today the control plane answers `GET /health`; the management API, the store and the
//! proxy ingress are built on this listener by later work. Shutdown on SIGINT/SIGTERM stops
//! accepting and lets requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::plugin::registry::{Registry, RegistryError, RegistrySettings};
use crate::plugin::{EngineError, EngineSettings, PluginEngine};

/// How often the plugin directory is rescanned; a changed plugin serves within this plus
/// its compile time.
const PLUGIN_RESCAN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub plugin_dir: PathBuf,
    pub cache_dir: PathBuf,
}

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
    #[error("cannot listen on {addr}: {source} (is another agent-vault running? try --port)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Shared state of the running server; cheap to clone.
#[derive(Debug, Clone)]
struct AppState {
    plugins: Arc<Registry>,
}

/// Run until `shutdown` completes.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    create_private_dir(&config.data_dir)?;
    create_private_dir(&config.plugin_dir)?;

    let settings = RegistrySettings {
        plugin_dir: Some(config.plugin_dir.clone()),
        cache_dir: Some(config.cache_dir.clone()),
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
    let state = AppState { plugins };

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
    tracing::info!(
        data_dir = %config.data_dir.display(),
        plugin_dir = %config.plugin_dir.display(),
        plugins = state.plugins.list().len(),
        "agent-vault started"
    );
    // Scripts and tests read the address from this line.
    println!("agent-vault listening on http://{local}");

    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("accept failed: {error}");
                        continue;
                    }
                };
                let state = state.clone();
                let service = hyper::service::service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, request)) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, "connection ended: {error}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down; waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("requests still in flight after 10 s; stopping anyway");
        }
    }
    Ok(())
}

fn handle(_state: &AppState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned()),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not_found", "message": "no such endpoint"}).to_string(),
        ),
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a static status and header")
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
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
