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

    fn mitm_ca(&self) -> Result<Option<StoredCa>> {
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

    fn init_mitm_ca(&self, ca: &StoredCa) -> Result<()> {
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
mod tests {
    use super::*;

    use std::sync::{Arc, Barrier};

    use tempfile::TempDir;

    pub(super) const T0: UnixTime = 1_700_000_000;

    fn open_store() -> (TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("agent-vault.db")).unwrap();
        (dir, store)
    }

    /// A store whose first owner, alice, administers the default vault.
    pub(super) fn store_with_owner() -> (TempDir, SqliteStore) {
        let (dir, store) = open_store();
        store
            .create_first_owner(&user("alice", InstanceRole::Owner))
            .unwrap();
        (dir, store)
    }

    pub(super) fn user(id: &str, role: InstanceRole) -> User {
        User {
            id: id.into(),
            email: format!("{id}@example.com"),
            role,
            password_hash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
            created_at: T0,
        }
    }

    fn invite(hash: &str, email: &str, role: InstanceRole, vaults: &[(&str, VaultRole)]) -> Invite {
        Invite {
            hash: hash.into(),
            email: email.into(),
            role,
            vaults: vaults
                .iter()
                .map(|(id, role)| (id.to_string(), *role))
                .collect(),
            created_by: Some(ActorId::user("alice")),
            status: InviteStatus::Pending,
            created_at: now(),
            expires_at: now() + 3600,
        }
    }

    /// A user who joined the way people do: through an invite.
    pub(super) fn add_user(store: &SqliteStore, id: &str, role: InstanceRole) -> User {
        let user = user(id, role);
        let hash = format!("invite-{id}");
        store
            .create_invite(&invite(&hash, &user.email, role, &[]))
            .unwrap();
        store.accept_invite(&hash, &user).unwrap();
        user
    }

    pub(super) fn agent(id: &str, role: InstanceRole) -> Agent {
        Agent {
            id: id.into(),
            name: format!("{id}-bot"),
            role,
            status: AgentStatus::Active,
            created_by: Some(ActorId::user("alice")),
            created_at: T0,
            revoked_at: None,
        }
    }

    pub(super) fn agent_token(agent_id: &str, hash: &str) -> TokenRecord {
        TokenRecord {
            hash: hash.into(),
            public_id: format!("pub-{hash}"),
            kind: TokenKind::Agent {
                agent_id: agent_id.into(),
            },
            created_by: Some(ActorId::user("alice")),
            created_at: T0,
            last_used_at: T0,
            expires_at: None,
        }
    }

    /// An agent with its first token, `<id>-token`, and the given vault roles.
    pub(super) fn add_agent(
        store: &SqliteStore,
        id: &str,
        role: InstanceRole,
        vaults: &[(&str, VaultRole)],
    ) {
        let grants: Vec<Grant> = vaults
            .iter()
            .map(|(vault_id, role)| grant(ActorId::agent(id), vault_id, *role))
            .collect();
        store
            .create_agent(
                &agent(id, role),
                &grants,
                &agent_token(id, &format!("{id}-token")),
            )
            .unwrap();
    }

    fn login_token(
        user_id: &str,
        hash: &str,
        last_used_at: UnixTime,
        idle_seconds: i64,
    ) -> TokenRecord {
        TokenRecord {
            hash: hash.into(),
            public_id: format!("pub-{hash}"),
            kind: TokenKind::Login {
                user_id: user_id.into(),
                idle_seconds,
            },
            created_by: Some(ActorId::user(user_id)),
            created_at: T0 - 1000,
            last_used_at,
            expires_at: None,
        }
    }

    pub(super) fn scoped_token(
        vault_id: &str,
        hash: &str,
        created_by: Option<ActorId>,
        expires_at: Option<UnixTime>,
    ) -> TokenRecord {
        TokenRecord {
            hash: hash.into(),
            public_id: format!("pub-{hash}"),
            kind: TokenKind::Scoped {
                vault_id: vault_id.into(),
                role: VaultRole::Proxy,
                label: format!("session {hash}"),
            },
            created_by,
            created_at: T0,
            last_used_at: T0,
            expires_at,
        }
    }

    pub(super) fn grant(actor: ActorId, vault_id: &str, role: VaultRole) -> Grant {
        Grant {
            actor,
            vault_id: vault_id.into(),
            role,
        }
    }

    pub(super) fn sealed(byte: u8) -> Sealed {
        Sealed {
            key_version: 1,
            nonce: [byte; 12],
            ciphertext: vec![byte; 24],
        }
    }

    fn credential(key: &str, byte: u8) -> StoredCredential {
        StoredCredential {
            key: key.into(),
            sealed: sealed(byte),
        }
    }

    fn log_entry(vault_id: &str, created_at: UnixTime) -> LogEntry {
        LogEntry {
            id: 0,
            vault_id: vault_id.into(),
            ingress: "explicit".into(),
            method: "POST".into(),
            host: "api.stripe.com".into(),
            path: "/v1/charges".into(),
            matched_service: Some("stripe".into()),
            credential_keys: vec!["STRIPE_KEY".into()],
            status: 201,
            latency_ms: 42,
            error_code: None,
            actor: Some(ActorId::agent("deployer")),
            created_at,
        }
    }

    fn page(
        store: &SqliteStore,
        vault_id: &str,
        before: Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Vec<i64> {
        store
            .logs(
                vault_id,
                &LogQuery {
                    before,
                    after,
                    limit,
                    ..LogQuery::default()
                },
            )
            .unwrap()
            .iter()
            .map(|entry| entry.id)
            .collect()
    }

    /// Rows of `table` whose `vault_id` is `vault_id`, read behind the trait's back.
    fn rows_of_vault(store: &SqliteStore, table: &str, vault_id: &str) -> i64 {
        let connection = store.connection.lock().unwrap();
        connection
            .query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE vault_id = ?1"),
                [vault_id],
                |row| row.get(0),
            )
            .unwrap()
    }

    fn roles_in(store: &SqliteStore, vault_id: &str) -> Vec<(ActorId, VaultRole)> {
        store
            .vault_grants(vault_id)
            .unwrap()
            .into_iter()
            .map(|grant| (grant.actor, grant.role))
            .collect()
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn opening_creates_a_private_directory_and_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/agent-vault/agent-vault.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .put_credentials(DEFAULT_VAULT_ID, &[credential("STRIPE_KEY", 1)])
            .unwrap();

        assert_eq!(mode_of(&dir.path().join("state")), 0o700);
        assert_eq!(mode_of(&dir.path().join("state/agent-vault")), 0o700);
        assert_eq!(mode_of(&path), 0o600);
        let wal = path.with_file_name("agent-vault.db-wal");
        let shm = path.with_file_name("agent-vault.db-shm");
        assert!(
            fs::metadata(&wal).unwrap().len() > 0,
            "the write went to the log"
        );
        assert_eq!(mode_of(&wal), 0o600);
        assert_eq!(mode_of(&shm), 0o600);
    }

    #[test]
    fn the_connection_is_durable_and_waits_for_other_processes() {
        let (_dir, store) = open_store();
        let connection = store.connection.lock().unwrap();
        let pragma = |name: &str| -> String {
            connection
                .query_row(&format!("PRAGMA {name}"), [], |row| {
                    row.get::<_, rusqlite::types::Value>(0)
                })
                .map(|value| match value {
                    rusqlite::types::Value::Integer(number) => number.to_string(),
                    rusqlite::types::Value::Text(text) => text,
                    other => panic!("unexpected pragma value {other:?}"),
                })
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "2", "FULL");
        assert_eq!(pragma("foreign_keys"), "1");
        assert_eq!(pragma("busy_timeout"), "5000");
    }

    #[test]
    fn reopening_applies_no_migration_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-vault.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create_vault("payments", None).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.vault("payments").unwrap().is_some());
        assert_eq!(
            store.vaults().unwrap().len(),
            2,
            "the default vault is seeded once"
        );
        let mut connection = store.connection.lock().unwrap();
        assert_eq!(migrate(&mut connection, &path).unwrap(), 0);
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);

        let fresh_path = dir.path().join("fresh.db");
        let mut fresh = Connection::open(&fresh_path).unwrap();
        assert_eq!(migrate(&mut fresh, &fresh_path).unwrap(), MIGRATIONS.len());
    }

    #[test]
    fn a_database_from_a_newer_agent_vault_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-vault.db");
        drop(SqliteStore::open(&path).unwrap());
        let newer = MIGRATIONS.len() as i64 + 1;
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();

        let error = SqliteStore::open(&path).unwrap_err();
        assert_eq!(
            error,
            StoreError::Database(format!(
                "the database {} was written by a newer agent-vault (schema version {newer}, \
                 this agent-vault knows up to {}): upgrade agent-vault to open it",
                path.display(),
                MIGRATIONS.len()
            ))
        );
    }

    #[test]
    fn a_healthy_database_passes_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-vault.db");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn the_master_key_is_stored_once_then_replaced() {
        let (_dir, store) = open_store();
        let password = MasterKeyRecord {
            key_version: 1,
            protection: KeyProtection::Password {
                salt: vec![7; 16],
                kdf: KdfParams::default(),
                wrapped: sealed(9),
            },
        };
        assert_eq!(store.master_key().unwrap(), None);
        assert_eq!(
            store.replace_master_key(&password).unwrap_err(),
            StoreError::NotFound("master key".into())
        );

        store.init_master_key(&password).unwrap();
        assert_eq!(store.master_key().unwrap(), Some(password.clone()));
        assert_eq!(
            store.init_master_key(&password).unwrap_err(),
            StoreError::Conflict("a master key".into())
        );

        let passwordless = MasterKeyRecord {
            key_version: 1,
            protection: KeyProtection::Passwordless { plain: vec![3; 32] },
        };
        store.replace_master_key(&passwordless).unwrap();
        assert_eq!(store.master_key().unwrap(), Some(passwordless));
        store.replace_master_key(&password).unwrap();
        assert_eq!(store.master_key().unwrap(), Some(password));
    }

    #[test]
    fn a_wrapped_key_must_carry_the_version_of_its_record() {
        let (_dir, store) = open_store();
        let record = MasterKeyRecord {
            key_version: 2,
            protection: KeyProtection::Password {
                salt: vec![7; 16],
                kdf: KdfParams::default(),
                wrapped: sealed(9),
            },
        };
        assert_eq!(
            store.init_master_key(&record).unwrap_err(),
            StoreError::Database("the wrapped data key must carry the record's key version".into())
        );
        assert_eq!(store.master_key().unwrap(), None);
    }

    #[test]
    fn vaults_are_created_once_with_their_admin() {
        let (_dir, store) = store_with_owner();
        let default = store.vault(DEFAULT_VAULT).unwrap().unwrap();
        assert_eq!(default.id, DEFAULT_VAULT_ID);

        let alice = ActorId::user("alice");
        let payments = store.create_vault("payments", Some(&alice)).unwrap();
        assert_eq!(payments.id.len(), 32);
        assert!(
            payments
                .id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(store.vault("payments").unwrap(), Some(payments.clone()));
        assert_eq!(
            store.vault_by_id(&payments.id).unwrap(),
            Some(payments.clone())
        );
        assert_eq!(
            roles_in(&store, &payments.id),
            vec![(alice, VaultRole::Admin)]
        );

        let analytics = store.create_vault("analytics", None).unwrap();
        assert!(store.vault_grants(&analytics.id).unwrap().is_empty());
        let names: Vec<String> = store
            .vaults()
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["analytics", "default", "payments"]);

        assert_eq!(
            store.create_vault("payments", None).unwrap_err(),
            StoreError::Conflict("vault payments".into())
        );
        assert_eq!(
            store
                .create_vault("ops", Some(&ActorId::user("mallory")))
                .unwrap_err(),
            StoreError::NotFound("user".into())
        );
        assert_eq!(
            store.vault("ops").unwrap(),
            None,
            "no vault without its admin"
        );
        assert_eq!(store.vault("nope").unwrap(), None);
        assert_eq!(store.vault_by_id("nope").unwrap(), None);
    }

    #[test]
    fn vault_settings_are_set_replaced_and_removed() {
        let (_dir, store) = open_store();
        assert_eq!(
            store.vault_setting(DEFAULT_VAULT_ID, "proxy.mode").unwrap(),
            None
        );
        store
            .set_vault_setting(DEFAULT_VAULT_ID, "proxy.mode", Some("strict"))
            .unwrap();
        store
            .set_vault_setting(DEFAULT_VAULT_ID, "proxy.mode", Some("open"))
            .unwrap();
        assert_eq!(
            store
                .vault_setting(DEFAULT_VAULT_ID, "proxy.mode")
                .unwrap()
                .as_deref(),
            Some("open")
        );
        store
            .set_vault_setting(DEFAULT_VAULT_ID, "proxy.mode", None)
            .unwrap();
        assert_eq!(
            store.vault_setting(DEFAULT_VAULT_ID, "proxy.mode").unwrap(),
            None
        );
        assert_eq!(
            store
                .set_vault_setting("nope", "proxy.mode", Some("open"))
                .unwrap_err(),
            StoreError::NotFound("vault".into())
        );
    }

    #[test]
    fn instance_settings_are_set_replaced_and_removed() {
        let (_dir, store) = open_store();
        let key = "agents_can_approve_proposals";
        assert_eq!(store.instance_setting(key).unwrap(), None);
        store.set_instance_setting(key, Some("true")).unwrap();
        store.set_instance_setting(key, Some("false")).unwrap();
        assert_eq!(
            store.instance_setting(key).unwrap().as_deref(),
            Some("false")
        );
        store.set_instance_setting(key, None).unwrap();
        assert_eq!(store.instance_setting(key).unwrap(), None);
        // Removing what is not there is not an error.
        store.set_instance_setting(key, None).unwrap();
    }

    #[test]
    fn deleting_a_vault_deletes_everything_in_it() {
        let (_dir, store) = store_with_owner();
        let alice = ActorId::user("alice");
        let payments = store.create_vault("payments", Some(&alice)).unwrap();
        let other = store.create_vault("other", Some(&alice)).unwrap();
        for vault in [&payments, &other] {
            store
                .put_credentials(&vault.id, &[credential("STRIPE_KEY", 1)])
                .unwrap();
            store.set_services(&vault.id, r#"{"services":[]}"#).unwrap();
            store
                .set_vault_setting(&vault.id, "proxy.mode", Some("strict"))
                .unwrap();
            store
                .insert_token(&scoped_token(
                    &vault.id,
                    &format!("session-{}", vault.name),
                    Some(alice.clone()),
                    None,
                ))
                .unwrap();
            store.insert_logs(&[log_entry(&vault.id, T0)]).unwrap();
        }
        store
            .create_invite(&invite(
                "invite-bob",
                "bob@example.com",
                InstanceRole::Member,
                &[
                    (&payments.id, VaultRole::Member),
                    (&other.id, VaultRole::Proxy),
                ],
            ))
            .unwrap();

        store.delete_vault(&payments.id).unwrap();

        assert_eq!(store.vault("payments").unwrap(), None);
        assert!(store.credential_keys(&payments.id).unwrap().is_empty());
        assert_eq!(store.services(&payments.id).unwrap(), None);
        assert_eq!(
            store.vault_setting(&payments.id, "proxy.mode").unwrap(),
            None
        );
        assert!(store.vault_grants(&payments.id).unwrap().is_empty());
        assert_eq!(store.token("session-payments").unwrap(), None);
        assert!(page(&store, &payments.id, None, None, 10).is_empty());
        for table in [
            "credentials",
            "services",
            "vault_settings",
            "vault_grants",
            "tokens",
            "request_logs",
            "user_invite_vaults",
        ] {
            assert_eq!(rows_of_vault(&store, table, &payments.id), 0, "{table}");
        }
        let invite = store.invite("invite-bob").unwrap().unwrap();
        assert_eq!(invite.vaults, [(other.id.clone(), VaultRole::Proxy)]);

        // The other vault keeps everything.
        assert_eq!(store.credential_keys(&other.id).unwrap(), ["STRIPE_KEY"]);
        assert!(store.services(&other.id).unwrap().is_some());
        assert!(
            store
                .vault_setting(&other.id, "proxy.mode")
                .unwrap()
                .is_some()
        );
        assert_eq!(store.vault_grants(&other.id).unwrap().len(), 1);
        assert!(store.token("session-other").unwrap().is_some());
        assert_eq!(page(&store, &other.id, None, None, 10).len(), 1);
    }

    #[test]
    fn the_default_vault_cannot_be_deleted() {
        let (_dir, store) = open_store();
        assert_eq!(
            store.delete_vault(DEFAULT_VAULT_ID).unwrap_err(),
            StoreError::Database("the default vault cannot be deleted".into())
        );
        assert!(store.vault(DEFAULT_VAULT).unwrap().is_some());
        assert_eq!(
            store.delete_vault("nope").unwrap_err(),
            StoreError::NotFound("vault".into())
        );
    }

    #[test]
    fn a_vault_is_renamed_unless_the_name_is_taken_or_it_is_the_default() {
        let (_dir, store) = store_with_owner();
        let payments = store.create_vault("payments", None).unwrap();
        store.create_vault("billing", None).unwrap();
        store.rename_vault(&payments.id, "payments-eu").unwrap();
        assert_eq!(store.vault("payments").unwrap(), None);
        assert_eq!(
            store.vault("payments-eu").unwrap().map(|vault| vault.id),
            Some(payments.id.clone())
        );
        assert_eq!(
            store.rename_vault(&payments.id, "billing").unwrap_err(),
            StoreError::Conflict("vault billing".into())
        );
        assert_eq!(
            store.rename_vault(DEFAULT_VAULT_ID, "main").unwrap_err(),
            StoreError::Database("the default vault cannot be renamed".into())
        );
        assert_eq!(
            store.rename_vault("nope", "x").unwrap_err(),
            StoreError::NotFound("vault".into())
        );
    }

    #[test]
    fn credentials_are_stored_listed_replaced_and_deleted() {
        let (_dir, store) = open_store();
        let vault = DEFAULT_VAULT_ID;
        store
            .put_credentials(
                vault,
                &[credential("STRIPE_KEY", 1), credential("GITHUB_TOKEN", 2)],
            )
            .unwrap();
        assert_eq!(
            store.credential_keys(vault).unwrap(),
            ["GITHUB_TOKEN", "STRIPE_KEY"]
        );
        assert_eq!(
            store.credential(vault, "STRIPE_KEY").unwrap(),
            Some(credential("STRIPE_KEY", 1))
        );

        store
            .put_credentials(vault, &[credential("STRIPE_KEY", 3)])
            .unwrap();
        assert_eq!(
            store.credential(vault, "STRIPE_KEY").unwrap(),
            Some(credential("STRIPE_KEY", 3))
        );
        assert_eq!(store.credential(vault, "MISSING").unwrap(), None);

        let deleted = store
            .delete_credentials(vault, &["STRIPE_KEY".into(), "MISSING".into()])
            .unwrap();
        assert_eq!(deleted, ["STRIPE_KEY"]);
        assert_eq!(store.credential_keys(vault).unwrap(), ["GITHUB_TOKEN"]);
    }

    #[test]
    fn storing_credentials_is_all_or_nothing() {
        let (_dir, store) = open_store();
        let vault = DEFAULT_VAULT_ID;
        store
            .put_credentials(vault, &[credential("STRIPE_KEY", 1)])
            .unwrap();
        // Make the second write of the batch fail, as a full disk would.
        store
            .connection
            .lock()
            .unwrap()
            .execute_batch(
                "CREATE TEMP TRIGGER fail_second BEFORE INSERT ON main.credentials
                 WHEN NEW.key = 'BROKEN' BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();

        let error = store
            .put_credentials(
                vault,
                &[credential("STRIPE_KEY", 2), credential("BROKEN", 3)],
            )
            .unwrap_err();
        assert_eq!(
            error,
            StoreError::Database("cannot store the credentials: disk full".into())
        );
        assert_eq!(
            store.credential(vault, "STRIPE_KEY").unwrap(),
            Some(credential("STRIPE_KEY", 1))
        );
        assert_eq!(store.credential_keys(vault).unwrap(), ["STRIPE_KEY"]);

        assert_eq!(
            store
                .put_credentials("nope", &[credential("STRIPE_KEY", 1)])
                .unwrap_err(),
            StoreError::NotFound("vault".into())
        );
    }

    #[test]
    fn the_services_document_is_replaced_whole() {
        let (_dir, store) = open_store();
        assert_eq!(store.services(DEFAULT_VAULT_ID).unwrap(), None);
        store
            .set_services(DEFAULT_VAULT_ID, r#"{"services":[1]}"#)
            .unwrap();
        store
            .set_services(DEFAULT_VAULT_ID, r#"{"services":[2]}"#)
            .unwrap();
        assert_eq!(
            store.services(DEFAULT_VAULT_ID).unwrap().as_deref(),
            Some(r#"{"services":[2]}"#)
        );
        assert_eq!(
            store.set_services("nope", "{}").unwrap_err(),
            StoreError::NotFound("vault".into())
        );
    }

    #[test]
    fn the_first_owner_is_created_once_and_administers_the_default_vault() {
        let (_dir, store) = open_store();
        assert!(!store.has_owner().unwrap());

        store
            .create_first_owner(&user("alice", InstanceRole::Member))
            .unwrap();
        assert!(store.has_owner().unwrap());
        assert_eq!(
            store.user("alice").unwrap().unwrap().role,
            InstanceRole::Owner
        );
        assert_eq!(
            store.grants_of(&ActorId::user("alice")).unwrap(),
            [grant(
                ActorId::user("alice"),
                DEFAULT_VAULT_ID,
                VaultRole::Admin
            )]
        );

        assert_eq!(
            store
                .create_first_owner(&user("bob", InstanceRole::Owner))
                .unwrap_err(),
            StoreError::Conflict("an owner".into())
        );
        assert_eq!(store.user("bob").unwrap(), None);
    }

    #[test]
    fn an_agent_is_renamed_and_its_role_changed_but_the_last_owner_stays() {
        let (_dir, store) = open_store();
        add_agent(&store, "ops", InstanceRole::Owner, &[]);
        add_agent(&store, "bot", InstanceRole::NoAccess, &[]);
        let ops_name = store.agent("ops").unwrap().unwrap().name;
        store.rename_agent("bot", "billing-bot", T0).unwrap();
        assert_eq!(store.agent("bot").unwrap().unwrap().name, "billing-bot");
        assert_eq!(
            store.rename_agent("bot", &ops_name, T0).unwrap_err(),
            StoreError::Conflict(format!("agent {ops_name}"))
        );
        assert_eq!(
            store.rename_agent("nope", "x", T0).unwrap_err(),
            StoreError::NotFound("agent".into())
        );

        store.set_agent_role("bot", InstanceRole::Member).unwrap();
        assert_eq!(
            store.agent("bot").unwrap().unwrap().role,
            InstanceRole::Member
        );
        assert_eq!(
            store
                .set_agent_role("ops", InstanceRole::Member)
                .unwrap_err(),
            StoreError::LastOwner
        );
        store.set_agent_role("bot", InstanceRole::Owner).unwrap();
        store.set_agent_role("ops", InstanceRole::Member).unwrap();
    }

    #[test]
    fn an_active_owner_agent_counts_as_an_owner() {
        let (_dir, store) = open_store();
        let mut revoked = agent("old", InstanceRole::Owner);
        revoked.status = AgentStatus::Revoked;
        revoked.revoked_at = Some(T0);
        store
            .create_agent(&revoked, &[], &agent_token("old", "old-token"))
            .unwrap();
        assert!(!store.has_owner().unwrap(), "a revoked agent is no owner");

        add_agent(&store, "ops", InstanceRole::Owner, &[]);
        assert!(store.has_owner().unwrap());
        assert_eq!(
            store
                .create_first_owner(&user("alice", InstanceRole::Owner))
                .unwrap_err(),
            StoreError::Conflict("an owner".into())
        );
    }

    #[test]
    fn two_processes_cannot_both_create_the_first_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-vault.db");
        let stores = [
            SqliteStore::open(&path).unwrap(),
            SqliteStore::open(&path).unwrap(),
        ];
        let start = Arc::new(Barrier::new(2));
        let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .zip(["alice", "bob"])
                .map(|(store, name)| {
                    let start = start.clone();
                    scope.spawn(move || {
                        start.wait();
                        store.create_first_owner(&user(name, InstanceRole::Owner))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect()
        });
        let conflicts = outcomes
            .iter()
            .filter(|outcome| **outcome == Err(StoreError::Conflict("an owner".into())))
            .count();
        assert_eq!(outcomes.iter().filter(|outcome| outcome.is_ok()).count(), 1);
        assert_eq!(conflicts, 1);
        assert_eq!(stores[0].users().unwrap().len(), 1);
    }

    #[test]
    fn users_are_found_by_id_and_email() {
        let (_dir, store) = store_with_owner();
        let bob = add_user(&store, "bob", InstanceRole::Member);
        assert_eq!(store.user("bob").unwrap(), Some(bob.clone()));
        assert_eq!(
            store.user_by_email("bob@example.com").unwrap(),
            Some(bob.clone())
        );
        assert_eq!(
            store.user_by_email("Bob@Example.com").unwrap(),
            Some(bob.clone())
        );
        let emails: Vec<String> = store
            .users()
            .unwrap()
            .into_iter()
            .map(|u| u.email)
            .collect();
        assert_eq!(emails, ["alice@example.com", "bob@example.com"]);

        store
            .insert_token(&login_token("bob", "bob-login", T0, 3600))
            .unwrap();
        store
            .insert_token(&login_token("alice", "alice-login", T0, 3600))
            .unwrap();
        store.set_user_password("bob", "$argon2id$new").unwrap();
        assert_eq!(
            store.user("bob").unwrap().unwrap().password_hash,
            "$argon2id$new"
        );
        assert!(
            store.user_sessions("bob").unwrap().is_empty(),
            "a new password ends the user's login sessions"
        );
        assert_eq!(store.user_sessions("alice").unwrap().len(), 1);
        store.set_user_role("bob", InstanceRole::NoAccess).unwrap();
        assert_eq!(
            store.user("bob").unwrap().unwrap().role,
            InstanceRole::NoAccess
        );

        let not_found = StoreError::NotFound("user".into());
        assert_eq!(store.user("nope").unwrap(), None);
        assert_eq!(store.set_user_password("nope", "x").unwrap_err(), not_found);
        assert_eq!(
            store
                .set_user_role("nope", InstanceRole::Member)
                .unwrap_err(),
            not_found
        );
        assert_eq!(store.delete_user("nope").unwrap_err(), not_found);
    }

    #[test]
    fn the_last_owner_cannot_be_demoted() {
        let (_dir, store) = store_with_owner();
        for role in [InstanceRole::Member, InstanceRole::NoAccess] {
            assert_eq!(
                store.set_user_role("alice", role).unwrap_err(),
                StoreError::LastOwner
            );
        }
        assert_eq!(
            store.user("alice").unwrap().unwrap().role,
            InstanceRole::Owner
        );
        store.set_user_role("alice", InstanceRole::Owner).unwrap();

        add_user(&store, "bob", InstanceRole::Owner);
        store.set_user_role("alice", InstanceRole::Member).unwrap();
        assert_eq!(
            store
                .set_user_role("bob", InstanceRole::Member)
                .unwrap_err(),
            StoreError::LastOwner
        );

        // An active owner agent is an owner too.
        add_agent(&store, "ops", InstanceRole::Owner, &[]);
        store.set_user_role("bob", InstanceRole::Member).unwrap();
        assert!(store.has_owner().unwrap());
    }

    #[test]
    fn the_last_owner_cannot_be_deleted() {
        let (_dir, store) = store_with_owner();
        assert_eq!(
            store.delete_user("alice").unwrap_err(),
            StoreError::LastOwner
        );
        assert!(store.user("alice").unwrap().is_some());

        add_user(&store, "bob", InstanceRole::Owner);
        store
            .set_grant(&grant(
                ActorId::user("bob"),
                DEFAULT_VAULT_ID,
                VaultRole::Admin,
            ))
            .unwrap();
        store.delete_user("alice").unwrap();
        assert_eq!(store.user("alice").unwrap(), None);
        assert_eq!(store.delete_user("bob").unwrap_err(), StoreError::LastOwner);
    }

    #[test]
    fn the_last_owner_agent_cannot_be_revoked_or_deleted() {
        let (_dir, store) = open_store();
        add_agent(&store, "ops", InstanceRole::Owner, &[]);
        assert_eq!(
            store.revoke_agent("ops", T0).unwrap_err(),
            StoreError::LastOwner
        );
        assert_eq!(
            store.delete_agent("ops").unwrap_err(),
            StoreError::LastOwner
        );
        assert_eq!(
            store.agent("ops").unwrap().unwrap().status,
            AgentStatus::Active
        );
        assert!(store.token("ops-token").unwrap().is_some());

        add_agent(&store, "ops2", InstanceRole::Owner, &[]);
        store.revoke_agent("ops", T0).unwrap();
        assert_eq!(
            store.revoke_agent("ops2", T0).unwrap_err(),
            StoreError::LastOwner
        );
        assert_eq!(
            store.delete_agent("ops2").unwrap_err(),
            StoreError::LastOwner
        );
        // A revoked owner agent no longer counts, so deleting it takes no owner away.
        store.delete_agent("ops").unwrap();
        assert_eq!(store.agent("ops").unwrap(), None);
    }

    #[test]
    fn the_last_admin_of_a_vault_cannot_be_demoted_or_removed() {
        let (_dir, store) = store_with_owner();
        let alice = ActorId::user("alice");
        for role in [VaultRole::Member, VaultRole::Proxy] {
            assert_eq!(
                store
                    .set_grant(&grant(alice.clone(), DEFAULT_VAULT_ID, role))
                    .unwrap_err(),
                StoreError::LastAdmin
            );
        }
        assert_eq!(
            store.remove_grant(&alice, DEFAULT_VAULT_ID).unwrap_err(),
            StoreError::LastAdmin
        );
        assert_eq!(
            roles_in(&store, DEFAULT_VAULT_ID),
            [(alice.clone(), VaultRole::Admin)]
        );

        add_user(&store, "bob", InstanceRole::Member);
        let bob = ActorId::user("bob");
        store
            .set_grant(&grant(bob.clone(), DEFAULT_VAULT_ID, VaultRole::Member))
            .unwrap();
        store
            .set_grant(&grant(bob.clone(), DEFAULT_VAULT_ID, VaultRole::Admin))
            .unwrap();
        store
            .set_grant(&grant(alice.clone(), DEFAULT_VAULT_ID, VaultRole::Proxy))
            .unwrap();
        store.remove_grant(&alice, DEFAULT_VAULT_ID).unwrap();
        assert_eq!(
            roles_in(&store, DEFAULT_VAULT_ID),
            [(bob.clone(), VaultRole::Admin)]
        );
        assert_eq!(
            store.remove_grant(&bob, DEFAULT_VAULT_ID).unwrap_err(),
            StoreError::LastAdmin
        );

        assert_eq!(
            store.remove_grant(&alice, DEFAULT_VAULT_ID).unwrap_err(),
            StoreError::NotFound("grant".into())
        );
        assert_eq!(
            store
                .set_grant(&grant(
                    ActorId::agent("ghost"),
                    DEFAULT_VAULT_ID,
                    VaultRole::Proxy
                ))
                .unwrap_err(),
            StoreError::NotFound("agent".into())
        );
        assert_eq!(
            store
                .set_grant(&grant(alice, "nope", VaultRole::Proxy))
                .unwrap_err(),
            StoreError::NotFound("vault".into())
        );
    }

    #[test]
    fn deleting_the_last_admin_of_a_vault_is_refused() {
        let (_dir, store) = store_with_owner();
        add_user(&store, "bob", InstanceRole::Member);
        let bob = ActorId::user("bob");
        let payments = store.create_vault("payments", Some(&bob)).unwrap();
        let ci = store.create_vault("ci", None).unwrap();
        add_agent(
            &store,
            "deployer",
            InstanceRole::Member,
            &[(&ci.id, VaultRole::Admin)],
        );

        assert_eq!(store.delete_user("bob").unwrap_err(), StoreError::LastAdmin);
        assert_eq!(
            store.delete_agent("deployer").unwrap_err(),
            StoreError::LastAdmin
        );
        assert!(store.user("bob").unwrap().is_some());
        assert!(store.agent("deployer").unwrap().is_some());

        // Once someone else administers the vaults, both can go.
        let alice = ActorId::user("alice");
        store
            .set_grant(&grant(alice.clone(), &payments.id, VaultRole::Admin))
            .unwrap();
        store
            .set_grant(&grant(alice.clone(), &ci.id, VaultRole::Admin))
            .unwrap();
        store.delete_user("bob").unwrap();
        store.delete_agent("deployer").unwrap();
        assert_eq!(
            roles_in(&store, &payments.id),
            [(alice.clone(), VaultRole::Admin)]
        );
        assert_eq!(roles_in(&store, &ci.id), [(alice, VaultRole::Admin)]);
    }

    #[test]
    fn agents_are_created_with_their_grants_and_first_token() {
        let (_dir, store) = store_with_owner();
        add_agent(
            &store,
            "deployer",
            InstanceRole::Member,
            &[(DEFAULT_VAULT_ID, VaultRole::Proxy)],
        );
        let deployer = agent("deployer", InstanceRole::Member);
        assert_eq!(store.agent("deployer").unwrap(), Some(deployer.clone()));
        assert_eq!(
            store.agent_by_name("deployer-bot").unwrap(),
            Some(deployer.clone())
        );
        assert_eq!(store.agents().unwrap(), [deployer]);
        assert_eq!(
            store.grants_of(&ActorId::agent("deployer")).unwrap(),
            [grant(
                ActorId::agent("deployer"),
                DEFAULT_VAULT_ID,
                VaultRole::Proxy
            )]
        );
        assert_eq!(
            store.token("deployer-token").unwrap(),
            Some(agent_token("deployer", "deployer-token"))
        );

        // Same name: nothing of the second agent is kept.
        let mut twin = agent("twin", InstanceRole::Member);
        twin.name = "deployer-bot".into();
        assert_eq!(
            store
                .create_agent(&twin, &[], &agent_token("twin", "twin-token"))
                .unwrap_err(),
            StoreError::Conflict("agent deployer-bot".into())
        );
        assert_eq!(store.token("twin-token").unwrap(), None);

        let grants = [grant(ActorId::agent("lost"), "nope", VaultRole::Proxy)];
        assert_eq!(
            store
                .create_agent(
                    &agent("lost", InstanceRole::Member),
                    &grants,
                    &agent_token("lost", "lost-token")
                )
                .unwrap_err(),
            StoreError::NotFound("vault".into())
        );
        assert_eq!(store.agent("lost").unwrap(), None);
        assert_eq!(store.agent_by_name("nope").unwrap(), None);
    }

    #[test]
    fn revoking_an_agent_ends_its_tokens_and_the_sessions_it_minted() {
        let (_dir, store) = store_with_owner();
        add_agent(
            &store,
            "deployer",
            InstanceRole::Member,
            &[(DEFAULT_VAULT_ID, VaultRole::Member)],
        );
        let minted = scoped_token(
            DEFAULT_VAULT_ID,
            "minted",
            Some(ActorId::agent("deployer")),
            None,
        );
        let alices = scoped_token(
            DEFAULT_VAULT_ID,
            "alices",
            Some(ActorId::user("alice")),
            None,
        );
        store.insert_token(&minted).unwrap();
        store.insert_token(&alices).unwrap();

        store.revoke_agent("deployer", T0 + 5).unwrap();
        let revoked = store.agent("deployer").unwrap().unwrap();
        assert_eq!(revoked.status, AgentStatus::Revoked);
        assert_eq!(revoked.revoked_at, Some(T0 + 5));
        assert_eq!(store.token("deployer-token").unwrap(), None);
        assert_eq!(store.token("minted").unwrap(), None);
        assert_eq!(store.token("alices").unwrap(), Some(alices));
        assert_eq!(
            store.grants_of(&ActorId::agent("deployer")).unwrap().len(),
            1
        );

        store.revoke_agent("deployer", T0 + 9).unwrap();
        assert_eq!(
            store.agent("deployer").unwrap().unwrap().revoked_at,
            Some(T0 + 5)
        );
        assert_eq!(
            store.revoke_agent("nope", T0).unwrap_err(),
            StoreError::NotFound("agent".into())
        );
    }

    #[test]
    fn deleting_an_agent_takes_its_grants_and_tokens() {
        let (_dir, store) = store_with_owner();
        add_agent(
            &store,
            "deployer",
            InstanceRole::Member,
            &[(DEFAULT_VAULT_ID, VaultRole::Member)],
        );
        store
            .insert_token(&scoped_token(
                DEFAULT_VAULT_ID,
                "minted",
                Some(ActorId::agent("deployer")),
                None,
            ))
            .unwrap();

        store.delete_agent("deployer").unwrap();
        assert_eq!(store.agent("deployer").unwrap(), None);
        assert!(
            store
                .grants_of(&ActorId::agent("deployer"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.token("deployer-token").unwrap(), None);
        assert_eq!(store.token("minted").unwrap(), None);
        assert_eq!(
            store.delete_agent("deployer").unwrap_err(),
            StoreError::NotFound("agent".into())
        );
    }

    #[test]
    fn rotating_an_agent_token_replaces_its_tokens_and_reactivates_it() {
        let (_dir, store) = store_with_owner();
        add_agent(&store, "deployer", InstanceRole::Member, &[]);
        store
            .insert_token(&agent_token("deployer", "second"))
            .unwrap();
        store
            .insert_token(&scoped_token(
                DEFAULT_VAULT_ID,
                "minted",
                Some(ActorId::agent("deployer")),
                None,
            ))
            .unwrap();

        store
            .rotate_agent_token("deployer", &agent_token("deployer", "rotated"))
            .unwrap();
        assert_eq!(store.token("deployer-token").unwrap(), None);
        assert_eq!(store.token("second").unwrap(), None);
        assert_eq!(store.token("minted").unwrap(), None);
        assert!(store.token("rotated").unwrap().is_some());

        store.revoke_agent("deployer", T0).unwrap();
        assert_eq!(store.token("rotated").unwrap(), None);
        store
            .rotate_agent_token("deployer", &agent_token("deployer", "again"))
            .unwrap();
        let agent = store.agent("deployer").unwrap().unwrap();
        assert_eq!(
            (agent.status, agent.revoked_at),
            (AgentStatus::Active, None)
        );
        assert!(store.token("again").unwrap().is_some());

        assert_eq!(
            store
                .rotate_agent_token("deployer", &agent_token("other", "x"))
                .unwrap_err(),
            StoreError::Database("a rotated token must be an agent token of that agent".into())
        );
        assert_eq!(
            store
                .rotate_agent_token("ghost", &agent_token("ghost", "x"))
                .unwrap_err(),
            StoreError::NotFound("agent".into())
        );
    }

    #[test]
    fn deleting_a_user_takes_its_grants_sessions_and_minted_tokens() {
        let (_dir, store) = store_with_owner();
        add_user(&store, "bob", InstanceRole::Member);
        let bob = ActorId::user("bob");
        store
            .set_grant(&grant(bob.clone(), DEFAULT_VAULT_ID, VaultRole::Member))
            .unwrap();
        store
            .insert_token(&login_token("bob", "bob-login", T0, 3600))
            .unwrap();
        store
            .insert_token(&scoped_token(
                DEFAULT_VAULT_ID,
                "bobs",
                Some(bob.clone()),
                None,
            ))
            .unwrap();
        store
            .insert_token(&scoped_token(
                DEFAULT_VAULT_ID,
                "alices",
                Some(ActorId::user("alice")),
                None,
            ))
            .unwrap();

        store.delete_user("bob").unwrap();
        assert_eq!(store.user("bob").unwrap(), None);
        assert!(store.grants_of(&bob).unwrap().is_empty());
        assert!(store.user_sessions("bob").unwrap().is_empty());
        assert_eq!(store.token("bob-login").unwrap(), None);
        assert_eq!(store.token("bobs").unwrap(), None);
        assert!(store.token("alices").unwrap().is_some());
    }

    #[test]
    fn an_accepted_invite_creates_the_user_with_its_grants() {
        let (_dir, store) = store_with_owner();
        let payments = store
            .create_vault("payments", Some(&ActorId::user("alice")))
            .unwrap();
        let bobs_invite = invite(
            "invite-bob",
            "bob@example.com",
            InstanceRole::Member,
            &[
                (DEFAULT_VAULT_ID, VaultRole::Member),
                (&payments.id, VaultRole::Proxy),
            ],
        );
        store.create_invite(&bobs_invite).unwrap();
        let mut expected = bobs_invite.clone();
        expected.vaults.sort();
        assert_eq!(store.invite("invite-bob").unwrap(), Some(expected.clone()));
        assert_eq!(store.invites().unwrap(), [expected]);
        assert_eq!(
            store.create_invite(&bobs_invite).unwrap_err(),
            StoreError::Conflict("invite".into())
        );

        let bob = user("bob", InstanceRole::Member);
        store.accept_invite("invite-bob", &bob).unwrap();
        assert_eq!(store.user("bob").unwrap(), Some(bob.clone()));
        let mut grants = store.grants_of(&ActorId::user("bob")).unwrap();
        grants.sort_by(|a, b| a.vault_id.cmp(&b.vault_id));
        let mut expected_grants = vec![
            grant(ActorId::user("bob"), DEFAULT_VAULT_ID, VaultRole::Member),
            grant(ActorId::user("bob"), &payments.id, VaultRole::Proxy),
        ];
        expected_grants.sort_by(|a, b| a.vault_id.cmp(&b.vault_id));
        assert_eq!(grants, expected_grants);
        assert_eq!(
            store.invite("invite-bob").unwrap().unwrap().status,
            InviteStatus::Accepted
        );

        assert_eq!(
            store
                .accept_invite("invite-bob", &user("bob2", InstanceRole::Member))
                .unwrap_err(),
            StoreError::NotFound("invite".into())
        );
        assert_eq!(store.invite("nope").unwrap(), None);
    }

    #[test]
    fn an_expired_or_revoked_invite_cannot_be_accepted() {
        let (_dir, store) = store_with_owner();
        let mut expired = invite(
            "expired",
            "bob@example.com",
            InstanceRole::Member,
            &[(DEFAULT_VAULT_ID, VaultRole::Member)],
        );
        expired.expires_at = now() - 1;
        store.create_invite(&expired).unwrap();
        assert_eq!(
            store
                .accept_invite("expired", &user("bob", InstanceRole::Member))
                .unwrap_err(),
            StoreError::NotFound("invite".into())
        );
        assert_eq!(store.user("bob").unwrap(), None);
        assert!(store.grants_of(&ActorId::user("bob")).unwrap().is_empty());

        store
            .create_invite(&invite(
                "revoked",
                "carol@example.com",
                InstanceRole::Member,
                &[],
            ))
            .unwrap();
        store.revoke_invite("revoked").unwrap();
        assert_eq!(
            store.invite("revoked").unwrap().unwrap().status,
            InviteStatus::Revoked
        );
        assert_eq!(
            store
                .accept_invite("revoked", &user("carol", InstanceRole::Member))
                .unwrap_err(),
            StoreError::NotFound("invite".into())
        );
        assert_eq!(
            store.revoke_invite("revoked").unwrap_err(),
            StoreError::NotFound("invite".into())
        );
        assert_eq!(
            store.revoke_invite("nope").unwrap_err(),
            StoreError::NotFound("invite".into())
        );
    }

    #[test]
    fn accepting_an_invite_is_all_or_nothing() {
        let (_dir, store) = store_with_owner();
        let payments = store
            .create_vault("payments", Some(&ActorId::user("alice")))
            .unwrap();
        store
            .create_invite(&invite(
                "again",
                "alice@example.com",
                InstanceRole::Member,
                &[(&payments.id, VaultRole::Member)],
            ))
            .unwrap();
        let mut second_alice = user("alice2", InstanceRole::Member);
        second_alice.email = "alice@example.com".into();

        assert_eq!(
            store.accept_invite("again", &second_alice).unwrap_err(),
            StoreError::Conflict("a user with this email".into())
        );
        assert_eq!(store.user("alice2").unwrap(), None);
        assert!(
            store
                .grants_of(&ActorId::user("alice2"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.invite("again").unwrap().unwrap().status,
            InviteStatus::Pending
        );
    }

    #[test]
    fn an_invite_to_a_deleted_vault_still_works_for_the_others() {
        let (_dir, store) = store_with_owner();
        let payments = store
            .create_vault("payments", Some(&ActorId::user("alice")))
            .unwrap();
        store
            .create_invite(&invite(
                "invite-bob",
                "bob@example.com",
                InstanceRole::Member,
                &[
                    (DEFAULT_VAULT_ID, VaultRole::Proxy),
                    (&payments.id, VaultRole::Member),
                ],
            ))
            .unwrap();
        store.delete_vault(&payments.id).unwrap();

        store
            .accept_invite("invite-bob", &user("bob", InstanceRole::Member))
            .unwrap();
        assert_eq!(
            store.grants_of(&ActorId::user("bob")).unwrap(),
            [grant(
                ActorId::user("bob"),
                DEFAULT_VAULT_ID,
                VaultRole::Proxy
            )]
        );
        assert_eq!(
            store
                .create_invite(&invite(
                    "to-nowhere",
                    "carol@example.com",
                    InstanceRole::Member,
                    &[("nope", VaultRole::Proxy)]
                ))
                .unwrap_err(),
            StoreError::NotFound("vault".into())
        );
        assert_eq!(store.invite("to-nowhere").unwrap(), None);
    }

    #[test]
    fn tokens_are_found_touched_and_deleted() {
        let (_dir, store) = store_with_owner();
        let login = login_token("alice", "alice-login", T0, 3600);
        store.insert_token(&login).unwrap();
        assert_eq!(store.token("alice-login").unwrap(), Some(login.clone()));
        assert_eq!(
            store.user_sessions("alice").unwrap(),
            std::slice::from_ref(&login)
        );
        assert_eq!(
            store.insert_token(&login).unwrap_err(),
            StoreError::Conflict("token".into())
        );
        assert_eq!(
            store
                .insert_token(&login_token("ghost", "ghost-login", T0, 60))
                .unwrap_err(),
            StoreError::NotFound("user".into())
        );

        store.touch_token("alice-login", T0 + 60).unwrap();
        store.touch_token("alice-login", T0 + 30).unwrap();
        assert_eq!(
            store.token("alice-login").unwrap().unwrap().last_used_at,
            T0 + 60
        );

        store.delete_token("alice-login").unwrap();
        assert_eq!(store.token("alice-login").unwrap(), None);
        let not_found = StoreError::NotFound("token".into());
        assert_eq!(store.delete_token("alice-login").unwrap_err(), not_found);
        assert_eq!(store.touch_token("alice-login", T0).unwrap_err(), not_found);
    }

    #[test]
    fn scoped_tokens_lists_the_live_sessions_of_one_vault() {
        let (_dir, store) = store_with_owner();
        let payments = store
            .create_vault("payments", Some(&ActorId::user("alice")))
            .unwrap();
        let alice = Some(ActorId::user("alice"));
        let forever = scoped_token(DEFAULT_VAULT_ID, "forever", alice.clone(), None);
        let later = scoped_token(DEFAULT_VAULT_ID, "later", alice.clone(), Some(T0 + 1));
        for token in [
            forever.clone(),
            later.clone(),
            scoped_token(DEFAULT_VAULT_ID, "ends-now", alice.clone(), Some(T0)),
            scoped_token(&payments.id, "elsewhere", alice.clone(), None),
        ] {
            store.insert_token(&token).unwrap();
        }
        assert_eq!(
            store.scoped_tokens(DEFAULT_VAULT_ID, T0).unwrap(),
            [forever, later]
        );

        assert!(
            !store
                .delete_scoped_token(&payments.id, "pub-forever")
                .unwrap()
        );
        assert!(
            store
                .delete_scoped_token(DEFAULT_VAULT_ID, "pub-forever")
                .unwrap()
        );
        assert!(
            !store
                .delete_scoped_token(DEFAULT_VAULT_ID, "pub-forever")
                .unwrap()
        );
        assert_eq!(store.token("forever").unwrap(), None);
    }

    #[test]
    fn expired_and_idle_tokens_are_deleted() {
        let (_dir, store) = store_with_owner();
        add_agent(&store, "deployer", InstanceRole::Member, &[]);
        let alice = Some(ActorId::user("alice"));
        for token in [
            scoped_token(DEFAULT_VAULT_ID, "expired", alice.clone(), Some(T0 - 1)),
            scoped_token(DEFAULT_VAULT_ID, "valid", alice.clone(), Some(T0 + 60)),
            login_token("alice", "idle", T0 - 61, 60),
            login_token("alice", "just-in-time", T0 - 60, 60),
            login_token("alice", "fresh", T0 - 1, 60),
        ] {
            store.insert_token(&token).unwrap();
        }

        assert_eq!(store.delete_expired_tokens(T0).unwrap(), 2);
        for gone in ["expired", "idle"] {
            assert_eq!(store.token(gone).unwrap(), None, "{gone}");
        }
        for kept in ["valid", "just-in-time", "fresh", "deployer-token"] {
            assert!(store.token(kept).unwrap().is_some(), "{kept}");
        }
    }

    #[test]
    fn log_entries_get_increasing_ids_and_keep_their_fields() {
        let (_dir, store) = open_store();
        let mut first = log_entry(DEFAULT_VAULT_ID, T0);
        first.id = 999;
        let mut second = log_entry(DEFAULT_VAULT_ID, T0 + 1);
        second.credential_keys = vec![];
        second.matched_service = None;
        second.error_code = Some("no_service".into());
        second.actor = None;
        second.status = 404;
        second.latency_ms = u64::MAX;
        let deleted_vault = log_entry("gone", T0);

        store
            .insert_logs(&[first.clone(), deleted_vault, second.clone()])
            .unwrap();

        let entries = store
            .logs(
                DEFAULT_VAULT_ID,
                &LogQuery {
                    before: None,
                    after: None,
                    limit: 10,
                    ..LogQuery::default()
                },
            )
            .unwrap();
        assert_eq!(
            entries.len(),
            2,
            "the entry of a vault that no longer exists is dropped"
        );
        assert!(entries[0].id > entries[1].id);
        first.id = entries[1].id;
        second.id = entries[0].id;
        second.latency_ms = i64::MAX as u64;
        assert_eq!(entries, [second, first]);
    }

    #[test]
    fn the_journal_mark_moves_with_its_rows_and_never_back() {
        let (_dir, store) = open_store();
        assert_eq!(store.journaled_through().unwrap(), 0);
        let entry = log_entry(DEFAULT_VAULT_ID, T0);
        store
            .insert_journaled_logs(&[entry.clone(), entry.clone()], 7)
            .unwrap();
        assert_eq!(store.journaled_through().unwrap(), 7);
        // A replay of older numbers, or rows from elsewhere, leave it where it is.
        store
            .insert_journaled_logs(std::slice::from_ref(&entry), 5)
            .unwrap();
        store.insert_logs(&[entry]).unwrap();
        assert_eq!(store.journaled_through().unwrap(), 7);
        // A batch whose entries all belong to deleted vaults still moves it.
        store
            .insert_journaled_logs(&[log_entry("gone", T0)], 9)
            .unwrap();
        assert_eq!(store.journaled_through().unwrap(), 9);
    }

    #[test]
    fn a_large_batch_is_written_whole_and_in_order() {
        let (_dir, store) = open_store();
        // Two full multi-row statements and a remainder, with a deleted vault's entry among
        // them.
        let count = 2 * LOG_INSERT_ROWS + 5;
        let mut batch: Vec<LogEntry> = (0..count)
            .map(|n| {
                let mut entry = log_entry(DEFAULT_VAULT_ID, T0);
                entry.path = format!("/v1/items/{n}");
                entry.status = 200 + n as u16;
                entry
            })
            .collect();
        batch.insert(LOG_INSERT_ROWS - 1, log_entry("gone", T0));

        store.insert_logs(&batch).unwrap();

        let query = LogQuery {
            before: None,
            after: None,
            limit: 1000,
            ..LogQuery::default()
        };
        let mut written = store.logs(DEFAULT_VAULT_ID, &query).unwrap();
        written.reverse();
        let paths: Vec<&str> = written.iter().map(|entry| entry.path.as_str()).collect();
        let expected: Vec<String> = (0..count).map(|n| format!("/v1/items/{n}")).collect();
        assert_eq!(paths, expected);
        assert!(written.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert_eq!(written.last().unwrap().status, 200 + count as u16 - 1);
    }

    #[test]
    fn the_request_log_pages_newest_first_by_id_cursor() {
        let (_dir, store) = open_store();
        let payments = store.create_vault("payments", None).unwrap();
        let mut batch = Vec::new();
        for n in 0..10 {
            batch.push(log_entry(DEFAULT_VAULT_ID, T0 + n));
            batch.push(log_entry(&payments.id, T0 + n));
        }
        store.insert_logs(&batch).unwrap();
        let all = page(&store, DEFAULT_VAULT_ID, None, None, 100);
        assert_eq!(all.len(), 10);
        let id = |newest_first: usize| all[newest_first];

        assert_eq!(
            page(&store, DEFAULT_VAULT_ID, None, None, 3),
            [id(0), id(1), id(2)]
        );
        assert_eq!(
            page(&store, DEFAULT_VAULT_ID, Some(id(2)), None, 3),
            [id(3), id(4), id(5)]
        );
        assert_eq!(
            page(&store, DEFAULT_VAULT_ID, Some(id(8)), None, 3),
            [id(9)]
        );
        // Following new entries: the ones right after the cursor, none skipped.
        assert_eq!(
            page(&store, DEFAULT_VAULT_ID, None, Some(id(6)), 3),
            [id(3), id(4), id(5)]
        );
        assert_eq!(
            page(&store, DEFAULT_VAULT_ID, None, Some(id(2)), 3),
            [id(0), id(1)]
        );
        assert!(page(&store, DEFAULT_VAULT_ID, None, Some(id(0)), 3).is_empty());
        assert_eq!(
            page(&store, DEFAULT_VAULT_ID, Some(id(1)), Some(id(4)), 10),
            [id(2), id(3)]
        );
        assert!(page(&store, DEFAULT_VAULT_ID, None, None, 0).is_empty());
    }

    #[test]
    fn pruning_drops_old_entries_then_caps_each_vault() {
        let (_dir, store) = open_store();
        let payments = store.create_vault("payments", None).unwrap();
        let created = [T0 - 100, T0 - 100, T0, T0, T0, T0];
        let entries: Vec<LogEntry> = created
            .iter()
            .map(|at| log_entry(DEFAULT_VAULT_ID, *at))
            .collect();
        store.insert_logs(&entries).unwrap();
        store
            .insert_logs(&[
                log_entry(&payments.id, T0),
                log_entry(&payments.id, T0),
                log_entry(&payments.id, T0),
            ])
            .unwrap();
        let newest_three = page(&store, DEFAULT_VAULT_ID, None, None, 3);

        // Two too old, then one over the cap of three in the default vault.
        assert_eq!(store.prune_logs(T0 - 50, 3).unwrap(), 3);
        assert_eq!(
            page(&store, DEFAULT_VAULT_ID, None, None, 100),
            newest_three
        );
        assert_eq!(page(&store, &payments.id, None, None, 100).len(), 3);

        assert_eq!(store.prune_logs(T0 - 50, 0).unwrap(), 0, "0: no row cap");
        assert_eq!(store.prune_logs(T0 + 1, 0).unwrap(), 6);
        assert!(page(&store, &payments.id, None, None, 100).is_empty());
    }
}
