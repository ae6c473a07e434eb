//! The PostgreSQL backend of [`Store`], for instances that run more than one replica or keep
//! their state in a managed database. Chosen by a `postgres://` database URL; SQLite stays the
//! default. Every table lives in the database, the request log and the transparent proxy's CA
//! included; the data key stays sealed by the master password exactly as with SQLite, so each
//! replica needs the password.
//!
//! Start at [`PostgresStore::open`] (in `postgres/open.rs`): it reads the URL, connects, and
//! applies the migrations of `postgres/migrations/` under an advisory lock.
//!
//! **Driver and pool.** The synchronous `postgres` crate (rust-postgres, the same code as
//! `tokio-postgres`, each client driving its connection on a small runtime of its own) with
//! an `r2d2` pool (`r2d2_postgres`). [`Store`] is synchronous and runs on the blocking pool
//! ([`super::Db::run`]), the CLI and tests call it directly, so a blocking client fits it
//! without a runtime owned by the store or `block_on` in the middle of async code.
//! rust-postgres is the most used PostgreSQL driver written in Rust, maintained by its author
//! (releases through 2025); r2d2 and r2d2_postgres are small, stable and by the same author
//! (r2d2_postgres 0.18.2, December 2024). sqlx was the alternative: async only, with a
//! compile-time query checker we would not use.
//!
//! **TLS.** rustls through `tokio-postgres-rustls` 0.13 (rustls 0.23, ring provider), trusting
//! the web PKI roots or the CA file the URL names (`sslrootcert`); `sslmode` comes from the
//! URL (`open.rs` says what each value means). Unix sockets go without TLS, which PostgreSQL
//! does not offer there.
//!
//! **Transactions.** Every trait method is one transaction, as with SQLite. Writes but the
//! request log's run at `SERIALIZABLE`, so a rule checked inside one (the last owner, the last vault admin, one
//! first owner, the cap on pending proposals, the next proposal id) holds against every
//! concurrent transaction, of this process or of another replica: where two would break it
//! together, PostgreSQL fails one with a serialization failure (`40001`). That transaction, or
//! one chosen as a deadlock victim (`40P01`), is rolled back whole and run again from
//! `BEGIN`, up to [`WRITE_ATTEMPTS`] times: what is retried is the method's whole
//! transaction, which reads everything it decides on inside itself and has no effect
//! outside the database. A unique violation runs it once more too: PostgreSQL reports one
//! where a concurrent transaction inserted the same key (two redemptions of one invite
//! creating the same agent), and the second run then sees that transaction's work and
//! answers as SQLite would (the invite is no longer pending); a key that was there all along
//! collides again and is `Conflict`. Reads run at `REPEATABLE READ, READ ONLY`: one snapshot
//! for methods that read more than one table, and no serialization failures.
//!
//! **Errors.** A unique violation becomes `Conflict` and a foreign-key violation `NotFound`,
//! with the SQLite backend's messages (the entity files say which); a connection that cannot
//! be made or is lost, a server shutting down or out of resources, and a write that still
//! conflicted after the last attempt become `Unavailable`; anything else `Database`. Messages
//! carry PostgreSQL's primary message only (`errors.rs`), and name the database by its URL
//! without the password (`open::redact_url`).
//!
//! **Cost.** A transaction is `BEGIN`, one round trip per statement (each connection keeps
//! its prepared statements, `statements.rs`) and `COMMIT`. The pool does not test a
//! connection when it hands it out (one more round trip): a transaction whose `BEGIN` finds
//! it dead runs on a new one. Over a local Unix socket (release build) a one-row read takes
//! about 0.12 ms where SQLite takes 8 µs, a one-row write 0.25 ms (SQLite, syncing: 0.24 ms),
//! a batch of 100 log entries 1.3 ms (SQLite: 0.3 ms); the proxy's cache keeps reads off the
//! hot path.
//!
//! **Other servers.** Servers sharing the database keep their caches coherent through
//! `changes.rs`: every committed change a cache may hold is announced by the database
//! itself (triggers advance a counter and `NOTIFY`), and each server's watcher listens on a connection of its own and re-reads the counter
//! every 0.5 s as the fallback.
//!
//! **Dialect.** The schema equals SQLite's at version 9 (`migrations/001_initial.sql`),
//! with one mark per server in the request log's journal table. BIGINT for integers and times, BYTEA for blobs, TEXT collated "C" so lists sort as in
//! SQLite, a unique index on `lower(email)` for SQLite's `COLLATE NOCASE`, SQLite's CHECK
//! constraints kept. The entity files under `postgres/` mirror those under `sqlite/`, with the
//! same functions and the same entity's trait implemented at the end of each (`vaults.rs`
//! implements [`VaultStore`](super::VaultStore), …); their SQL differs in placeholders (`$1`),
//! `GREATEST` for SQLite's two-argument `MAX`, and typed NULL parameters. This file holds the
//! store, its transactions and what every entity reads rows with.

mod agent_invites;
mod agents;
mod changes;
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
mod statements;
mod tokens;
mod transparent_ca;
mod users;
mod vaults;

pub use changes::{RECHECK, WATCHER_APPLICATION_NAME};
pub use open::redact_url;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::types::{FromSql, ToSql};
use postgres::{IsolationLevel, Row};

use self::errors::{Failure, TxResult, into_store_error, is_retryable, is_unavailable};
use self::open::Pool;
pub(crate) use self::statements::Tx;
use super::{ActorId, ActorKind, ChangeWatcher, Generation, Result, Store, StoreError};

/// The id the first migration gives the [`DEFAULT_VAULT`](super::DEFAULT_VAULT), as in SQLite.
pub use super::sqlite::DEFAULT_VAULT_ID;

/// How many times a write transaction runs before a serialization failure or a deadlock is
/// given up as `Unavailable`.
pub const WRITE_ATTEMPTS: u32 = 8;

/// A query's parameters.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The PostgreSQL [`Store`].
pub struct PostgresStore {
    pool: Pool,
    /// How the change watcher connects (`changes.rs`).
    watcher: Arc<changes::Connector>,
    /// The database URL without its password, for messages.
    shown: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.shown)
            .finish_non_exhaustive()
    }
}

/// What a transaction may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    /// A write of the request log: at `READ COMMITTED`, as the rules it upholds across rows
    /// come from locks (`request_log.rs`: the insert lock for the ids' order, the table
    /// lock against entries of a vault deleted meanwhile), so it pays for no predicate
    /// locks; and its commit does not wait for the server's disk
    /// (`synchronous_commit = off`), as the SQLite backend's log connection. A crash of the
    /// database server may lose the last moments of the log; nothing else.
    LogWrite,
}

impl PostgresStore {
    fn read<T>(&self, operation: &str, work: impl Fn(&mut Tx<'_>) -> TxResult<T>) -> Result<T> {
        self.transaction(operation, Access::Read, work)
    }

    fn write<T>(&self, operation: &str, work: impl Fn(&mut Tx<'_>) -> TxResult<T>) -> Result<T> {
        self.transaction(operation, Access::Write, work)
    }

    fn log_write<T>(
        &self,
        operation: &str,
        work: impl Fn(&mut Tx<'_>) -> TxResult<T>,
    ) -> Result<T> {
        self.transaction(operation, Access::LogWrite, work)
    }

    /// Run `work` in one transaction, again from the start after a serialization failure or
    /// a deadlock (see the module's documentation), or on another connection when the pooled
    /// one turns out dead at `BEGIN` (the server restarted or ended it), before anything ran.
    fn transaction<T>(
        &self,
        operation: &str,
        access: Access,
        work: impl Fn(&mut Tx<'_>) -> TxResult<T>,
    ) -> Result<T> {
        let mut connection = self.connection(operation)?;
        let mut replaced = false;
        let mut attempt = 1;
        loop {
            match run_once(&mut connection, access, &work) {
                Ok(value) => return Ok(value),
                Err(Attempt::Begin(error)) if is_unavailable(&error) && !replaced => {
                    replaced = true;
                    connection = self.connection(operation)?;
                }
                Err(Attempt::Begin(error)) => {
                    return Err(into_store_error(operation, Failure::Sql(error)));
                }
                Err(Attempt::Work(Failure::Sql(error)))
                    if is_retryable(&error) && attempt < WRITE_ATTEMPTS =>
                {
                    // A short pause that grows, so that the transactions that collided do not
                    // collide again in step.
                    std::thread::sleep(Duration::from_millis(u64::from(attempt) * 2));
                    attempt += 1;
                }
                // Once: a key a concurrent transaction inserted may change what this one
                // decides; a key that was there all along collides again.
                Err(Attempt::Work(Failure::Unique(_))) if attempt == 1 => attempt += 1,
                Err(Attempt::Work(failure)) => return Err(into_store_error(operation, failure)),
            }
        }
    }

    /// Run `work` on a connection of the pool, outside the store's transactions: for
    /// `store::migrate`, whose copy is one transaction of its own making.
    pub(crate) fn with_client<T>(
        &self,
        operation: &str,
        work: impl FnOnce(&mut postgres::Client) -> T,
    ) -> Result<T> {
        Ok(work(&mut self.connection(operation)?.client))
    }

    /// A connection from the pool (which does not test it: [`Self::transaction`] finds out).
    fn connection(&self, operation: &str) -> Result<open::Connection> {
        self.pool.get().map_err(|error| {
            StoreError::Unavailable(format!(
                "cannot {operation}: no connection to the database {}: {error}",
                self.shown
            ))
        })
    }
}

/// How one run of a transaction failed: at `BEGIN`, before anything ran, or after.
enum Attempt {
    Begin(postgres::Error),
    Work(Failure),
}

fn run_once<T>(
    connection: &mut statements::CachedClient,
    access: Access,
    work: &impl Fn(&mut Tx<'_>) -> TxResult<T>,
) -> std::result::Result<T, Attempt> {
    let statements::CachedClient { client, statements } = connection;
    let builder = client.build_transaction();
    let builder = match access {
        Access::Read => builder
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true),
        Access::Write => builder.isolation_level(IsolationLevel::Serializable),
        Access::LogWrite => builder.isolation_level(IsolationLevel::ReadCommitted),
    };
    let mut tx = Tx::new(builder.start().map_err(Attempt::Begin)?, statements);
    let outcome = (|| {
        if access == Access::LogWrite {
            tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        }
        let value = work(&mut tx)?;
        tx.commit()?;
        Ok(value)
    })();
    outcome.map_err(Attempt::Work)
}

// Reading and writing rows, for every entity.

/// Column `index` of `row`.
fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> TxResult<T> {
    Ok(row.try_get(index)?)
}

/// A BIGINT column read into a narrower Rust integer (a key version, a status).
fn narrow<T: TryFrom<i64>>(row: &Row, index: usize) -> TxResult<T> {
    let wide: i64 = column(row, index)?;
    T::try_from(wide)
        .map_err(|_| Failure::Data(format!("column {index} holds an out-of-range integer")))
}

/// A BYTEA column of a fixed length (a nonce).
fn fixed_bytes<const N: usize>(row: &Row, index: usize) -> TxResult<[u8; N]> {
    let bytes: Vec<u8> = column(row, index)?;
    <[u8; N]>::try_from(bytes)
        .map_err(|_| Failure::Data(format!("column {index} does not hold {N} bytes")))
}

fn text_enum<T: FromStr<Err = String>>(row: &Row, index: usize) -> TxResult<T> {
    let text: String = column(row, index)?;
    text.parse()
        .map_err(|message: String| Failure::Data(format!("column {index}: {message}")))
}

/// An optional actor stored as a (type, id) pair of columns.
fn actor_at(row: &Row, kind: usize, id: usize) -> TxResult<Option<ActorId>> {
    let Some(id_text) = column::<Option<String>>(row, id)? else {
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

/// The one row `sql` returns, if any, through `map`.
fn query_opt<T>(
    tx: &mut Tx<'_>,
    sql: &str,
    params: Params<'_>,
    map: impl FnOnce(&Row) -> TxResult<T>,
) -> TxResult<Option<T>> {
    tx.query_opt(sql, params)?.as_ref().map(map).transpose()
}

fn query_all<T>(
    tx: &mut Tx<'_>,
    sql: &str,
    params: Params<'_>,
    map: impl FnMut(&Row) -> TxResult<T>,
) -> TxResult<Vec<T>> {
    tx.query(sql, params)?.iter().map(map).collect()
}

/// Whether `sql` returns a row.
fn exists(tx: &mut Tx<'_>, sql: &str, params: Params<'_>) -> TxResult<bool> {
    Ok(tx.query_opt(sql, params)?.is_some())
}

impl Store for PostgresStore {
    fn watch_changes(&self, generation: Generation) -> Result<Option<ChangeWatcher>> {
        changes::watch(self.watcher.clone(), self.shown.clone(), generation).map(Some)
    }
}

#[cfg(test)]
pub(crate) mod tests;
