//! `agent-vault server`: start the server on its embedded defaults.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context as _;

use super::DataDirArgs;
use crate::server::{self, ServerConfig};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of the control plane (0 picks a free one).
    #[arg(long, default_value_t = 14321, env = "PORT")]
    port: u16,
    #[command(flatten)]
    dirs: DataDirArgs,
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let config = ServerConfig {
        listen: SocketAddr::new(args.host, args.port),
        data_dir: args.dirs.data_dir()?,
        plugin_dir: args.dirs.plugin_dir()?,
        cache_dir: args.dirs.cache_dir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::run(config, server::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr; `AGENT_VAULT_LOG` filters them (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENT_VAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
