//! The command line: one file per subcommand group. `main.rs` parses, calls [`run`], and
//! prints the error chain once; commands return `anyhow` errors with context a user can act on.
//!
//! `server` and `plugin` work on the local data directory. `auth`, `vault`, `agent`, `user`
//! and `owner` drive a server's `/v1` API through [`client`] (which finds the server and the
//! token); `master-password` opens the database directly, so it works with or without a
//! server running.

mod agent;
mod auth;
mod background;
mod ca_bundle;
mod client;
mod credential;
mod input;
mod logging;
mod logs;
mod master_password;
mod migrate_db;
mod owner;
mod pidfile;
mod plugin;
mod process;
mod proposal;
mod run;
mod server;
mod service;
mod user;
mod vault;
mod vault_select;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
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
    Server(Box<server::ServerArgs>),
    /// Register, log in and out, accept an invite.
    Auth(auth::AuthArgs),
    /// The account you are logged in as: who it is, and its password.
    Account(auth::AccountArgs),
    /// Vaults, their credentials and services, and vault-scoped tokens.
    Vault(vault::VaultArgs),
    /// Named agents with long-lived tokens.
    Agent(agent::AgentArgs),
    /// The people of the instance, and invites.
    User(user::UserArgs),
    /// The instance's settings (owners).
    Owner(owner::OwnerArgs),
    /// Change or remove the master password that protects the data key.
    #[command(subcommand)]
    MasterPassword(master_password::MasterPasswordCommand),
    /// Copy an instance kept in SQLite into a PostgreSQL database (`--from sqlite:PATH --to postgres://...`).
    MigrateDb(migrate_db::MigrateDbArgs),
    /// Inspect and try auth plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// The transparent proxy's certificate authority.
    Ca(run::CaArgs),
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
        data_dir_or_home(self.data_dir.as_deref())
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

/// `dir` if given, else `~/.agent-vault`.
fn data_dir_or_home(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = dir {
        return Ok(dir.to_owned());
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        anyhow::anyhow!("HOME is not set; pass --data-dir or set AGENT_VAULT_HOME")
    })?;
    Ok(PathBuf::from(home).join(".agent-vault"))
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Server(args) => server::run(*args),
        Command::Auth(args) => auth::run(args),
        Command::Account(args) => auth::run_account(args),
        Command::Vault(args) => vault::run(args),
        Command::Agent(args) => agent::run(args),
        Command::User(args) => user::run(args),
        Command::Owner(args) => owner::run(args),
        Command::MasterPassword(command) => master_password::run(command),
        Command::MigrateDb(args) => migrate_db::run(args),
        Command::Plugin(command) => plugin::run(command),
        Command::Ca(args) => run::run_ca(args),
    }
}

/// Go ahead with something that cannot be undone: `--yes`, or a person at the terminal who
/// says yes. Without either, refuse and say how to proceed.
fn confirm_or_yes(yes: bool, question: &str, flag_hint: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !input::interactive() {
        bail!("{flag_hint} needs --yes when standard input is not a terminal");
    }
    if !input::confirm(question)? {
        bail!("cancelled; nothing was changed");
    }
    Ok(())
}

/// Plain text columns, aligned with two spaces, trailing spaces trimmed.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.zip(&widths).enumerate() {
            if index > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let rows = vec![
            vec![
                "default".to_owned(),
                "admin".to_owned(),
                "explicit".to_owned(),
            ],
            vec!["team-a".to_owned(), "-".to_owned(), "implicit".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "ROLE", "MEMBERSHIP"], &rows),
            "NAME     ROLE   MEMBERSHIP\ndefault  admin  explicit\nteam-a   -      implicit\n"
        );
    }
}
