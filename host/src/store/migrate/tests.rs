//! The copy on a SQLite file and a database of the throwaway PostgreSQL cluster
//! (`postgres/tests/cluster.rs`): every table, row and byte crosses; the request log's ids
//! continue past SQLite's; both schemas are the ones the copy knows; sources of other
//! versions are brought up to date or refused. The command's cases (a target that holds an
//! instance, a failure halfway, the URL's password) are black-box tests in
//! `tests/cli/migrate_db.rs`.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tempfile::TempDir;

use super::tables::{Kind, TABLES, Table, Value};
use super::{MigrateError, check_source, check_target, sqlite_to_postgres};
use crate::store::postgres::PostgresStore;
use crate::store::postgres::tests::cluster;
use crate::store::sqlite::SqliteStore;
use crate::store::{CredentialStore, KeyStore, RequestLogStore};

/// A row in every table, with NULLs, bytes that are not text (0x00, 0xff) and text that is
/// not ASCII; request-log row 3 deleted after it was written, as retention does.
/// The id of the journal whose mark the copy carries (`request_log/journal.rs`).
const JOURNAL: &str = "0123456789abcdef0123456789abcdef";

const INSTANCE: &str = r#"
INSERT INTO master_key VALUES (1, 1, 'password', X'00ff10', 65536, 3, 1,
    X'ff0102030405060708090a00', X'00ffee00', NULL, 1700000000);
INSERT INTO instance_settings VALUES ('agents_can_approve_proposals', 'true');
INSERT INTO vaults VALUES ('v1', 'payments', 1700000001);
INSERT INTO vault_settings VALUES ('v1', 'webhook', 'https://hooks.example/x');
INSERT INTO credentials VALUES ('v1', 'STRIPE_KEY', 1, X'000102030405060708090a0b',
    X'ff00fe01', 1700000002);
INSERT INTO services VALUES ('v1', '[{"name":"api"}]', 1700000003);
INSERT INTO users VALUES ('u1', 'owner@example.com', '$argon2id$v=19$m=65536,t=3,p=1$x$y',
    'owner', 1700000004);
INSERT INTO agents VALUES ('a1', 'bot', 'no-access', 'active', 'user', 'u1', 1700000005, NULL);
INSERT INTO vault_grants VALUES ('agent', 'a1', 'v1', 'proxy');
INSERT INTO tokens VALUES ('h1', 'p1', 'login', 'u1', NULL, NULL, NULL, NULL, 86400, NULL,
    NULL, 1, 2, NULL);
INSERT INTO tokens VALUES ('h2', 'p2', 'agent', NULL, 'a1', NULL, NULL, NULL, NULL, 'user',
    'u1', 1, 2, NULL);
INSERT INTO tokens VALUES ('h3', 'p3', 'scoped', NULL, NULL, 'v1', 'proxy', 'ci ✓ déploiement',
    NULL, 'agent', 'a1', 1, 2, 99);
INSERT INTO device_tokens VALUES ('d1', 'dp1', 'u1', 2592000, 1, 2);
INSERT INTO user_invites VALUES ('i1', 'friend@example.com', 'member', 'user', 'u1',
    'pending', 1, 2);
INSERT INTO user_invite_vaults VALUES ('i1', 'v1', 'member');
INSERT INTO agent_invites VALUES ('ai1', 'helper', 'no-access', 'user', 'u1', 'redeemed', 1,
    2, 'a1', 3);
INSERT INTO agent_invite_vaults VALUES ('ai1', 'v1', 'proxy');
INSERT INTO proposals VALUES ('v1', 1, 'pending', '[]', '[]', 'm', 'um', 'agent', 'a1', NULL,
    'ah1', 5, 1, 6, NULL, NULL, NULL, NULL);
INSERT INTO mitm_ca VALUES (1, 'agent-vault local CA', '-----BEGIN CERTIFICATE-----', 1,
    X'000a0b0c0d0e0f1011121314', X'00ff', 7);
INSERT INTO request_logs (id, vault_id, ingress, method, host, path, matched_service,
    credential_keys, status, latency_ms, error_code, actor_type, actor_id, created_at)
VALUES (1, 'v1', 'explicit', 'GET', 'api.example', '/a', 'api', '["STRIPE_KEY"]', 200, 12,
        NULL, 'agent', 'a1', 10),
       (2, 'v1', 'transparent', 'POST', 'api.example', '/b', NULL, '[]', 403, 1,
        'service_disabled', NULL, NULL, 11),
       (3, 'v1', 'explicit', 'GET', 'api.example', '/c', NULL, '[]', 200, 1, NULL, NULL,
        NULL, 12);
DELETE FROM request_logs WHERE id = 3;
UPDATE request_log_journal SET through = 3;
"#;

/// A SQLite database at this agent-vault's schema, holding [`INSTANCE`].
fn source() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent-vault.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch(INSTANCE)
        .unwrap();
    (dir, path)
}

/// Every row of `table` in SQLite, in a stable order.
fn sqlite_rows(path: &Path, table: &Table) -> Vec<Vec<Value>> {
    let connection = Connection::open(path).unwrap();
    let mut statement = connection
        .prepare(&format!(
            "SELECT {} FROM {}",
            table.column_list(),
            table.name
        ))
        .unwrap();
    let mut rows: Vec<Vec<Value>> = statement
        .query_map([], |row| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(index, (_, kind))| Value::read(*kind, row, index))
                .collect()
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    rows.sort();
    rows
}

/// Every row of `table` in PostgreSQL, in the same order.
fn postgres_rows(url: &str, table: &Table) -> Vec<Vec<Value>> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let sql = format!("SELECT {} FROM {}", table.column_list(), table.name);
    let mut rows: Vec<Vec<Value>> = client
        .query(&sql, &[])
        .unwrap()
        .iter()
        .map(|row| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(index, (_, kind))| match kind {
                    Kind::Integer => Value::Integer(row.get(index)),
                    Kind::Text => Value::Text(row.get(index)),
                    Kind::Blob => Value::Blob(row.get(index)),
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn every_table_crosses_row_for_row_and_byte_for_byte() {
    let (_dir, path) = source();
    let url = cluster().new_database();
    let copied = sqlite_to_postgres(&path, &url, false, JOURNAL).unwrap();
    assert_eq!(copied.upgraded_from, None);
    assert!(copied.replaced.is_empty());
    let names: Vec<&str> = copied.tables.iter().map(|(name, _)| *name).collect();
    let all: Vec<&str> = TABLES.iter().map(|table| table.name).collect();
    assert_eq!(names[..all.len()], all);
    assert_eq!(copied.tables[all.len()..], [("request_log_journal", 1)]);

    for table in TABLES {
        let rows = sqlite_rows(&path, table);
        assert_eq!(postgres_rows(&url, table), rows, "table {}", table.name);
        let counted = copied.tables.iter().find(|(name, _)| *name == table.name);
        assert_eq!(counted, Some(&(table.name, rows.len() as u64)));
    }

    // Through the store: the same sealed records, and the journal position.
    let sqlite = SqliteStore::open(&path).unwrap();
    let postgres = PostgresStore::open(&url).unwrap();
    assert!(postgres.master_key().unwrap().is_some());
    assert_eq!(postgres.master_key().unwrap(), sqlite.master_key().unwrap());
    assert_eq!(
        postgres.credential("v1", "STRIPE_KEY").unwrap(),
        sqlite.credential("v1", "STRIPE_KEY").unwrap()
    );
    assert_eq!(
        postgres.transparent_ca().unwrap(),
        sqlite.transparent_ca().unwrap()
    );
    assert_eq!(postgres.journaled_through(JOURNAL).unwrap(), 3);
}

#[test]
fn new_request_log_rows_take_ids_past_every_id_sqlite_gave() {
    let (_dir, path) = source();
    let url = cluster().new_database();
    sqlite_to_postgres(&path, &url, false, JOURNAL).unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let id: i64 = client
        .query_one(
            "INSERT INTO request_logs (vault_id, ingress, method, host, path, credential_keys,
                 status, latency_ms, created_at)
             VALUES ('v1', 'explicit', 'GET', 'api.example', '/d', '[]', 200, 1, 13)
             RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    // Row 3 was deleted in SQLite; its id is not given again, as with AUTOINCREMENT.
    assert_eq!(id, 4);

    // An instance that never logged a request starts at 1.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("agent-vault.db");
    drop(SqliteStore::open(&empty).unwrap());
    let url = cluster().new_database();
    sqlite_to_postgres(&empty, &url, false, JOURNAL).unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let id: i64 = client
        .query_one(
            "INSERT INTO request_logs (vault_id, ingress, method, host, path, credential_keys,
                 status, latency_ms, created_at)
             VALUES ('00000000000000000000000000000000', 'explicit', 'GET', 'h', '/', '[]',
                 200, 1, 1)
             RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(id, 1);
}

#[test]
fn both_backends_schemas_are_the_ones_the_copy_knows() {
    let (_dir, path) = source();
    let mut connection = Connection::open(&path).unwrap();
    let snapshot = connection.transaction().unwrap();
    assert!(check_source(&path, &snapshot).is_ok());

    let url = cluster().new_database();
    let store = PostgresStore::open(&url).unwrap();
    let checked = store
        .with_client("check", |client| {
            let mut tx = client.transaction().unwrap();
            check_target(&mut tx).is_ok()
        })
        .unwrap();
    assert!(checked);
}

/// The SQLite migrations up to version `version`, applied to a new file.
fn sqlite_at_version(version: usize) -> (TempDir, PathBuf) {
    const MIGRATIONS: [&str; 8] = [
        include_str!("../migrations/001_initial.sql"),
        include_str!("../migrations/002_agent_invites.sql"),
        include_str!("../migrations/003_proposals.sql"),
        include_str!("../migrations/004_mitm_ca.sql"),
        include_str!("../migrations/005_request_log_by_id.sql"),
        include_str!("../migrations/006_instance_settings.sql"),
        include_str!("../migrations/007_proposal_creators.sql"),
        include_str!("../migrations/008_device_tokens.sql"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent-vault.db");
    let connection = Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..version] {
        connection.execute_batch(sql).unwrap();
    }
    connection
        .pragma_update(None, "user_version", version as i64)
        .unwrap();
    (dir, path)
}

#[test]
fn an_older_source_is_brought_up_to_date_and_a_newer_one_or_another_file_is_refused() {
    let (_dir, path) = sqlite_at_version(8);
    let url = cluster().new_database();
    let copied = sqlite_to_postgres(&path, &url, false, JOURNAL).unwrap();
    assert_eq!(copied.upgraded_from, Some(8));
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 9);

    let (_dir, path) = source();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 10)
        .unwrap();
    let url = cluster().new_database();
    let refused = sqlite_to_postgres(&path, &url, false, JOURNAL).unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "database error: the database {} was written by a newer agent-vault (schema \
             version 10, this agent-vault knows up to 9): upgrade agent-vault to open it",
            path.display()
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("notes.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE notes (text TEXT)")
        .unwrap();
    let refused = sqlite_to_postgres(&other, &url, false, JOURNAL).unwrap_err();
    assert!(
        matches!(refused, MigrateError::NotAgentVault(_)),
        "{refused}"
    );
    assert_eq!(
        refused.to_string(),
        format!(
            "{} is not an agent-vault database: it has none of agent-vault's tables",
            other.display()
        )
    );
    let missing = dir.path().join("missing.db");
    assert_eq!(
        sqlite_to_postgres(&missing, &url, false, JOURNAL)
            .unwrap_err()
            .to_string(),
        format!("there is no SQLite database at {}", missing.display())
    );
    assert!(!missing.exists(), "the copy made no file where none was");
}
