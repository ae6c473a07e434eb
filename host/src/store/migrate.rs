//! Moving an instance from SQLite to PostgreSQL (`agent-vault migrate-db`): every table of
//! the SQLite file copied into a PostgreSQL database, values byte for byte. Start at
//! [`sqlite_to_postgres`]; the tables and how each value crosses are in `migrate/tables.rs`,
//! the check of both schemas in `migrate/schema.rs`.
//!
//! Nothing is decrypted or re-encrypted: credentials, the transparent proxy's CA key and the
//! data key itself stay sealed (the data key under the master password, in the master-key
//! row), so the copy needs no password and the servers on PostgreSQL unlock the same key with
//! the same password. Tokens stay SHA-256 hashes; the request log keeps its ids and the
//! journal position that goes with them (`request_log/journal.rs`: SQLite's one mark becomes
//! the mark of the source data directory's journal, the one a server on that directory
//! replays), and PostgreSQL's id sequence is set past every id SQLite ever gave, as SQLite's
//! `AUTOINCREMENT` would.
//!
//! **The source** must be an agent-vault database. One at an older schema is brought up to
//! date first, by the same migrations a server runs when it starts on it; one written by a
//! newer agent-vault is refused. It is read in one read transaction: a consistent snapshot,
//! even while a server writes to it (SQLite's write-ahead log lets readers and a writer run
//! together). What a server writes after the snapshot is not copied, so the servers on
//! PostgreSQL should take over from a stopped one.
//!
//! **The target** gets its schema from the PostgreSQL backend's own migrations
//! ([`PostgresStore::open`]). Then one transaction locks every table (so no server on that
//! database reads or writes halfway), checks that the database holds no instance (beyond
//! what its migrations create: the default vault) unless told to
//! replace it, empties the tables, copies each, sets the request log's id sequence, counts
//! every table on both sides, and commits. Any failure rolls it back: the target keeps what
//! it had (a new database keeps its schema and no rows).
//!
//! Messages name the target by its URL without the password ([`redact_url`]) and carry
//! PostgreSQL's primary message only, whose details could quote a value.

mod schema;
mod tables;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use self::tables::{TABLES, Table, Value};
use super::StoreError;
use super::postgres::{PostgresStore, redact_url};
use super::sqlite::{DEFAULT_VAULT_ID, SqliteStore};

/// The request log's journal marks: copied apart from [`TABLES`], see
/// [`carry_journal_mark`].
const JOURNAL_TABLE: &str = "request_log_journal";

/// How long the copy waits for the target's tables (a server on that database holding them
/// in a transaction) before it gives up, and for the SQLite file's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What a copy did.
#[derive(Debug)]
pub struct Copied {
    /// Every table, in the order copied, and its rows (counted in both databases).
    pub tables: Vec<(&'static str, u64)>,
    /// The source's schema version before the copy brought it up to date, if it was older.
    pub upgraded_from: Option<i64>,
    /// What the target held and the copy replaced (empty for an empty target).
    pub replaced: Vec<(&'static str, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("there is no SQLite database at {}", .0.display())]
    NoSource(PathBuf),
    #[error("{} is not an agent-vault database: it has none of agent-vault's tables", .0.display())]
    NotAgentVault(PathBuf),
    #[error("cannot read the SQLite database {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error(
        "the {side} database does not have the schema this agent-vault copies ({detail}); \
         nothing was copied"
    )]
    Schema { side: &'static str, detail: String },
    #[error(
        "the database {database} already holds an agent-vault instance ({}); nothing was copied",
        listed(found)
    )]
    NotEmpty {
        database: String,
        found: Vec<(&'static str, u64)>,
    },
    #[error(
        "cannot copy into the database {database}: {message}; nothing was copied (the \
         transaction was rolled back)"
    )]
    Write { database: String, message: String },
    #[error(
        "the copy of table {table} does not add up ({in_sqlite} rows in SQLite, {written} \
         written, {in_postgres} in PostgreSQL); nothing was copied (the transaction was \
         rolled back)"
    )]
    Count {
        table: &'static str,
        in_sqlite: u64,
        written: u64,
        in_postgres: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `table: rows, ...`.
pub fn listed(tables: &[(&'static str, u64)]) -> String {
    let parts: Vec<String> = tables
        .iter()
        .map(|(table, rows)| format!("{table}: {rows}"))
        .collect();
    parts.join(", ")
}

/// Copy the instance in the SQLite file `source` into the PostgreSQL database `target_url`;
/// the request log's journal mark becomes that of `journal` (the id of the journal in the
/// source's data directory). A target that already holds an instance is refused unless
/// `replace`, which deletes what it holds, in the same transaction as the copy. Servers
/// running on the target hear of the copy when it commits, as of any write
/// (`postgres/changes.rs`).
pub fn sqlite_to_postgres(
    source: &Path,
    target_url: &str,
    replace: bool,
    journal: &str,
) -> Result<Copied, MigrateError> {
    let upgraded_from = prepare_source(source)?;
    let mut connection = open_existing(source)?;
    let snapshot = connection
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(read_error(source, "begin reading"))?;
    check_source(source, &snapshot)?;

    let target = PostgresStore::open(target_url)?;
    let database = redact_url(target_url);
    let (tables, replaced) = target.with_client("copy into the database", |client| {
        copy(&snapshot, source, client, &database, (replace, journal))
    })??;
    Ok(Copied {
        tables,
        upgraded_from,
        replaced,
    })
}

/// Refuse what is not an agent-vault database, and bring an older one up to date as a
/// server's start would (a newer one is refused there); the version it had, if older.
fn prepare_source(path: &Path) -> Result<Option<i64>, MigrateError> {
    if !path.is_file() {
        return Err(MigrateError::NoSource(path.to_owned()));
    }
    let version: i64 = open_existing(path)?
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(read_error(path, "read the schema version"))?;
    if version == 0 {
        return Err(MigrateError::NotAgentVault(path.to_owned()));
    }
    drop(SqliteStore::open(path)?);
    Ok((version < schema::SQLITE_VERSION).then_some(version))
}

/// A connection to the existing file (never created), that only reads.
fn open_existing(path: &Path) -> Result<Connection, MigrateError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(read_error(path, "open it"))?;
    connection
        .busy_timeout(LOCK_WAIT)
        .and_then(|()| connection.pragma_update(None, "query_only", true))
        .map_err(read_error(path, "open it"))?;
    Ok(connection)
}

fn read_error(path: &Path, what: &str) -> impl Fn(rusqlite::Error) -> MigrateError {
    let (path, what) = (path.to_owned(), what.to_owned());
    move |error| MigrateError::Read {
        path: path.clone(),
        message: format!("cannot {what}: {error}"),
    }
}

/// The snapshot's schema is the one the copy knows (its first read, which fixes the
/// snapshot).
fn check_source(path: &Path, snapshot: &rusqlite::Transaction<'_>) -> Result<(), MigrateError> {
    let found = schema::sqlite_columns(snapshot).map_err(read_error(path, "read its schema"))?;
    let version: i64 = snapshot
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(read_error(path, "read the schema version"))?;
    let mismatch = |detail: String| MigrateError::Schema {
        side: "SQLite",
        detail,
    };
    if version != schema::SQLITE_VERSION {
        return Err(mismatch(format!(
            "schema version {version}, where this copy reads version {}",
            schema::SQLITE_VERSION
        )));
    }
    match schema::difference(&found, tables::Kind::sqlite_type) {
        Some(detail) => Err(mismatch(detail)),
        None => Ok(()),
    }
}

/// Tables and their rows.
type Counts = Vec<(&'static str, u64)>;

/// The copy, in one transaction of the target: what it copied, and what it replaced.
fn copy(
    source: &rusqlite::Transaction<'_>,
    path: &Path,
    client: &mut postgres::Client,
    database: &str,
    (replace, journal): (bool, &str),
) -> Result<(Counts, Counts), MigrateError> {
    let write = |what: &str| {
        let what = what.to_owned();
        move |error: postgres::Error| MigrateError::Write {
            database: database.to_owned(),
            message: format!("cannot {what}: {}", describe(&error)),
        }
    };
    let all = TABLES
        .iter()
        .map(|table| table.name)
        .chain([JOURNAL_TABLE])
        .collect::<Vec<_>>()
        .join(", ");
    let mut target = client.transaction().map_err(write("begin the copy"))?;
    target
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '{}s'; LOCK TABLE {all} IN ACCESS EXCLUSIVE MODE",
            LOCK_WAIT.as_secs()
        ))
        .map_err(write(
            "lock its tables (a server using the database keeps them busy)",
        ))?;
    check_target(&mut target).map_err(|failure| failure.into_error(write("read its schema")))?;

    let held = held(&mut target).map_err(write("count what it holds"))?;
    if !held.is_empty() && !replace {
        return Err(MigrateError::NotEmpty {
            database: database.to_owned(),
            found: held,
        });
    }
    target
        .batch_execute(&format!("TRUNCATE {all}"))
        .map_err(write("empty its tables"))?;

    let mut copied = Vec::new();
    for table in TABLES {
        let in_sqlite: i64 = source
            .query_row(&format!("SELECT count(*) FROM {}", table.name), [], |row| {
                row.get(0)
            })
            .map_err(read_error(path, &format!("count table {}", table.name)))?;
        let written = copy_table(source, &mut target, table).map_err(|failure| {
            failure.into_error(path, write(&format!("write table {}", table.name)))
        })?;
        let in_postgres: i64 = target
            .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
            .and_then(|row| row.try_get(0))
            .map_err(write(&format!("count table {}", table.name)))?;
        let (in_sqlite, in_postgres) = (in_sqlite as u64, in_postgres as u64);
        if in_sqlite != written || written != in_postgres {
            return Err(MigrateError::Count {
                table: table.name,
                in_sqlite,
                written,
                in_postgres,
            });
        }
        copied.push((table.name, written));
    }
    continue_log_ids(source, &mut target)
        .map_err(|failure| failure.into_error(path, write("set the request log's next id")))?;
    let marks = carry_journal_mark(source, &mut target, journal).map_err(|failure| {
        failure.into_error(path, write("write the request log's journal mark"))
    })?;
    copied.push((JOURNAL_TABLE, marks));
    target.commit().map_err(write("commit the copy"))?;
    Ok((copied, held))
}

/// Why a step that reads one database and writes the other failed.
enum Failure {
    Read(rusqlite::Error),
    Write(postgres::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Read(error)
    }
}

impl From<postgres::Error> for Failure {
    fn from(error: postgres::Error) -> Self {
        Failure::Write(error)
    }
}

impl Failure {
    fn into_error(
        self,
        path: &Path,
        write: impl Fn(postgres::Error) -> MigrateError,
    ) -> MigrateError {
        match self {
            Failure::Read(error) => read_error(path, "read it")(error),
            Failure::Write(error) => write(error),
        }
    }
}

/// Why the target's schema could not be checked, or how it differs.
enum SchemaFailure {
    Sql(postgres::Error),
    Mismatch(String),
}

impl SchemaFailure {
    fn into_error(self, write: impl Fn(postgres::Error) -> MigrateError) -> MigrateError {
        match self {
            SchemaFailure::Sql(error) => write(error),
            SchemaFailure::Mismatch(detail) => MigrateError::Schema {
                side: "PostgreSQL",
                detail,
            },
        }
    }
}

/// The target's schema is the one the copy knows.
fn check_target(target: &mut postgres::Transaction<'_>) -> Result<(), SchemaFailure> {
    let version: i64 = target
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .and_then(|row| row.try_get(0))
        .map_err(SchemaFailure::Sql)?;
    if version != schema::POSTGRES_VERSION {
        return Err(SchemaFailure::Mismatch(format!(
            "schema version {version}, where this copy writes version {}",
            schema::POSTGRES_VERSION
        )));
    }
    let found = schema::postgres_columns(target).map_err(SchemaFailure::Sql)?;
    match schema::difference(&found, tables::Kind::postgres_type) {
        Some(detail) => Err(SchemaFailure::Mismatch(detail)),
        None => Ok(()),
    }
}

/// The tables that hold rows a new database's migrations did not put there (the default
/// vault), and how many.
fn held(target: &mut postgres::Transaction<'_>) -> Result<Counts, postgres::Error> {
    let mut held = Vec::new();
    for table in TABLES.iter().map(|table| table.name).chain([JOURNAL_TABLE]) {
        let rows: i64 = match table {
            "vaults" => target.query_one(
                "SELECT count(*) FROM vaults WHERE id <> $1",
                &[&DEFAULT_VAULT_ID],
            )?,
            name => target.query_one(&format!("SELECT count(*) FROM {name}"), &[])?,
        }
        .try_get(0)?;
        if rows > 0 {
            held.push((table, rows as u64));
        }
    }
    Ok(held)
}

/// Stream every row of `table` from the snapshot into the target (a binary `COPY`); how
/// many.
fn copy_table(
    source: &rusqlite::Transaction<'_>,
    target: &mut postgres::Transaction<'_>,
    table: &Table,
) -> Result<u64, Failure> {
    let columns = table.column_list();
    let types: Vec<Type> = table
        .columns
        .iter()
        .map(|(_, kind)| kind.copy_type())
        .collect();
    let sink = target.copy_in(&format!(
        "COPY {} ({columns}) FROM STDIN (FORMAT binary)",
        table.name
    ))?;
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    let mut statement = source.prepare(&format!("SELECT {columns} FROM {}", table.name))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let values = table
            .columns
            .iter()
            .enumerate()
            .map(|(index, (_, kind))| Value::read(*kind, row, index))
            .collect::<rusqlite::Result<Vec<Value>>>()?;
        let params: Vec<_> = values.iter().map(Value::as_param).collect();
        writer.write(&params)?;
    }
    Ok(writer.finish()?)
}

/// Set the request log's id sequence past every id SQLite gave, deleted rows' included
/// (`sqlite_sequence`), so that new rows neither collide nor reuse an id.
fn continue_log_ids(
    source: &rusqlite::Transaction<'_>,
    target: &mut postgres::Transaction<'_>,
) -> Result<(), Failure> {
    let highest: i64 = source.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM request_logs), 0),
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'request_logs'), 0))",
        [],
        |row| row.get(0),
    )?;
    // setval(.., n, true): the next id is n + 1; setval(.., 1, false): it is 1.
    target.execute(
        "SELECT setval(pg_get_serial_sequence('request_logs', 'id'), $1, $2)",
        &[&highest.max(1), &(highest > 0)],
    )?;
    Ok(())
}

/// SQLite's journal mark (one row, the one server's) as the mark of `journal` in the
/// target, where each server's journal has its own; rows written (none for a mark of 0,
/// which is what a missing row means).
fn carry_journal_mark(
    source: &rusqlite::Transaction<'_>,
    target: &mut postgres::Transaction<'_>,
    journal: &str,
) -> Result<u64, Failure> {
    let through: i64 = source.query_row(
        "SELECT coalesce(max(through), 0) FROM request_log_journal",
        [],
        |row| row.get(0),
    )?;
    if through == 0 {
        return Ok(0);
    }
    Ok(target.execute(
        "INSERT INTO request_log_journal (journal, through) VALUES ($1, $2)",
        &[&journal, &through],
    )?)
}

/// PostgreSQL's primary message (which names tables and columns, not values: its detail
/// may quote one), or the client's own error with its causes.
fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.message().to_owned();
    }
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(reason) = cause {
        let text = reason.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = reason.source();
    }
    message
}
