//! `agent-vault migrate-db --from sqlite:PATH --to postgres://...`: copy an instance kept in
//! SQLite into a PostgreSQL database, for servers started with `--database-url` on it. The
//! copy itself is `store::migrate` (one transaction, ciphertexts byte for byte, counts
//! checked); this file reads the command line, says what it is about to do and prints what
//! was copied.
//!
//! No master password is asked for: the data key travels sealed. The target's password is
//! never printed; the URL is shown through `redact_url`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

use super::{confirm_or_yes, data_dir_or_home, pidfile};
use crate::request_log::Journal;
use crate::server::database_path;
use crate::store::migrate::{self, MigrateError};
use crate::store::postgres::redact_url;

#[derive(Debug, clap::Args)]
pub struct MigrateDbArgs {
    /// The SQLite database to copy: sqlite:PATH, or a path [default: the data directory's
    /// agent-vault.db].
    #[arg(long, value_name = "sqlite:PATH")]
    from: Option<String>,
    /// The PostgreSQL database to copy into (postgres://USER:PASSWORD@HOST/DATABASE).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    to: String,
    /// Replace the instance the target already holds: delete every row it has, in the same
    /// transaction as the copy. Without it, a target that holds one is refused.
    #[arg(long)]
    replace: bool,
    /// With --replace: do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// The data directory whose database is the default --from.
    #[arg(long, env = "AGENT_VAULT_HOME", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn run(args: MigrateDbArgs) -> anyhow::Result<ExitCode> {
    let source = match &args.from {
        Some(from) => sqlite_path(from)?,
        None => database_path(&data_dir_or_home(args.data_dir.as_deref())?),
    };
    let target = redact_url(&args.to);
    if args.replace {
        confirm_or_yes(
            args.yes,
            &format!("Delete everything the database {target} holds and replace it with the copy?"),
            "--replace",
        )?;
    }
    println!("Copying sqlite:{} into {target}", source.display());
    warn_if_served(&source);

    // The request log's journal next to the database: a server on PostgreSQL with this data
    // directory replays what it holds above the mark the copy carries over.
    let data_dir = source.parent().unwrap_or(Path::new("."));
    let journal = Journal::id_in(data_dir)?;
    let copied = migrate::sqlite_to_postgres(&source, &args.to, args.replace, &journal).map_err(
        |error| match error {
            MigrateError::NotEmpty { .. } => anyhow::anyhow!(
                "{error}. Copy into a new, empty database, or pass --replace to delete what it \
                 holds and replace it with the copy"
            ),
            other => other.into(),
        },
    )?;

    if let Some(version) = copied.upgraded_from {
        println!(
            "The SQLite database was at schema version {version}: it was brought up to date \
             first, as a server starting on it would."
        );
    }
    if !copied.replaced.is_empty() {
        println!(
            "Replaced what the database held ({}).",
            migrate::listed(&copied.replaced)
        );
    }
    println!("Copied in one transaction, every table counted in both databases:");
    for (table, rows) in &copied.tables {
        println!("  {table}: {rows}");
    }
    println!(
        "Start the servers with --database-url (or DATABASE_URL) set to this database and the \
         same master password."
    );
    Ok(ExitCode::SUCCESS)
}

/// The file `--from` names: `sqlite:PATH` (`sqlite://PATH` too), or a plain path. Another
/// scheme is refused by name only (a database URL may carry a password).
fn sqlite_path(from: &str) -> anyhow::Result<PathBuf> {
    if let Some(rest) = from.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            bail!("--from sqlite: names no file; write sqlite:PATH");
        }
        return Ok(PathBuf::from(path));
    }
    if let Some(scheme) = scheme(from) {
        bail!(
            "--from must name a SQLite database (sqlite:PATH), not a {scheme}: URL; migrate-db \
             copies from SQLite into the PostgreSQL database of --to"
        );
    }
    Ok(PathBuf::from(from))
}

/// The scheme `text` starts with (`postgres` of `postgres://...`), if it starts with one.
fn scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && scheme.len() > 1;
    valid.then_some(scheme)
}

/// Say so when a server runs on the source's data directory: the copy is a snapshot.
fn warn_if_served(source: &Path) {
    let Some(dir) = source.parent() else { return };
    if let Ok(Some(pid)) = pidfile::running(dir) {
        eprintln!(
            "note: a server (pid {pid}) is running on {}: the copy is a consistent snapshot of \
             this moment, and what the server writes after it stays in SQLite. Stop it before \
             starting servers on PostgreSQL.",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn from_takes_sqlite_paths_and_refuses_other_schemes_without_echoing_them() {
        for (from, path) in [
            (
                "sqlite:/var/lib/av/agent-vault.db",
                "/var/lib/av/agent-vault.db",
            ),
            (
                "sqlite:///var/lib/av/agent-vault.db",
                "/var/lib/av/agent-vault.db",
            ),
            ("sqlite:data/agent-vault.db", "data/agent-vault.db"),
            ("/var/lib/av/agent-vault.db", "/var/lib/av/agent-vault.db"),
            ("./odd:name.db", "./odd:name.db"),
        ] {
            assert_eq!(sqlite_path(from).unwrap().to_str(), Some(path), "{from}");
        }
        let refused = sqlite_path("postgres://user:hunter2@db/av").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "--from must name a SQLite database (sqlite:PATH), not a postgres: URL; migrate-db \
             copies from SQLite into the PostgreSQL database of --to"
        );
        assert_eq!(
            sqlite_path("sqlite:").unwrap_err().to_string(),
            "--from sqlite: names no file; write sqlite:PATH"
        );
    }
}
