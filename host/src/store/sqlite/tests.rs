//! Tests of the SQLite store (sqlite.rs), and the helpers its submodules' tests share.

mod agents;
mod invites;
mod master_key;
mod request_log;
mod tokens;
mod users;
mod vaults;

use super::open::{MIGRATIONS, migrate};
use super::*;

use std::fs;

use tempfile::TempDir;

use crate::store::{AgentStatus, DEFAULT_VAULT, InviteStatus, TokenKind, VaultRole};
use crate::vault::crypto::Sealed;

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
