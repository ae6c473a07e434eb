//! A second connection to a test server's database, on whichever backend its data directory
//! is on (the SQLite file, or its PostgreSQL database in the throwaway cluster): for the tests
//! that change a row behind the server's back (an expiry moved into the past, request-log
//! entries written in bulk) or count what the server wrote.
//!
//! Statements are written once, with `$1`, `$2`... placeholders (PostgreSQL's; for SQLite
//! they become `?1`, `?2`...), in the SQL the two dialects share. Both schemas keep times as
//! integer seconds and names as text, so the same statement means the same on both.

use std::path::Path;
use std::time::Duration;

use crate::support::{Backend, DataDir};

/// A value bound to a placeholder. A NULL carries its type: PostgreSQL checks it.
#[derive(Clone, Debug)]
pub enum Param {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<&str> for Param {
    fn from(text: &str) -> Param {
        Param::Text(Some(text.to_owned()))
    }
}

impl From<String> for Param {
    fn from(text: String) -> Param {
        Param::Text(Some(text))
    }
}

impl From<Option<&str>> for Param {
    fn from(text: Option<&str>) -> Param {
        Param::Text(text.map(str::to_owned))
    }
}

impl From<i64> for Param {
    fn from(number: i64) -> Param {
        Param::Int(Some(number))
    }
}

/// A value read from a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    pub fn text(&self) -> &str {
        match self {
            Cell::Text(text) => text,
            other => panic!("expected text, found {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(number) => *number,
            other => panic!("expected an integer, found {other:?}"),
        }
    }
}

/// The open connection.
pub enum Rows {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Rows {
    /// Connect to the database of the server(s) on `data` (which may be running).
    pub fn open(data: &DataDir) -> Rows {
        match data.backend() {
            Backend::Sqlite => Rows::sqlite_in(data.path()),
            Backend::Postgres => Rows::Postgres(
                postgres::Client::connect(data.database_url().unwrap(), postgres::NoTls).unwrap(),
            ),
        }
    }

    /// Open the SQLite file of the data directory `dir` (a server run outside [`DataDir`]).
    pub fn sqlite_in(dir: &Path) -> Rows {
        let connection = rusqlite::Connection::open(dir.join("agent-vault.db")).unwrap();
        connection.busy_timeout(Duration::from_secs(10)).unwrap();
        Rows::Sqlite(connection)
    }

    /// Run one statement; how many rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Param]) -> u64 {
        match self {
            Rows::Sqlite(connection) => connection
                .execute(&sqlite_placeholders(sql), sqlite_params(params))
                .unwrap_or_else(|error| panic!("{sql}: {error}"))
                as u64,
            Rows::Postgres(client) => client
                .execute(sql, &postgres_params(params))
                .unwrap_or_else(|error| panic!("{sql}: {error:?}")),
        }
    }

    /// Run a query; its rows.
    pub fn query(&mut self, sql: &str, params: &[Param]) -> Vec<Vec<Cell>> {
        match self {
            Rows::Sqlite(connection) => {
                let mut statement = connection
                    .prepare(&sqlite_placeholders(sql))
                    .unwrap_or_else(|error| panic!("{sql}: {error}"));
                let columns = statement.column_count();
                statement
                    .query_map(sqlite_params(params), |row| {
                        (0..columns)
                            .map(|index| {
                                Ok(match row.get::<_, rusqlite::types::Value>(index)? {
                                    rusqlite::types::Value::Null => Cell::Null,
                                    rusqlite::types::Value::Integer(number) => Cell::Int(number),
                                    rusqlite::types::Value::Text(text) => Cell::Text(text),
                                    rusqlite::types::Value::Blob(bytes) => Cell::Bytes(bytes),
                                    rusqlite::types::Value::Real(real) => {
                                        panic!("{sql}: a REAL ({real}) in our schema")
                                    }
                                })
                            })
                            .collect()
                    })
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
            Rows::Postgres(client) => client
                .query(sql, &postgres_params(params))
                .unwrap_or_else(|error| panic!("{sql}: {error:?}"))
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|index| postgres_cell(row, index))
                        .collect()
                })
                .collect(),
        }
    }

    /// The one value the query returns.
    pub fn value(&mut self, sql: &str, params: &[Param]) -> Cell {
        let rows = self.query(sql, params);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }

    /// Run `statements` in one transaction.
    pub fn in_transaction(&mut self, statements: impl FnOnce(&mut Rows)) {
        self.execute("BEGIN", &[]);
        statements(self);
        self.execute("COMMIT", &[]);
    }
}

/// `$n` as SQLite spells a numbered placeholder.
fn sqlite_placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}

fn sqlite_params(params: &[Param]) -> rusqlite::ParamsFromIter<Vec<rusqlite::types::Value>> {
    rusqlite::params_from_iter(
        params
            .iter()
            .map(|param| match param {
                Param::Text(Some(text)) => rusqlite::types::Value::Text(text.clone()),
                Param::Int(Some(number)) => rusqlite::types::Value::Integer(*number),
                Param::Text(None) | Param::Int(None) => rusqlite::types::Value::Null,
            })
            .collect::<Vec<_>>(),
    )
}

fn postgres_params(params: &[Param]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|param| match param {
            Param::Text(text) => text as &(dyn postgres::types::ToSql + Sync),
            Param::Int(number) => number as &(dyn postgres::types::ToSql + Sync),
        })
        .collect()
}

fn postgres_cell(row: &postgres::Row, index: usize) -> Cell {
    use postgres::types::Type;
    let column = &row.columns()[index];
    let cell = match *column.type_() {
        Type::INT8 => row.get::<_, Option<i64>>(index).map(Cell::Int),
        Type::INT4 => row
            .get::<_, Option<i32>>(index)
            .map(|number| Cell::Int(number.into())),
        Type::TEXT | Type::VARCHAR | Type::NAME => {
            row.get::<_, Option<String>>(index).map(Cell::Text)
        }
        Type::BYTEA => row.get::<_, Option<Vec<u8>>>(index).map(Cell::Bytes),
        ref other => panic!(
            "column {} is a {other}, which these tests do not read",
            column.name()
        ),
    };
    cell.unwrap_or(Cell::Null)
}
