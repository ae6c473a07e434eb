//! Opening the SQLite file: [`SqliteStore::open`] creates it private to the user before
//! SQLite touches it ([`create_private_file`]), sets the pragmas of every connection
//! ([`configure`]) and brings the schema up to date ([`migrate`]) with the numbered
//! migrations of `host/src/store/migrations/`, tracked by `PRAGMA user_version`.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, ffi};

use super::errors::describe;
use super::{BUSY_TIMEOUT, SqliteStore};
use crate::store::{Result, StoreError};

/// The schema, in order: version `n` is the `n`-th entry. Never edit a released migration;
/// add the next number.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    ("001_initial", include_str!("../migrations/001_initial.sql")),
    (
        "002_agent_invites",
        include_str!("../migrations/002_agent_invites.sql"),
    ),
    (
        "003_proposals",
        include_str!("../migrations/003_proposals.sql"),
    ),
    ("004_mitm_ca", include_str!("../migrations/004_mitm_ca.sql")),
    (
        "005_request_log_by_id",
        include_str!("../migrations/005_request_log_by_id.sql"),
    ),
    (
        "006_instance_settings",
        include_str!("../migrations/006_instance_settings.sql"),
    ),
    (
        "007_proposal_creators",
        include_str!("../migrations/007_proposal_creators.sql"),
    ),
    (
        "008_device_tokens",
        include_str!("../migrations/008_device_tokens.sql"),
    ),
    (
        "009_request_log_journal",
        include_str!("../migrations/009_request_log_journal.sql"),
    ),
];

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
pub(super) fn migrate(connection: &mut Connection, path: &Path) -> Result<usize> {
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
