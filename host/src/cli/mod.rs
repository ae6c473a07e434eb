//! The command line: one file per subcommand group. `main.rs` parses, calls [`run`], and
//! prints the error chain once; commands return `anyhow` errors with context a user can act on.

mod input;
mod plugin;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// agent-vault: a credential proxy for AI agents. Agents call APIs through it; it holds the keys.
#[derive(Debug, Parser)]
#[command(name = "agent-vault", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (control plane on 127.0.0.1:14321).
    Server(server::ServerArgs),
    /// Inspect and try auth plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Where state lives: `--data-dir`, else `$AGENT_VAULT_HOME`, else `~/.agent-vault`.
#[derive(Debug, Clone, clap::Args)]
struct DataDirArgs {
    /// Directory for the server's state.
    #[arg(long, env = "AGENT_VAULT_HOME", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of `*.wasm` auth plugins [default: <data-dir>/plugins].
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
}

impl DataDirArgs {
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let home = std::env::var_os("HOME").ok_or_else(|| {
            anyhow::anyhow!("HOME is not set; pass --data-dir or set AGENT_VAULT_HOME")
        })?;
        Ok(PathBuf::from(home).join(".agent-vault"))
    }

    fn plugin_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.plugin_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(self.data_dir()?.join("plugins")),
        }
    }

    fn cache_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(self.data_dir()?.join("cache").join("plugins"))
    }
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Server(args) => server::run(args),
        Command::Plugin(command) => plugin::run(command),
    }
}
