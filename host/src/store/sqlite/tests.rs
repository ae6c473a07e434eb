//! Tests of what is SQLite's own in the store (sqlite.rs, `sqlite/open.rs`): the file and its
//! modes, the pragmas, the numbered migrations. What every backend does is tested in
//! `store/tests/`.

use super::open::{MIGRATIONS, migrate};
use super::*;

use std::fs;

use tempfile::TempDir;

use crate::store::tests::proposals::{alice, proposal};
use crate::store::tests::{T0, credential, scoped_token};
use crate::store::{CredentialStore, Proposal, ProposalStore, TokenStore, VaultStore};

fn open_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("agent-vault.db")).unwrap();
    (dir, store)
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
fn upgrading_records_the_minter_of_the_session_an_old_proposal_came_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent-vault.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let session = scoped_token(DEFAULT_VAULT_ID, "s1", Some(ActorId::agent("bot")), None);
        store.insert_token(&session).unwrap();
        // As proposals through a vault session were stored before creators were
        // recorded: the session's public id, no creator.
        for (approval, session) in [("a1", "pub-s1"), ("a2", "pub-gone"), ("a3", "pub-s1")] {
            store
                .create_proposal(
                    &Proposal {
                        created_by: None,
                        created_by_session: Some(session.into()),
                        ..proposal(approval)
                    },
                    20,
                )
                .unwrap();
        }
        store
            .reject_proposal(DEFAULT_VAULT_ID, 3, &alice(), None, T0 + 1)
            .unwrap();
        // Back to schema version 6, without what later migrations added.
        let connection = store.connection.lock().unwrap();
        connection
            .execute_batch("DROP TABLE device_tokens; DROP TABLE request_log_journal")
            .unwrap();
        connection.pragma_update(None, "user_version", 6).unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let creator = |id| {
        store
            .proposal(DEFAULT_VAULT_ID, id)
            .unwrap()
            .unwrap()
            .created_by
    };
    assert_eq!(creator(1), Some(ActorId::agent("bot")));
    assert_eq!(creator(2), None, "its session is gone: no one to name");
    assert_eq!(creator(3), Some(ActorId::agent("bot")));
}
