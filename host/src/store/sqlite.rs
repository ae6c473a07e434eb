//! The embedded backend of [`Store`]: one SQLite file in WAL mode, private to the user who
//! runs agent-vault, behind one connection.
//!
//! Start at [`SqliteStore::open`]: it creates the file (0600, in a 0700 directory when it
//! makes one) before SQLite touches it, so the `-wal` and `-shm` files SQLite creates later
//! inherit that mode; it sets the pragmas that make an acknowledged write durable
//! (`synchronous=FULL`) and let the CLI share the file with a running server (`busy_timeout`);
//! and it applies the numbered migrations of `migrations/`, tracked by `PRAGMA user_version`.
//!
//! Every trait method is one transaction; writes start with `BEGIN IMMEDIATE`, so a rule
//! checked inside one (the last owner, the last vault admin, one first owner) cannot be
//! invalidated by another connection between the check and the write. This module does not
//! decide who may call what (that is `auth`), and never sees a plaintext credential.

mod agent_invites;
mod devices;
mod proposals;

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior,
    ffi, params,
};

use super::{
    ActorId, ActorKind, Agent, AgentInvite, AgentStatus, DEFAULT_VAULT, DeviceRecord, Grant,
    HostSeen, InstanceRole, Invite, InviteStatus, JournalSeq, KeyProtection, LogEntry, LogQuery,
    MasterKeyRecord, Proposal, ProposalApplication, Result, Store, StoreError, StoredCa,
    StoredCredential, TokenKind, TokenRecord, UnixTime, User, Vault, VaultRole, now,
};
use crate::vault::crypto::{KdfParams, Sealed, random};

/// The schema, in order: version `n` is the `n`-th entry. Never edit a released migration;
/// add the next number.
const MIGRATIONS: &[(&str, &str)] = &[
    ("001_initial", include_str!("migrations/001_initial.sql")),
    (
        "002_agent_invites",
        include_str!("migrations/002_agent_invites.sql"),
    ),
    (
        "003_proposals",
        include_str!("migrations/003_proposals.sql"),
    ),
    ("004_mitm_ca", include_str!("migrations/004_mitm_ca.sql")),
    (
        "005_request_log_by_id",
        include_str!("migrations/005_request_log_by_id.sql"),
    ),
    (
        "006_instance_settings",
        include_str!("migrations/006_instance_settings.sql"),
    ),
    (
        "007_proposal_creators",
        include_str!("migrations/007_proposal_creators.sql"),
    ),
    (
        "008_device_tokens",
        include_str!("migrations/008_device_tokens.sql"),
    ),
    (
        "009_request_log_journal",
        include_str!("migrations/009_request_log_journal.sql"),
    ),
];

/// How long a statement waits for another connection (the CLI next to a running server)
/// to release the database before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// The id the first migration gives the [`DEFAULT_VAULT`].
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
    /// Open the database at `path`, creating it (and its directory) if needed, and bring its
    /// schema up to date. A database written by a newer agent-vault is refused.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        create_private_file(path)?;
        let cannot_open = |error: rusqlite::Error| {
            StoreError::Database(format!(
                "cannot open the database {}: {}",
                path.display(),
                describe(&error)
            ))
        };
        // No CREATE flag: the file exists with the right mode, and SQLite must not make
        // another one (with its default 0644) if it vanished in between.
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(cannot_open)?;
        configure(&connection).map_err(cannot_open)?;
        migrate(&mut connection, path)?;
        let log_connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(cannot_open)?;
        configure(&log_connection).map_err(cannot_open)?;
        log_connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(cannot_open)?;
        // The log writer checks each batch's vaults itself (`insert_logs`), in the same
        // transaction, so a foreign-key lookup per row would only repeat that check.
        log_connection
            .pragma_update(None, "foreign_keys", "OFF")
            .map_err(cannot_open)?;
        // Room for the log's recent pages (its table and two indexes, some 10 MB at the
        // default retention), so that inserting and pruning do not read them back from disk.
        log_connection
            .pragma_update(None, "cache_size", -16_384)
            .map_err(cannot_open)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            connection: Mutex::new(connection),
            log_connection: Mutex::new(log_connection),
        })
    }

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

    /// The request log's insert, on its own connection; with `through`, the journal's mark
    /// moves up to it in the same transaction.
    fn insert_log_rows(&self, entries: &[LogEntry], through: Option<JournalSeq>) -> Result<()> {
        let behavior = TransactionBehavior::Immediate;
        Self::transaction_on(
            &self.log_connection,
            "write the request log",
            behavior,
            |tx| {
                // Entries of a vault deleted since the request are dropped, as its older entries
                // were. Checked once per vault in the batch (usually one), inside this
                // transaction, so no vault can go between the check and the insert; that is
                // why the log connection needs no foreign-key check per row.
                let mut vaults: Vec<(&str, bool)> = Vec::new();
                let mut exists = tx.prepare_cached("SELECT 1 FROM vaults WHERE id = ?1")?;
                let mut kept = Vec::with_capacity(entries.len());
                for entry in entries {
                    let known = match vaults.iter().find(|(id, _)| *id == entry.vault_id) {
                        Some((_, known)) => *known,
                        None => {
                            let known = exists.exists([&entry.vault_id])?;
                            vaults.push((&entry.vault_id, known));
                            known
                        }
                    };
                    if known {
                        kept.push(entry);
                    }
                }
                // Rows go in LOG_INSERT_ROWS at a time: with one statement per row, and the
                // foreign-key lookup, inserting cost 20-30% more per row (bench/README.md).
                let mut chunks = kept.chunks_exact(LOG_INSERT_ROWS);
                if chunks.len() > 0 {
                    let mut insert = tx.prepare_cached(&log_insert_sql(LOG_INSERT_ROWS))?;
                    for chunk in chunks.by_ref() {
                        bind_log_rows(&mut insert, chunk)?;
                        insert.raw_execute()?;
                    }
                }
                if !chunks.remainder().is_empty() {
                    let mut insert = tx.prepare_cached(&log_insert_sql(1))?;
                    for entry in chunks.remainder() {
                        bind_log_rows(&mut insert, std::slice::from_ref(entry))?;
                        insert.raw_execute()?;
                    }
                }
                if let Some(through) = through {
                    let through = i64::try_from(through).unwrap_or(i64::MAX);
                    tx.prepare_cached(
                        "UPDATE request_log_journal SET through = MAX(through, ?1) WHERE id = 1",
                    )?
                    .execute([through])?;
                }
                Ok(())
            },
        )
    }
}

/// Create the database file with mode 0600 (and its directory with 0700) unless it exists.
fn create_private_file(path: &Path) -> Result<()> {
    let io_error = |what: &str, target: &Path, error: std::io::Error| {
        StoreError::Database(format!(
            "cannot create {what} {}: {error}",
            target.display()
        ))
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(parent)
            .map_err(|error| io_error("the database directory", parent, error))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|error| io_error("the database", path, error))?;
    Ok(())
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    // First, so that switching to WAL waits for another process instead of failing.
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the database cannot use write-ahead logging (journal mode {mode}); \
                 put it on a local file system"
            )),
        ));
    }
    // FULL: in WAL mode, every commit syncs the log, so an acknowledged write survives a
    // SIGKILL and a power loss. NORMAL would only survive the SIGKILL.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Apply the migrations the database has not seen, each in its own transaction; how many.
fn migrate(connection: &mut Connection, path: &Path) -> Result<usize> {
    let known = MIGRATIONS.len() as i64;
    let failed = |what: &str, error: rusqlite::Error| {
        StoreError::Database(format!(
            "cannot {what} of {}: {}",
            path.display(),
            describe(&error)
        ))
    };
    let too_new = |version: i64| {
        StoreError::Database(format!(
            "the database {} was written by a newer agent-vault (schema version {version}, \
             this agent-vault knows up to {known}): upgrade agent-vault to open it",
            path.display()
        ))
    };
    let schema_version = |connection: &Connection| {
        connection.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
    };

    // The common case, without taking the write lock a running server may hold.
    let version =
        schema_version(connection).map_err(|error| failed("read the schema version", error))?;
    if version > known {
        return Err(too_new(version));
    }
    let mut applied = 0;
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate() {
        let target = index as i64 + 1;
        let step = |connection: &mut Connection| -> rusqlite::Result<bool> {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Read again under the write lock: another process may have migrated meanwhile.
            let version = schema_version(&tx)?;
            if version >= target {
                return Ok(false);
            }
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", target)?;
            tx.commit()?;
            Ok(true)
        };
        if step(connection).map_err(|error| failed(&format!("apply migration {name}"), error))? {
            applied += 1;
        }
    }
    // Another process may have written a newer schema while we waited for the lock.
    let version =
        schema_version(connection).map_err(|error| failed("read the schema version", error))?;
    if version > known {
        return Err(too_new(version));
    }
    Ok(applied)
}

/// An error inside a transaction: one of the store's rules, or SQLite's own error.
enum Failure {
    Store(StoreError),
    Sql(rusqlite::Error),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sql(error)
    }
}

type TxResult<T> = std::result::Result<T, Failure>;

/// Constraint failures turned into the store's errors, by SQLite's extended result code.
trait Constraint<T> {
    /// A UNIQUE or PRIMARY KEY collision becomes `Conflict(what)`.
    fn on_unique(self, what: &str) -> TxResult<T>;
    /// A row referring to a missing parent (a foreign key) becomes `NotFound(what)`.
    fn on_missing(self, what: &str) -> TxResult<T>;
}

impl<T, E: Into<Failure>> Constraint<T> for std::result::Result<T, E> {
    fn on_unique(self, what: &str) -> TxResult<T> {
        self.map_err(|error| match error.into() {
            Failure::Sql(error)
                if matches!(
                    constraint_code(&error),
                    Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
                ) =>
            {
                Failure::Store(StoreError::Conflict(what.to_owned()))
            }
            other => other,
        })
    }

    fn on_missing(self, what: &str) -> TxResult<T> {
        self.map_err(|error| match error.into() {
            Failure::Sql(error)
                if constraint_code(&error) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) =>
            {
                Failure::Store(StoreError::NotFound(what.to_owned()))
            }
            other => other,
        })
    }
}

fn constraint_code(error: &rusqlite::Error) -> Option<i32> {
    match error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == ErrorCode::ConstraintViolation =>
        {
            Some(failure.extended_code)
        }
        _ => None,
    }
}

/// A message for a SQLite error. SQLite's messages name tables, columns and constraints,
/// never bound values; the conversions below drop the value that failed.
fn describe(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let detail = message.clone().unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => format!(
                    "{detail}: another process kept the database busy for more than {} s; try again",
                    BUSY_TIMEOUT.as_secs()
                ),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    format!("{detail}: the database file is damaged; restore it from a backup")
                }
                ErrorCode::DiskFull => format!("{detail}: free some disk space and try again"),
                _ => detail,
            }
        }
        rusqlite::Error::FromSqlConversionFailure(column, _, cause) => {
            format!("column {column} holds an unreadable value: {cause}")
        }
        rusqlite::Error::IntegralValueOutOfRange(column, _) => {
            format!("column {column} holds an out-of-range integer")
        }
        other => other.to_string(),
    }
}

/// Whether `error` passes by itself: the write lock held elsewhere past the busy timeout,
/// or a full disk.
fn is_temporary(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull)
    )
}

/// A caller broke the contract of a trait method (a programming error, not the user's).
fn misuse(message: &str) -> Failure {
    Failure::Store(StoreError::Database(message.to_owned()))
}

fn new_vault_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    random(&mut bytes)
        .map_err(|error| StoreError::Database(format!("cannot create a vault id: {error}")))?;
    Ok(hex::encode(bytes))
}

// Reading rows.

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

const VAULT_COLUMNS: &str = "id, name, created_at";

fn vault_row(row: &Row<'_>) -> rusqlite::Result<Vault> {
    Ok(Vault {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
    })
}

const USER_COLUMNS: &str = "id, email, role, password_hash, created_at";

fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        role: text_enum(row, 2)?,
        password_hash: row.get(3)?,
        created_at: row.get(4)?,
    })
}

const AGENT_COLUMNS: &str =
    "id, name, role, status, created_by_type, created_by_id, created_at, revoked_at";

fn agent_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: row.get(0)?,
        name: row.get(1)?,
        role: text_enum(row, 2)?,
        status: text_enum(row, 3)?,
        created_by: actor_at(row, 4, 5)?,
        created_at: row.get(6)?,
        revoked_at: row.get(7)?,
    })
}

const GRANT_COLUMNS: &str = "actor_type, actor_id, vault_id, role";

fn grant_row(row: &Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        actor: ActorId {
            kind: text_enum(row, 0)?,
            id: row.get(1)?,
        },
        vault_id: row.get(2)?,
        role: text_enum(row, 3)?,
    })
}

const TOKEN_COLUMNS: &str = "hash, public_id, kind, user_id, agent_id, vault_id, vault_role, \
     label, idle_seconds, created_by_type, created_by_id, created_at, last_used_at, expires_at";

fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let kind: String = row.get(2)?;
    let kind = match kind.as_str() {
        "login" => TokenKind::Login {
            user_id: row.get(3)?,
            idle_seconds: row.get(8)?,
        },
        "agent" => TokenKind::Agent {
            agent_id: row.get(4)?,
        },
        "scoped" => TokenKind::Scoped {
            vault_id: row.get(5)?,
            role: text_enum(row, 6)?,
            label: row.get(7)?,
        },
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                2,
                Type::Text,
                format!("unknown token kind {other:?}").into(),
            ));
        }
    };
    Ok(TokenRecord {
        hash: row.get(0)?,
        public_id: row.get(1)?,
        kind,
        created_by: actor_at(row, 9, 10)?,
        created_at: row.get(11)?,
        last_used_at: row.get(12)?,
        expires_at: row.get(13)?,
    })
}

const LOG_COLUMNS: &str = "id, vault_id, ingress, method, host, path, matched_service, \
     credential_keys, status, latency_ms, error_code, actor_type, actor_id, created_at";

/// How many request-log rows one `INSERT` statement writes.
const LOG_INSERT_ROWS: usize = 32;

/// `INSERT INTO request_logs … VALUES (…), (…), …` for `rows` rows, without their ids.
fn log_insert_sql(rows: usize) -> String {
    let columns = LOG_COLUMNS.trim_start_matches("id, ");
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    format!(
        "INSERT INTO request_logs ({columns}) VALUES {}",
        vec![row; rows].join(", ")
    )
}

/// Bind `entries` to a statement from [`log_insert_sql`] of as many rows.
fn bind_log_rows(
    statement: &mut rusqlite::CachedStatement<'_>,
    entries: &[&LogEntry],
) -> TxResult<()> {
    let mut index = 1;
    for entry in entries {
        let keys = serde_json::to_string(&entry.credential_keys)
            .map_err(|error| misuse(&format!("cannot encode credential key names: {error}")))?;
        let (actor_type, actor_id) = actor_columns(entry.actor.as_ref());
        let latency_ms = i64::try_from(entry.latency_ms).unwrap_or(i64::MAX);
        let values: [&dyn rusqlite::ToSql; 13] = [
            &entry.vault_id,
            &entry.ingress,
            &entry.method,
            &entry.host,
            &entry.path,
            &entry.matched_service,
            &keys,
            &entry.status,
            &latency_ms,
            &entry.error_code,
            &actor_type,
            &actor_id,
            &entry.created_at,
        ];
        for value in values {
            statement.raw_bind_parameter(index, value)?;
            index += 1;
        }
    }
    Ok(())
}

fn log_row(row: &Row<'_>) -> rusqlite::Result<LogEntry> {
    let keys: String = row.get(7)?;
    let credential_keys = serde_json::from_str(&keys)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, error.into()))?;
    Ok(LogEntry {
        id: row.get(0)?,
        vault_id: row.get(1)?,
        ingress: row.get(2)?,
        method: row.get(3)?,
        host: row.get(4)?,
        path: row.get(5)?,
        matched_service: row.get(6)?,
        credential_keys,
        status: row.get(8)?,
        latency_ms: row.get(9)?,
        error_code: row.get(10)?,
        actor: actor_at(row, 11, 12)?,
        created_at: row.get(13)?,
    })
}

fn master_key_row(row: &Row<'_>) -> rusqlite::Result<MasterKeyRecord> {
    let key_version: u32 = row.get(0)?;
    let mode: String = row.get(1)?;
    let protection = match mode.as_str() {
        "password" => KeyProtection::Password {
            salt: row.get(2)?,
            kdf: KdfParams {
                memory_kib: row.get(3)?,
                iterations: row.get(4)?,
                parallelism: row.get(5)?,
            },
            wrapped: Sealed {
                key_version,
                nonce: row.get(6)?,
                ciphertext: row.get(7)?,
            },
        },
        "passwordless" => KeyProtection::Passwordless { plain: row.get(8)? },
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                1,
                Type::Text,
                format!("unknown key protection {other:?}").into(),
            ));
        }
    };
    Ok(MasterKeyRecord {
        key_version,
        protection,
    })
}

// Queries shared by several methods.

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

/// Users with the owner role plus active agents with it.
fn owner_count(tx: &Transaction<'_>) -> TxResult<i64> {
    Ok(tx.query_row(
        "SELECT (SELECT COUNT(*) FROM users WHERE role = 'owner')
              + (SELECT COUNT(*) FROM agents WHERE role = 'owner' AND status = 'active')",
        [],
        |row| row.get(0),
    )?)
}

/// `LastOwner` unless another owner remains once `removed_owner` no longer counts.
fn keep_an_owner(tx: &Transaction<'_>, removed_owner: bool) -> TxResult<()> {
    if removed_owner && owner_count(tx)? <= 1 {
        return Err(StoreError::LastOwner.into());
    }
    Ok(())
}

fn admin_count(tx: &Transaction<'_>, vault_id: &str) -> TxResult<i64> {
    Ok(tx.query_row(
        "SELECT COUNT(*) FROM vault_grants WHERE vault_id = ?1 AND role = 'admin'",
        [vault_id],
        |row| row.get(0),
    )?)
}

/// `LastAdmin` if `actor` is the only admin of any vault. Deleting a user or an agent takes
/// its grants with it; like removing the grant itself, that must not orphan a vault (the
/// issue: "the last vault admin cannot be removed"). An owner grants the vault to someone
/// else first.
fn keep_vault_admins(tx: &Transaction<'_>, actor: &ActorId) -> TxResult<()> {
    let sole_admin: Option<String> = tx
        .query_row(
            "SELECT g.vault_id FROM vault_grants g
             WHERE g.actor_type = ?1 AND g.actor_id = ?2 AND g.role = 'admin'
               AND (SELECT COUNT(*) FROM vault_grants o
                    WHERE o.vault_id = g.vault_id AND o.role = 'admin') = 1
             LIMIT 1",
            params![actor.kind.as_str(), actor.id],
            |row| row.get(0),
        )
        .optional()?;
    match sole_admin {
        Some(_) => Err(StoreError::LastAdmin.into()),
        None => Ok(()),
    }
}

fn find_agent(tx: &Transaction<'_>, id: &str) -> TxResult<Agent> {
    tx.query_row(
        &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"),
        [id],
        agent_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound("agent".into()).into())
}

fn actor_exists(tx: &Transaction<'_>, actor: &ActorId) -> TxResult<bool> {
    let sql = match actor.kind {
        ActorKind::User => "SELECT 1 FROM users WHERE id = ?1",
        ActorKind::Agent => "SELECT 1 FROM agents WHERE id = ?1",
    };
    Ok(tx
        .query_row(sql, [&actor.id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn require_actor(tx: &Transaction<'_>, actor: &ActorId) -> TxResult<()> {
    if actor_exists(tx, actor)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(actor.kind.as_str().into()).into())
    }
}

fn insert_grant(
    tx: &Transaction<'_>,
    actor: &ActorId,
    vault_id: &str,
    role: VaultRole,
) -> TxResult<()> {
    tx.execute(
        "INSERT INTO vault_grants (actor_type, actor_id, vault_id, role) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (actor_type, actor_id, vault_id) DO UPDATE SET role = excluded.role",
        params![actor.kind.as_str(), actor.id, vault_id, role.as_str()],
    )
    .on_missing("vault")?;
    Ok(())
}

fn write_credentials(
    tx: &Transaction<'_>,
    vault_id: &str,
    credentials: &[StoredCredential],
    updated_at: UnixTime,
) -> TxResult<()> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO credentials (vault_id, key, key_version, nonce, ciphertext, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (vault_id, key) DO UPDATE SET
             key_version = excluded.key_version, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
    )?;
    for credential in credentials {
        statement
            .execute(params![
                vault_id,
                credential.key,
                credential.sealed.key_version,
                credential.sealed.nonce,
                credential.sealed.ciphertext,
                updated_at,
            ])
            .on_missing("vault")?;
    }
    Ok(())
}

/// Delete the given keys; those that existed.
fn remove_credentials(
    tx: &Transaction<'_>,
    vault_id: &str,
    keys: &[String],
) -> TxResult<Vec<String>> {
    let mut statement =
        tx.prepare_cached("DELETE FROM credentials WHERE vault_id = ?1 AND key = ?2")?;
    let mut deleted = Vec::new();
    for key in keys {
        if statement.execute([vault_id, key])? > 0 {
            deleted.push(key.clone());
        }
    }
    Ok(deleted)
}

fn read_services(tx: &Transaction<'_>, vault_id: &str) -> TxResult<Option<String>> {
    Ok(tx
        .query_row(
            "SELECT services_json FROM services WHERE vault_id = ?1",
            [vault_id],
            |row| row.get(0),
        )
        .optional()?)
}

fn write_services(
    tx: &Transaction<'_>,
    vault_id: &str,
    json: &str,
    updated_at: UnixTime,
) -> TxResult<()> {
    tx.execute(
        "INSERT INTO services (vault_id, services_json, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (vault_id) DO UPDATE SET
             services_json = excluded.services_json, updated_at = excluded.updated_at",
        params![vault_id, json, updated_at],
    )
    .on_missing("vault")?;
    Ok(())
}

fn insert_agent(tx: &Transaction<'_>, agent: &Agent) -> TxResult<()> {
    let (created_by_type, created_by_id) = actor_columns(agent.created_by.as_ref());
    tx.execute(
        "INSERT INTO agents (id, name, role, status, created_by_type, created_by_id,
                             created_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            agent.id,
            agent.name,
            agent.role.as_str(),
            agent.status.as_str(),
            created_by_type,
            created_by_id,
            agent.created_at,
            agent.revoked_at,
        ],
    )
    .on_unique(&format!("agent {}", agent.name))?;
    Ok(())
}

fn insert_user(tx: &Transaction<'_>, user: &User, role: InstanceRole) -> TxResult<()> {
    tx.execute(
        "INSERT INTO users (id, email, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user.id, user.email, user.password_hash, role.as_str(), user.created_at],
    )
    .on_unique("a user with this email")?;
    Ok(())
}

fn insert_token_row(tx: &Transaction<'_>, token: &TokenRecord) -> TxResult<()> {
    let (kind, user_id, agent_id, vault_id, vault_role, label, idle_seconds, parent) =
        match &token.kind {
            TokenKind::Login {
                user_id,
                idle_seconds,
            } => (
                "login",
                Some(user_id),
                None,
                None,
                None,
                None,
                Some(*idle_seconds),
                "user",
            ),
            TokenKind::Agent { agent_id } => (
                "agent",
                None,
                Some(agent_id),
                None,
                None,
                None,
                None,
                "agent",
            ),
            TokenKind::Scoped {
                vault_id,
                role,
                label,
            } => (
                "scoped",
                None,
                None,
                Some(vault_id),
                Some(role.as_str()),
                Some(label),
                None,
                "vault",
            ),
        };
    let (created_by_type, created_by_id) = actor_columns(token.created_by.as_ref());
    tx.execute(
        "INSERT INTO tokens (hash, public_id, kind, user_id, agent_id, vault_id, vault_role, label,
                             idle_seconds, created_by_type, created_by_id, created_at,
                             last_used_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            token.hash,
            token.public_id,
            kind,
            user_id,
            agent_id,
            vault_id,
            vault_role,
            label,
            idle_seconds,
            created_by_type,
            created_by_id,
            token.created_at,
            token.last_used_at,
            token.expires_at,
        ],
    )
    .on_unique("token")
    .on_missing(parent)?;
    Ok(())
}

/// Tokens an agent holds and the scoped sessions it minted with them.
fn delete_agent_tokens(tx: &Transaction<'_>, agent_id: &str) -> TxResult<()> {
    tx.execute(
        "DELETE FROM tokens
         WHERE agent_id = ?1 OR (created_by_type = 'agent' AND created_by_id = ?1)",
        [agent_id],
    )?;
    Ok(())
}

fn write_master_key(
    tx: &Transaction<'_>,
    record: &MasterKeyRecord,
    replace: bool,
) -> TxResult<usize> {
    let (mode, salt, kdf, nonce, wrapped, plain) = match &record.protection {
        KeyProtection::Password { salt, kdf, wrapped } => {
            if wrapped.key_version != record.key_version {
                return Err(misuse(
                    "the wrapped data key must carry the record's key version",
                ));
            }
            (
                "password",
                Some(salt),
                Some(kdf),
                Some(&wrapped.nonce),
                Some(&wrapped.ciphertext),
                None,
            )
        }
        KeyProtection::Passwordless { plain } => {
            ("passwordless", None, None, None, None, Some(plain))
        }
    };
    let sql = if replace {
        "UPDATE master_key SET key_version = ?1, mode = ?2, salt = ?3, kdf_memory_kib = ?4,
             kdf_iterations = ?5, kdf_parallelism = ?6, wrap_nonce = ?7, wrapped_key = ?8,
             plain_key = ?9, updated_at = ?10
         WHERE id = 1"
    } else {
        "INSERT INTO master_key (id, key_version, mode, salt, kdf_memory_kib, kdf_iterations,
             kdf_parallelism, wrap_nonce, wrapped_key, plain_key, updated_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    };
    let changed = tx
        .execute(
            sql,
            params![
                record.key_version,
                mode,
                salt,
                kdf.map(|kdf| kdf.memory_kib),
                kdf.map(|kdf| kdf.iterations),
                kdf.map(|kdf| kdf.parallelism),
                nonce,
                wrapped,
                plain,
                now(),
            ],
        )
        .on_unique("a master key")?;
    Ok(changed)
}

fn invite_vaults(tx: &Transaction<'_>, hash: &str) -> TxResult<Vec<(String, VaultRole)>> {
    query_all(
        tx,
        "SELECT vault_id, role FROM user_invite_vaults WHERE invite_hash = ?1 ORDER BY vault_id",
        [hash],
        |row| Ok((row.get(0)?, text_enum(row, 1)?)),
    )
}

const INVITE_COLUMNS: &str =
    "hash, email, role, created_by_type, created_by_id, status, created_at, expires_at";

fn invite_row(row: &Row<'_>) -> rusqlite::Result<Invite> {
    Ok(Invite {
        hash: row.get(0)?,
        email: row.get(1)?,
        role: text_enum(row, 2)?,
        vaults: Vec::new(),
        created_by: actor_at(row, 3, 4)?,
        status: text_enum(row, 5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
    })
}

impl Store for SqliteStore {
    fn master_key(&self) -> Result<Option<MasterKeyRecord>> {
        self.read("read the master key", |tx| {
            Ok(tx
                .query_row(
                    "SELECT key_version, mode, salt, kdf_memory_kib, kdf_iterations,
                            kdf_parallelism, wrap_nonce, wrapped_key, plain_key
                     FROM master_key WHERE id = 1",
                    [],
                    master_key_row,
                )
                .optional()?)
        })
    }

    fn init_master_key(&self, record: &MasterKeyRecord) -> Result<()> {
        self.write("store the master key", |tx| {
            write_master_key(tx, record, false)?;
            Ok(())
        })
    }

    fn replace_master_key(&self, record: &MasterKeyRecord) -> Result<()> {
        self.write("replace the master key", |tx| {
            if write_master_key(tx, record, true)? == 0 {
                return Err(StoreError::NotFound("master key".into()).into());
            }
            Ok(())
        })
    }

    fn create_vault(&self, name: &str, admin: Option<&ActorId>) -> Result<Vault> {
        let vault = Vault {
            id: new_vault_id()?,
            name: name.to_owned(),
            created_at: now(),
        };
        self.write("create the vault", |tx| {
            tx.execute(
                "INSERT INTO vaults (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![vault.id, vault.name, vault.created_at],
            )
            .on_unique(&format!("vault {name}"))?;
            if let Some(admin) = admin {
                require_actor(tx, admin)?;
                insert_grant(tx, admin, &vault.id, VaultRole::Admin)?;
            }
            Ok(())
        })?;
        Ok(vault)
    }

    fn vault(&self, name: &str) -> Result<Option<Vault>> {
        self.read("read the vault", |tx| {
            Ok(tx
                .query_row(
                    &format!("SELECT {VAULT_COLUMNS} FROM vaults WHERE name = ?1"),
                    [name],
                    vault_row,
                )
                .optional()?)
        })
    }

    fn vault_by_id(&self, id: &str) -> Result<Option<Vault>> {
        self.read("read the vault", |tx| {
            Ok(tx
                .query_row(
                    &format!("SELECT {VAULT_COLUMNS} FROM vaults WHERE id = ?1"),
                    [id],
                    vault_row,
                )
                .optional()?)
        })
    }

    fn vaults(&self) -> Result<Vec<Vault>> {
        self.read("list the vaults", |tx| {
            query_all(
                tx,
                &format!("SELECT {VAULT_COLUMNS} FROM vaults ORDER BY name"),
                [],
                vault_row,
            )
        })
    }

    fn rename_vault(&self, id: &str, name: &str) -> Result<()> {
        self.write("rename the vault", |tx| {
            if id == DEFAULT_VAULT_ID {
                return Err(misuse(&format!(
                    "the {DEFAULT_VAULT} vault cannot be renamed"
                )));
            }
            let renamed = tx
                .execute("UPDATE vaults SET name = ?2 WHERE id = ?1", [id, name])
                .on_unique(&format!("vault {name}"))?;
            if renamed == 0 {
                return Err(StoreError::NotFound("vault".into()).into());
            }
            Ok(())
        })
    }

    fn delete_vault(&self, id: &str) -> Result<()> {
        self.write("delete the vault", |tx| {
            // The backstop for a caller that did not refuse first: every instance keeps its
            // default vault (agents without an explicit vault use it). No variant of
            // `StoreError` says "refused", and this is a bug of the caller, so: `Database`.
            if id == DEFAULT_VAULT_ID {
                return Err(misuse(&format!(
                    "the {DEFAULT_VAULT} vault cannot be deleted"
                )));
            }
            // The foreign keys cascade all of this too; spelled out so that the behaviour
            // does not hang on `PRAGMA foreign_keys` and reads the same in every backend.
            for sql in [
                "DELETE FROM vault_grants WHERE vault_id = ?1",
                "DELETE FROM vault_settings WHERE vault_id = ?1",
                "DELETE FROM credentials WHERE vault_id = ?1",
                "DELETE FROM services WHERE vault_id = ?1",
                "DELETE FROM tokens WHERE vault_id = ?1",
                "DELETE FROM request_logs WHERE vault_id = ?1",
                "DELETE FROM user_invite_vaults WHERE vault_id = ?1",
            ] {
                tx.execute(sql, [id])?;
            }
            if tx.execute("DELETE FROM vaults WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::NotFound("vault".into()).into());
            }
            Ok(())
        })
    }

    fn vault_setting(&self, vault_id: &str, key: &str) -> Result<Option<String>> {
        self.read("read the vault setting", |tx| {
            Ok(tx
                .query_row(
                    "SELECT value FROM vault_settings WHERE vault_id = ?1 AND key = ?2",
                    [vault_id, key],
                    |row| row.get(0),
                )
                .optional()?)
        })
    }

    fn set_vault_setting(&self, vault_id: &str, key: &str, value: Option<&str>) -> Result<()> {
        self.write("change the vault setting", |tx| {
            match value {
                Some(value) => {
                    tx.execute(
                        "INSERT INTO vault_settings (vault_id, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (vault_id, key) DO UPDATE SET value = excluded.value",
                        [vault_id, key, value],
                    )
                    .on_missing("vault")?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM vault_settings WHERE vault_id = ?1 AND key = ?2",
                        [vault_id, key],
                    )?;
                }
            }
            Ok(())
        })
    }

    fn instance_setting(&self, key: &str) -> Result<Option<String>> {
        self.read("read the instance setting", |tx| {
            Ok(tx
                .query_row(
                    "SELECT value FROM instance_settings WHERE key = ?1",
                    [key],
                    |row| row.get(0),
                )
                .optional()?)
        })
    }

    fn set_instance_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.write("change the instance setting", |tx| {
            match value {
                Some(value) => tx.execute(
                    "INSERT INTO instance_settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key, value],
                )?,
                None => tx.execute("DELETE FROM instance_settings WHERE key = ?1", [key])?,
            };
            Ok(())
        })
    }

    fn put_credentials(&self, vault_id: &str, credentials: &[StoredCredential]) -> Result<()> {
        let updated_at = now();
        self.write("store the credentials", |tx| {
            write_credentials(tx, vault_id, credentials, updated_at)
        })
    }

    fn credential(&self, vault_id: &str, key: &str) -> Result<Option<StoredCredential>> {
        self.read("read the credential", |tx| {
            Ok(tx
                .query_row(
                    "SELECT key, key_version, nonce, ciphertext FROM credentials
                     WHERE vault_id = ?1 AND key = ?2",
                    [vault_id, key],
                    |row| {
                        Ok(StoredCredential {
                            key: row.get(0)?,
                            sealed: Sealed {
                                key_version: row.get(1)?,
                                nonce: row.get(2)?,
                                ciphertext: row.get(3)?,
                            },
                        })
                    },
                )
                .optional()?)
        })
    }

    fn credential_keys(&self, vault_id: &str) -> Result<Vec<String>> {
        self.read("list the credentials", |tx| {
            query_all(
                tx,
                "SELECT key FROM credentials WHERE vault_id = ?1 ORDER BY key",
                [vault_id],
                |row| row.get(0),
            )
        })
    }

    fn delete_credentials(&self, vault_id: &str, keys: &[String]) -> Result<Vec<String>> {
        self.write("delete the credentials", |tx| {
            remove_credentials(tx, vault_id, keys)
        })
    }

    fn services(&self, vault_id: &str) -> Result<Option<String>> {
        self.read("read the services", |tx| read_services(tx, vault_id))
    }

    fn set_services(&self, vault_id: &str, json: &str) -> Result<()> {
        self.write("store the services", |tx| {
            write_services(tx, vault_id, json, now())
        })
    }

    fn has_owner(&self) -> Result<bool> {
        self.read("look for an owner", |tx| Ok(owner_count(tx)? > 0))
    }

    fn create_first_owner(&self, user: &User) -> Result<()> {
        self.write("create the first owner", |tx| {
            if owner_count(tx)? > 0 {
                return Err(StoreError::Conflict("an owner".into()).into());
            }
            // Whatever `user.role` says: this method makes the owner.
            insert_user(tx, user, InstanceRole::Owner)?;
            insert_grant(
                tx,
                &ActorId::user(&user.id),
                DEFAULT_VAULT_ID,
                VaultRole::Admin,
            )
        })
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        self.read("read the user", |tx| {
            Ok(tx
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                    [id],
                    user_row,
                )
                .optional()?)
        })
    }

    fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.read("read the user", |tx| {
            Ok(tx
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
                    [email],
                    user_row,
                )
                .optional()?)
        })
    }

    fn users(&self) -> Result<Vec<User>> {
        self.read("list the users", |tx| {
            query_all(
                tx,
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"),
                [],
                user_row,
            )
        })
    }

    fn set_user_role(&self, id: &str, role: InstanceRole) -> Result<()> {
        self.write("change the user's role", |tx| {
            let current: InstanceRole = tx
                .query_row("SELECT role FROM users WHERE id = ?1", [id], |row| {
                    text_enum(row, 0)
                })
                .optional()?
                .ok_or(StoreError::NotFound("user".into()))?;
            keep_an_owner(
                tx,
                current == InstanceRole::Owner && role != InstanceRole::Owner,
            )?;
            tx.execute(
                "UPDATE users SET role = ?1 WHERE id = ?2",
                [role.as_str(), id],
            )?;
            Ok(())
        })
    }

    fn set_user_password(&self, id: &str, password_hash: &str) -> Result<()> {
        self.write("change the user's password", |tx| {
            if tx.execute(
                "UPDATE users SET password_hash = ?1 WHERE id = ?2",
                [password_hash, id],
            )? == 0
            {
                return Err(StoreError::NotFound("user".into()).into());
            }
            tx.execute(
                "DELETE FROM tokens WHERE kind = 'login' AND user_id = ?1",
                [id],
            )?;
            devices::delete_of_user(tx, id)?;
            Ok(())
        })
    }

    fn delete_user(&self, id: &str) -> Result<()> {
        self.write("delete the user", |tx| {
            let role: InstanceRole = tx
                .query_row("SELECT role FROM users WHERE id = ?1", [id], |row| {
                    text_enum(row, 0)
                })
                .optional()?
                .ok_or(StoreError::NotFound("user".into()))?;
            keep_an_owner(tx, role == InstanceRole::Owner)?;
            keep_vault_admins(tx, &ActorId::user(id))?;
            agent_invites::revoke_created_by(tx, &ActorId::user(id))?;
            tx.execute(
                "DELETE FROM vault_grants WHERE actor_type = 'user' AND actor_id = ?1",
                [id],
            )?;
            tx.execute(
                "DELETE FROM tokens
                 WHERE user_id = ?1 OR (created_by_type = 'user' AND created_by_id = ?1)",
                [id],
            )?;
            devices::delete_of_user(tx, id)?;
            tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn create_invite(&self, invite: &Invite) -> Result<()> {
        self.write("create the invite", |tx| {
            let (created_by_type, created_by_id) = actor_columns(invite.created_by.as_ref());
            tx.execute(
                "INSERT INTO user_invites (hash, email, role, created_by_type, created_by_id,
                                           status, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    invite.hash,
                    invite.email,
                    invite.role.as_str(),
                    created_by_type,
                    created_by_id,
                    invite.status.as_str(),
                    invite.created_at,
                    invite.expires_at,
                ],
            )
            .on_unique("invite")?;
            for (vault_id, role) in &invite.vaults {
                tx.execute(
                    "INSERT INTO user_invite_vaults (invite_hash, vault_id, role)
                     VALUES (?1, ?2, ?3)",
                    [&invite.hash, vault_id, role.as_str()],
                )
                .on_unique("a grant of this vault in the invite")
                .on_missing("vault")?;
            }
            Ok(())
        })
    }

    fn invite(&self, hash: &str) -> Result<Option<Invite>> {
        self.read("read the invite", |tx| {
            let invite = tx
                .query_row(
                    &format!("SELECT {INVITE_COLUMNS} FROM user_invites WHERE hash = ?1"),
                    [hash],
                    invite_row,
                )
                .optional()?;
            let Some(mut invite) = invite else {
                return Ok(None);
            };
            invite.vaults = invite_vaults(tx, hash)?;
            Ok(Some(invite))
        })
    }

    fn invites(&self) -> Result<Vec<Invite>> {
        self.read("list the invites", |tx| {
            let mut invites = query_all(
                tx,
                &format!("SELECT {INVITE_COLUMNS} FROM user_invites ORDER BY created_at, hash"),
                [],
                invite_row,
            )?;
            for invite in &mut invites {
                invite.vaults = invite_vaults(tx, &invite.hash)?;
            }
            Ok(invites)
        })
    }

    fn accept_invite(&self, hash: &str, user: &User) -> Result<()> {
        let at = now();
        self.write("accept the invite", |tx| {
            let pending: bool = tx
                .query_row(
                    "SELECT status = 'pending' AND expires_at > ?2 FROM user_invites
                     WHERE hash = ?1",
                    params![hash, at],
                    |row| row.get(0),
                )
                .optional()?
                .unwrap_or(false);
            if !pending {
                return Err(StoreError::NotFound("invite".into()).into());
            }
            insert_user(tx, user, user.role)?;
            let actor = ActorId::user(&user.id);
            for (vault_id, role) in invite_vaults(tx, hash)? {
                insert_grant(tx, &actor, &vault_id, role)?;
            }
            tx.execute(
                "UPDATE user_invites SET status = ?1 WHERE hash = ?2",
                [InviteStatus::Accepted.as_str(), hash],
            )?;
            Ok(())
        })
    }

    fn revoke_invite(&self, hash: &str) -> Result<()> {
        self.write("revoke the invite", |tx| {
            if tx.execute(
                "UPDATE user_invites SET status = 'revoked' WHERE hash = ?1 AND status = 'pending'",
                [hash],
            )? == 0
            {
                return Err(StoreError::NotFound("invite".into()).into());
            }
            Ok(())
        })
    }

    fn create_agent_invite(&self, invite: &AgentInvite) -> Result<()> {
        self.write("create the agent invite", |tx| {
            agent_invites::create(tx, invite)
        })
    }

    fn agent_invite(&self, hash: &str) -> Result<Option<AgentInvite>> {
        self.read("read the agent invite", |tx| agent_invites::get(tx, hash))
    }

    fn agent_invites(&self) -> Result<Vec<AgentInvite>> {
        self.read("list the agent invites", agent_invites::list)
    }

    fn redeem_agent_invite(
        &self,
        hash: &str,
        agent_id: &str,
        token: &TokenRecord,
        at: UnixTime,
    ) -> Result<Agent> {
        self.write("redeem the agent invite", |tx| {
            agent_invites::redeem(tx, hash, agent_id, token, at)
        })
    }

    fn revoke_agent_invite(&self, hash: &str) -> Result<()> {
        self.write("revoke the agent invite", |tx| {
            agent_invites::revoke(tx, hash)
        })
    }

    fn create_proposal(&self, proposal: &Proposal, max_pending: usize) -> Result<i64> {
        self.write("create the proposal", |tx| {
            proposals::create(tx, proposal, max_pending)
        })
    }

    fn proposal(&self, vault_id: &str, id: i64) -> Result<Option<Proposal>> {
        self.read("read the proposal", |tx| proposals::get(tx, vault_id, id))
    }

    fn proposal_by_approval(&self, approval_hash: &str) -> Result<Option<Proposal>> {
        self.read("read the proposal", |tx| {
            proposals::by_approval(tx, approval_hash)
        })
    }

    fn proposals(&self, vault_id: &str) -> Result<Vec<Proposal>> {
        self.read("list the proposals", |tx| proposals::list(tx, vault_id))
    }

    fn apply_proposal(
        &self,
        vault_id: &str,
        id: i64,
        application: &ProposalApplication,
        reviewer: &ActorId,
        at: UnixTime,
    ) -> Result<()> {
        self.write("apply the proposal", |tx| {
            proposals::apply(tx, vault_id, id, application, reviewer, at)
        })
    }

    fn reject_proposal(
        &self,
        vault_id: &str,
        id: i64,
        reviewer: &ActorId,
        reason: Option<&str>,
        at: UnixTime,
    ) -> Result<()> {
        self.write("reject the proposal", |tx| {
            proposals::reject(tx, vault_id, id, reviewer, reason, at)
        })
    }

    fn create_agent(&self, agent: &Agent, grants: &[Grant], token: &TokenRecord) -> Result<()> {
        let actor = ActorId::agent(&agent.id);
        if grants.iter().any(|grant| grant.actor != actor) {
            return Err(StoreError::Database(
                "the grants of a new agent must name that agent".into(),
            ));
        }
        if !matches!(&token.kind, TokenKind::Agent { agent_id } if *agent_id == agent.id) {
            return Err(StoreError::Database(
                "the first token of an agent must be an agent token of that agent".into(),
            ));
        }
        self.write("create the agent", |tx| {
            agent_invites::check_name_free(tx, &agent.name, agent.created_at)?;
            insert_agent(tx, agent)?;
            for grant in grants {
                insert_grant(tx, &actor, &grant.vault_id, grant.role)?;
            }
            insert_token_row(tx, token)
        })
    }

    fn agent(&self, id: &str) -> Result<Option<Agent>> {
        self.read("read the agent", |tx| {
            Ok(tx
                .query_row(
                    &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"),
                    [id],
                    agent_row,
                )
                .optional()?)
        })
    }

    fn agent_by_name(&self, name: &str) -> Result<Option<Agent>> {
        self.read("read the agent", |tx| {
            Ok(tx
                .query_row(
                    &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1"),
                    [name],
                    agent_row,
                )
                .optional()?)
        })
    }

    fn agents(&self) -> Result<Vec<Agent>> {
        self.read("list the agents", |tx| {
            query_all(
                tx,
                &format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"),
                [],
                agent_row,
            )
        })
    }

    fn revoke_agent(&self, id: &str, at: UnixTime) -> Result<()> {
        self.write("revoke the agent", |tx| {
            let agent = find_agent(tx, id)?;
            keep_an_owner(
                tx,
                agent.role == InstanceRole::Owner && agent.status == AgentStatus::Active,
            )?;
            // Revoking twice keeps the time of the first revocation.
            tx.execute(
                "UPDATE agents SET status = 'revoked', revoked_at = COALESCE(revoked_at, ?1)
                 WHERE id = ?2",
                params![at, id],
            )?;
            agent_invites::revoke_created_by(tx, &ActorId::agent(id))?;
            delete_agent_tokens(tx, id)
        })
    }

    fn delete_agent(&self, id: &str) -> Result<()> {
        self.write("delete the agent", |tx| {
            let agent = find_agent(tx, id)?;
            keep_an_owner(
                tx,
                agent.role == InstanceRole::Owner && agent.status == AgentStatus::Active,
            )?;
            keep_vault_admins(tx, &ActorId::agent(id))?;
            agent_invites::revoke_created_by(tx, &ActorId::agent(id))?;
            delete_agent_tokens(tx, id)?;
            tx.execute(
                "DELETE FROM vault_grants WHERE actor_type = 'agent' AND actor_id = ?1",
                [id],
            )?;
            tx.execute("DELETE FROM agents WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn rename_agent(&self, id: &str, name: &str, at: UnixTime) -> Result<()> {
        self.write("rename the agent", |tx| {
            find_agent(tx, id)?;
            agent_invites::check_name_free(tx, name, at)?;
            tx.execute("UPDATE agents SET name = ?2 WHERE id = ?1", [id, name])
                .on_unique(&format!("agent {name}"))?;
            Ok(())
        })
    }

    fn set_agent_role(&self, id: &str, role: InstanceRole) -> Result<()> {
        self.write("change the agent's role", |tx| {
            let agent = find_agent(tx, id)?;
            keep_an_owner(
                tx,
                agent.role == InstanceRole::Owner
                    && agent.status == AgentStatus::Active
                    && role != InstanceRole::Owner,
            )?;
            tx.execute(
                "UPDATE agents SET role = ?1 WHERE id = ?2",
                [role.as_str(), id],
            )?;
            Ok(())
        })
    }

    fn rotate_agent_token(&self, id: &str, token: &TokenRecord) -> Result<()> {
        if !matches!(&token.kind, TokenKind::Agent { agent_id } if agent_id == id) {
            return Err(StoreError::Database(
                "a rotated token must be an agent token of that agent".into(),
            ));
        }
        self.write("rotate the agent's token", |tx| {
            find_agent(tx, id)?;
            // The scoped sessions minted with the old token go too: a rotation is how a
            // leaked token is retired, and whoever held it may have minted sessions.
            delete_agent_tokens(tx, id)?;
            insert_token_row(tx, token)?;
            tx.execute(
                "UPDATE agents SET status = 'active', revoked_at = NULL WHERE id = ?1",
                [id],
            )?;
            Ok(())
        })
    }

    fn grants_of(&self, actor: &ActorId) -> Result<Vec<Grant>> {
        self.read("list the grants", |tx| {
            query_all(
                tx,
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM vault_grants
                     WHERE actor_type = ?1 AND actor_id = ?2 ORDER BY vault_id"
                ),
                [actor.kind.as_str(), &actor.id],
                grant_row,
            )
        })
    }

    fn vault_grants(&self, vault_id: &str) -> Result<Vec<Grant>> {
        self.read("list the grants", |tx| {
            query_all(
                tx,
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM vault_grants
                     WHERE vault_id = ?1 ORDER BY actor_type, actor_id"
                ),
                [vault_id],
                grant_row,
            )
        })
    }

    fn set_grant(&self, grant: &Grant) -> Result<()> {
        self.write("change the grant", |tx| {
            require_actor(tx, &grant.actor)?;
            let current: Option<VaultRole> = tx
                .query_row(
                    "SELECT role FROM vault_grants
                     WHERE actor_type = ?1 AND actor_id = ?2 AND vault_id = ?3",
                    [grant.actor.kind.as_str(), &grant.actor.id, &grant.vault_id],
                    |row| text_enum(row, 0),
                )
                .optional()?;
            if current == Some(VaultRole::Admin)
                && grant.role != VaultRole::Admin
                && admin_count(tx, &grant.vault_id)? <= 1
            {
                return Err(StoreError::LastAdmin.into());
            }
            insert_grant(tx, &grant.actor, &grant.vault_id, grant.role)
        })
    }

    fn remove_grant(&self, actor: &ActorId, vault_id: &str) -> Result<()> {
        self.write("remove the grant", |tx| {
            let current: VaultRole = tx
                .query_row(
                    "SELECT role FROM vault_grants
                     WHERE actor_type = ?1 AND actor_id = ?2 AND vault_id = ?3",
                    [actor.kind.as_str(), &actor.id, vault_id],
                    |row| text_enum(row, 0),
                )
                .optional()?
                .ok_or(StoreError::NotFound("grant".into()))?;
            if current == VaultRole::Admin && admin_count(tx, vault_id)? <= 1 {
                return Err(StoreError::LastAdmin.into());
            }
            tx.execute(
                "DELETE FROM vault_grants WHERE actor_type = ?1 AND actor_id = ?2 AND vault_id = ?3",
                [actor.kind.as_str(), &actor.id, vault_id],
            )?;
            Ok(())
        })
    }

    fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        self.write("store the token", |tx| insert_token_row(tx, token))
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.read("read the token", |tx| {
            Ok(tx
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"),
                    [hash],
                    token_row,
                )
                .optional()?)
        })
    }

    fn touch_token(&self, hash: &str, at: UnixTime) -> Result<()> {
        self.write("record the token's use", |tx| {
            // MAX: two requests finishing out of order must not move the time backwards.
            if tx.execute(
                "UPDATE tokens SET last_used_at = MAX(last_used_at, ?1) WHERE hash = ?2",
                params![at, hash],
            )? == 0
            {
                return Err(StoreError::NotFound("token".into()).into());
            }
            Ok(())
        })
    }

    fn delete_token(&self, hash: &str) -> Result<()> {
        self.write("delete the token", |tx| {
            if tx.execute("DELETE FROM tokens WHERE hash = ?1", [hash])? == 0 {
                return Err(StoreError::NotFound("token".into()).into());
            }
            Ok(())
        })
    }

    fn user_sessions(&self, user_id: &str) -> Result<Vec<TokenRecord>> {
        self.read("list the user's sessions", |tx| {
            query_all(
                tx,
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens
                     WHERE kind = 'login' AND user_id = ?1 ORDER BY created_at, public_id"
                ),
                [user_id],
                token_row,
            )
        })
    }

    fn scoped_tokens(&self, vault_id: &str, now: UnixTime) -> Result<Vec<TokenRecord>> {
        self.read("list the vault's sessions", |tx| {
            query_all(
                tx,
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens
                     WHERE kind = 'scoped' AND vault_id = ?1
                       AND (expires_at IS NULL OR expires_at > ?2)
                     ORDER BY created_at, public_id"
                ),
                params![vault_id, now],
                token_row,
            )
        })
    }

    fn delete_scoped_token(&self, vault_id: &str, public_id: &str) -> Result<bool> {
        self.write("delete the session", |tx| {
            Ok(tx.execute(
                "DELETE FROM tokens WHERE kind = 'scoped' AND vault_id = ?1 AND public_id = ?2",
                [vault_id, public_id],
            )? > 0)
        })
    }

    fn delete_expired_tokens(&self, now: UnixTime) -> Result<usize> {
        self.write("delete expired tokens", |tx| {
            // A token is valid while `now < expires_at` (as `scoped_tokens` lists them).
            let tokens = tx.execute(
                "DELETE FROM tokens
                 WHERE (expires_at IS NOT NULL AND expires_at <= ?1)
                    OR (kind = 'login' AND last_used_at + idle_seconds < ?1)",
                [now],
            )?;
            Ok(tokens + devices::delete_expired(tx, now)?)
        })
    }

    fn insert_device(&self, device: &DeviceRecord, max_per_user: usize) -> Result<()> {
        self.write("store the device token", |tx| {
            devices::insert(tx, device, max_per_user)
        })
    }

    fn device(&self, hash: &str) -> Result<Option<DeviceRecord>> {
        self.read("read the device token", |tx| devices::get(tx, hash))
    }

    fn touch_device(&self, hash: &str, at: UnixTime) -> Result<()> {
        self.write("record the device token's use", |tx| {
            devices::touch(tx, hash, at)
        })
    }

    fn user_devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>> {
        self.read("list the user's device tokens", |tx| {
            devices::of_user(tx, user_id)
        })
    }

    fn delete_device(&self, user_id: &str, public_id: &str) -> Result<bool> {
        self.write("delete the device token", |tx| {
            devices::delete(tx, user_id, public_id)
        })
    }

    fn transparent_ca(&self) -> Result<Option<StoredCa>> {
        self.read("read the local CA", |tx| {
            Ok(tx
                .query_row(
                    "SELECT common_name, cert_pem, key_version, nonce, ciphertext, created_at
                     FROM mitm_ca WHERE id = 1",
                    [],
                    |row| {
                        Ok(StoredCa {
                            common_name: row.get(0)?,
                            cert_pem: row.get(1)?,
                            sealed_key: Sealed {
                                key_version: row.get(2)?,
                                nonce: row.get(3)?,
                                ciphertext: row.get(4)?,
                            },
                            created_at: row.get(5)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    fn init_transparent_ca(&self, ca: &StoredCa) -> Result<()> {
        self.write("store the local CA", |tx| {
            tx.execute(
                "INSERT INTO mitm_ca (id, common_name, cert_pem, key_version, nonce, ciphertext,
                                      created_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    ca.common_name,
                    ca.cert_pem,
                    ca.sealed_key.key_version,
                    ca.sealed_key.nonce,
                    ca.sealed_key.ciphertext,
                    ca.created_at,
                ],
            )
            .on_unique("a local CA")?;
            Ok(())
        })
    }

    fn insert_logs(&self, entries: &[LogEntry]) -> Result<()> {
        self.insert_log_rows(entries, None)
    }

    fn insert_journaled_logs(&self, entries: &[LogEntry], through: JournalSeq) -> Result<()> {
        self.insert_log_rows(entries, Some(through))
    }

    fn journaled_through(&self) -> Result<JournalSeq> {
        self.read("read the request log's journal mark", |tx| {
            let through: i64 = tx.query_row(
                "SELECT through FROM request_log_journal WHERE id = 1",
                [],
                |row| row.get(0),
            )?;
            Ok(JournalSeq::try_from(through).unwrap_or(0))
        })
    }

    fn logs(&self, vault_id: &str, query: &LogQuery) -> Result<Vec<LogEntry>> {
        self.read("read the request log", |tx| {
            // With `after`, the page is the `limit` entries right after the cursor (then shown
            // newest first), so that following new entries never skips any; otherwise the
            // newest entries before `before`.
            let order = if query.after.is_some() { "ASC" } else { "DESC" };
            let filter = &query.filter;
            let (status_from, status_to) = filter.status.unzip();
            let mut entries = query_all(
                tx,
                &format!(
                    "SELECT {LOG_COLUMNS} FROM request_logs
                     WHERE vault_id = ?1 AND (?2 IS NULL OR id < ?2) AND (?3 IS NULL OR id > ?3)
                       AND (?5 IS NULL OR ingress = ?5)
                       AND (?6 IS NULL OR status BETWEEN ?6 AND ?7)
                       AND (?8 IS NULL OR matched_service = ?8)
                     ORDER BY id {order} LIMIT ?4"
                ),
                params![
                    vault_id,
                    query.before,
                    query.after,
                    query.limit,
                    filter.ingress,
                    status_from,
                    status_to,
                    filter.service
                ],
                log_row,
            )?;
            if query.after.is_some() {
                entries.reverse();
            }
            Ok(entries)
        })
    }

    fn unmatched_hosts(&self, vault_id: &str) -> Result<Vec<HostSeen>> {
        self.read("read the request log", |tx| {
            query_all(
                tx,
                "SELECT host, COUNT(*), MAX(created_at) FROM request_logs
                 WHERE vault_id = ?1 AND matched_service IS NULL
                   AND (error_code = 'forbidden' OR status IN (401, 403) OR method = 'CONNECT')
                 GROUP BY host",
                [vault_id],
                |row| {
                    Ok(HostSeen {
                        host: row.get(0)?,
                        requests: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                        last_seen: row.get(2)?,
                    })
                },
            )
        })
    }

    fn prune_logs(&self, older_than: UnixTime, max_rows_per_vault: u32) -> Result<usize> {
        // On the log's own connection: a commit on the main one would make the log
        // connection drop its page cache and read the log's pages again.
        let behavior = TransactionBehavior::Immediate;
        Self::transaction_on(
            &self.log_connection,
            "prune the request log",
            behavior,
            |tx| {
                // Entries are written in the order requests finish, so their times rise
                // with their ids: the old ones are those before the first recent one, found
                // by walking ids up from the oldest, which visits no more rows than it deletes.
                let mut deleted = tx.execute(
                    "DELETE FROM request_logs WHERE id < COALESCE(
                         (SELECT id FROM request_logs WHERE created_at >= ?1 ORDER BY id LIMIT 1),
                         (SELECT MAX(id) + 1 FROM request_logs))",
                    [older_than],
                )?;
                if max_rows_per_vault == 0 {
                    return Ok(deleted);
                }
                let vault_ids: Vec<String> = query_all(
                    tx,
                    "SELECT DISTINCT vault_id FROM request_logs",
                    [],
                    |row| row.get(0),
                )?;
                for vault_id in vault_ids {
                    // The newest entry beyond the cap: it and everything older goes.
                    let first_dropped: Option<i64> = tx
                        .query_row(
                            "SELECT id FROM request_logs WHERE vault_id = ?1
                         ORDER BY id DESC LIMIT 1 OFFSET ?2",
                            params![vault_id, max_rows_per_vault],
                            |row| row.get(0),
                        )
                        .optional()?;
                    if let Some(id) = first_dropped {
                        deleted += tx.execute(
                            "DELETE FROM request_logs WHERE vault_id = ?1 AND id <= ?2",
                            params![vault_id, id],
                        )?;
                    }
                }
                Ok(deleted)
            },
        )
    }
}

#[cfg(test)]
mod tests;
