//! The embedded backend of [`Store`]: one SQLite file in WAL mode, private to the user who
//! runs agent-vault, behind one connection.
//!
//! Start at [`SqliteStore::open`] (in `sqlite/open.rs`): it creates the file (0600, in a 0700
//! directory when it makes one) before SQLite touches it, so the `-wal` and `-shm` files
//! SQLite creates later inherit that mode; it sets the pragmas that make an acknowledged write
//! durable (`synchronous=FULL`) and let the CLI share the file with a running server
//! (`busy_timeout`); and it applies the numbered migrations of `migrations/`, tracked by
//! `PRAGMA user_version`.
//!
//! Every trait method is one transaction; writes start with `BEGIN IMMEDIATE`, so a rule
//! checked inside one (the last owner, the last vault admin, one first owner) cannot be
//! invalidated by another connection between the check and the write. This module does not
//! decide who may call what (that is `auth`), and never sees a plaintext credential.
//!
//! This file holds the store, its transactions and what every entity reads rows with. Each
//! entity's trait is implemented in the entity's file under `sqlite/` (`vaults.rs` implements
//! [`VaultStore`](super::VaultStore), `users.rs` [`UserStore`](super::UserStore), …), whose
//! methods name their operation (for the error message) and run that file's functions inside
//! one transaction; the files without a trait of their own (`settings.rs`, `transparent_ca.rs`,
//! `agent_invites.rs`, `invite_rules.rs`, `roles.rs`) hold rows and rules that other entities'
//! transactions share.

mod agent_invites;
mod agents;
mod credentials;
mod devices;
mod errors;
mod grants;
mod invite_rules;
mod invite_tables;
mod invites;
mod keys;
mod open;
mod proposals;
mod request_log;
mod roles;
mod services;
mod settings;
mod tokens;
mod transparent_ca;
mod users;
mod vaults;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, Row, Transaction, TransactionBehavior};

use self::errors::{Failure, TxResult, describe, is_temporary};
use super::{ActorId, ActorKind, Result, Store, StoreError};

/// How long a statement waits for another connection (the CLI next to a running server)
/// to release the database before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// The id the first migration gives the [`DEFAULT_VAULT`](super::DEFAULT_VAULT).
pub const DEFAULT_VAULT_ID: &str = "00000000000000000000000000000000";

/// The SQLite [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
    /// A second connection for the request log only, with `synchronous=NORMAL`: its commits
    /// do not wait for the disk (they reach it with the next checkpoint or the next commit of
    /// the main connection). A power loss may lose the last moments of the log; a crash of
    /// the process loses nothing. Everything else keeps `FULL`.
    log_connection: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLite's `PRAGMA integrity_check`: its first row, `ok` when the file is healthy.
    pub fn integrity_check(&self) -> Result<String> {
        self.read("check the database", |tx| {
            Ok(tx.query_row("PRAGMA integrity_check", [], |row| row.get(0))?)
        })
    }

    fn read<T>(
        &self,
        operation: &str,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        self.transaction(operation, TransactionBehavior::Deferred, work)
    }

    fn write<T>(
        &self,
        operation: &str,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        self.transaction(operation, TransactionBehavior::Immediate, work)
    }

    fn transaction<T>(
        &self,
        operation: &str,
        behavior: TransactionBehavior,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        Self::transaction_on(&self.connection, operation, behavior, work)
    }

    fn transaction_on<T>(
        connection: &Mutex<Connection>,
        operation: &str,
        behavior: TransactionBehavior,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        // A panic while the lock was held unwound through the `Transaction`, whose drop
        // rolled it back: the connection is consistent and safe to reuse.
        let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = (|| {
            let tx = connection.transaction_with_behavior(behavior)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        outcome.map_err(|failure| match failure {
            Failure::Store(error) => error,
            Failure::Sql(error) => {
                let message = format!("cannot {operation}: {}", describe(&error));
                if is_temporary(&error) {
                    StoreError::Unavailable(message)
                } else {
                    StoreError::Database(message)
                }
            }
        })
    }

    /// A write on the request log's own connection.
    fn log_write<T>(
        &self,
        operation: &str,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        let behavior = TransactionBehavior::Immediate;
        Self::transaction_on(&self.log_connection, operation, behavior, work)
    }
}

// Reading and writing rows, for every entity.

fn text_enum<T: FromStr<Err = String>>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    text.parse().map_err(|message: String| {
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, message.into())
    })
}

/// An optional actor stored as a (type, id) pair of columns.
fn actor_at(row: &Row<'_>, kind: usize, id: usize) -> rusqlite::Result<Option<ActorId>> {
    let Some(id_text) = row.get::<_, Option<String>>(id)? else {
        return Ok(None);
    };
    let kind: ActorKind = text_enum(row, kind)?;
    Ok(Some(ActorId { kind, id: id_text }))
}

fn actor_columns(actor: Option<&ActorId>) -> (Option<&'static str>, Option<&str>) {
    (
        actor.map(|actor| actor.kind.as_str()),
        actor.map(|actor| actor.id.as_str()),
    )
}

fn query_all<T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> TxResult<Vec<T>> {
    let mut statement = tx.prepare_cached(sql)?;
    let rows = statement.query_map(params, map)?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

impl Store for SqliteStore {}

#[cfg(test)]
mod tests;
