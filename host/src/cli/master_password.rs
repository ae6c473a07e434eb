//! `agent-vault master-password change`: re-wrap the data key under a new master password,
//! or store it unencrypted with `--passwordless`.
//!
//! It opens the database directly (the data directory's SQLite file, or the PostgreSQL
//! database `--database-url` names), so it works whether or not a server runs: a running
//! server keeps the data key it unlocked, and needs the new password from its next start.
//! The data key and the credentials it seals do not change (see `master_key`).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{confirm_or_yes, data_dir_or_home, input};
use crate::master_key::{self, MasterKeyError, PASSWORDLESS_WARNING};
use crate::server::database_path;
use crate::store::Store;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::vault::crypto::KdfParams;
use anyhow::{Context as _, bail};

/// The shortest master password `change` accepts.
const MIN_LENGTH: usize = 8;

#[derive(Debug, clap::Subcommand)]
pub enum MasterPasswordCommand {
    /// Change the master password, or remove it with --passwordless.
    Change(ChangeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// Read the current password from the first line of standard input and the new one from
    /// the second (the first line is ignored if there is no password yet).
    #[arg(long)]
    password_stdin: bool,
    /// Remove the master password: the data key is then stored unencrypted.
    #[arg(long)]
    passwordless: bool,
    /// With --passwordless: do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// The server's data directory.
    #[arg(long, env = "AGENT_VAULT_HOME", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's PostgreSQL database, when it has one (`agent-vault server
    /// --database-url`); the data directory's is not used then.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    database_url: Option<String>,
}

pub fn run(command: MasterPasswordCommand) -> anyhow::Result<ExitCode> {
    match command {
        MasterPasswordCommand::Change(args) => change(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's store: its PostgreSQL database, or the data directory's SQLite file, which
/// must exist.
fn open_store(args: &ChangeArgs) -> anyhow::Result<Box<dyn Store>> {
    if let Some(url) = &args.database_url {
        return Ok(Box::new(
            PostgresStore::open(url).context("opening the database")?,
        ));
    }
    let data_dir = data_dir_or_home(args.data_dir.as_deref())?;
    let path = database_path(&data_dir);
    if !path.exists() {
        bail!(
            "there is no agent-vault database in {}; start the server there once first (`agent-vault server`)",
            data_dir.display()
        );
    }
    let store = SqliteStore::open(&path)
        .with_context(|| format!("opening the database in {}", data_dir.display()))?;
    Ok(Box::new(store))
}

fn change(args: &ChangeArgs) -> anyhow::Result<()> {
    let store = open_store(args)?;
    let store = store.as_ref();
    let has_password = master_key::state(store)?.ok_or(MasterKeyError::NotInitialized)?;
    if args.passwordless && !has_password {
        bail!("this instance has no master password to remove");
    }

    let (current, new) = if args.password_stdin {
        let current = input::stdin_line()?;
        let new = if args.passwordless {
            None
        } else {
            Some(input::stdin_line()?)
        };
        (has_password.then_some(current), new)
    } else {
        let current = if has_password {
            let current = input::prompt_secret("Current master password: ")?;
            // Say so now rather than after the new password is typed twice.
            master_key::unlock(store, Some(&current))?;
            Some(current)
        } else {
            None
        };
        let new = if args.passwordless {
            None
        } else {
            Some(input::prompt_new_secret("New master password: ", false)?)
        };
        (current, new)
    };
    if let Some(new) = &new
        && new.chars().count() < MIN_LENGTH
    {
        bail!("the new master password must be at least {MIN_LENGTH} characters");
    }
    if args.passwordless {
        eprintln!("warning: {PASSWORDLESS_WARNING}");
        confirm_or_yes(
            args.yes,
            "Remove the master password?",
            "removing the master password",
        )?;
    }

    master_key::change_password(
        store,
        current.as_deref().map(String::as_str),
        new.as_deref().map(String::as_str),
        KdfParams::default(),
    )
    .map_err(|error| match error {
        MasterKeyError::WrongPassword => {
            anyhow::anyhow!("the current master password is wrong; nothing was changed")
        }
        other => other.into(),
    })?;
    if args.passwordless {
        println!(
            "Master password removed. A running server keeps its unlocked key; from its next start it needs no password."
        );
    } else {
        println!(
            "Master password changed. A running server keeps its unlocked key; from its next start it needs the new password."
        );
    }
    Ok(())
}
