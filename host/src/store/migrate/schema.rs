//! Checking both databases against what the copy knows ([`super::tables::TABLES`]) before a
//! row moves: the schema version, every table and every column with its type. A table or
//! column this copy does not know would otherwise be left behind without a word; one it
//! expects and does not find would fail halfway. The request log's journal mark is not
//! among them: its table differs between the backends (one row in SQLite, one per server in
//! PostgreSQL), and `migrate.rs` carries it with SQL of its own.

use std::collections::BTreeMap;

use super::tables::{Kind, TABLES};

/// The SQLite schema version (`PRAGMA user_version`) the copy reads: the last of
/// `store/migrations/`.
pub(super) const SQLITE_VERSION: i64 = 9;

/// The PostgreSQL schema version (`schema_migrations`) the copy writes into: the last of
/// `store/postgres/migrations/`.
pub(super) const POSTGRES_VERSION: i64 = 3;

/// Tables of a schema, each with its columns and their declared types.
pub(super) type Columns = BTreeMap<String, BTreeMap<String, String>>;

/// The SQLite database's schema, read inside the copy's read transaction.
pub(super) fn sqlite_columns(source: &rusqlite::Transaction<'_>) -> rusqlite::Result<Columns> {
    let mut tables = source.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
           AND name <> 'request_log_journal'",
    )?;
    let names = tables
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut columns = Columns::new();
    for name in names {
        let mut info = source.prepare("SELECT name, type FROM pragma_table_info(?1)")?;
        let of_table = info
            .query_map([&name], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<BTreeMap<String, String>>>()?;
        columns.insert(name, of_table);
    }
    Ok(columns)
}

/// The PostgreSQL database's schema (its own migrations' table and the journal marks aside).
pub(super) fn postgres_columns(
    target: &mut postgres::Transaction<'_>,
) -> Result<Columns, postgres::Error> {
    let mut columns = Columns::new();
    for row in target.query(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name NOT IN ('schema_migrations', 'request_log_journal')",
        &[],
    )? {
        columns.insert(row.try_get(0)?, BTreeMap::new());
    }
    for row in target.query(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema()
           AND table_name NOT IN ('schema_migrations', 'request_log_journal')",
        &[],
    )? {
        let table: String = row.try_get(0)?;
        if let Some(of_table) = columns.get_mut(&table) {
            of_table.insert(row.try_get(1)?, row.try_get(2)?);
        }
    }
    Ok(columns)
}

/// The first difference between `found` and [`TABLES`], whose kinds `declared` names as the
/// database does; `None` when they agree.
pub(super) fn difference(found: &Columns, declared: fn(Kind) -> &'static str) -> Option<String> {
    for table in TABLES {
        let Some(columns) = found.get(table.name) else {
            return Some(format!("it has no table {}", table.name));
        };
        for (column, kind) in table.columns {
            match columns.get(*column) {
                None => return Some(format!("table {} has no column {column}", table.name)),
                Some(declared_type) if !declared_type.eq_ignore_ascii_case(declared(*kind)) => {
                    return Some(format!(
                        "column {}.{column} is {declared_type}, not {}",
                        table.name,
                        declared(*kind)
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = columns
            .keys()
            .find(|name| !table.columns.iter().any(|(known, _)| known == name))
        {
            return Some(format!(
                "column {}.{extra} is not one this agent-vault copies",
                table.name
            ));
        }
    }
    found
        .keys()
        .find(|name| !TABLES.iter().any(|table| table.name == name.as_str()))
        .map(|extra| format!("table {extra} is not one this agent-vault copies"))
}
