//! Tests of the SQLite store (sqlite.rs), and the helpers its submodules' tests share.

use super::open::{MIGRATIONS, migrate};
use super::request_log::LOG_INSERT_ROWS;
use super::*;

use std::fs;
use std::sync::{Arc, Barrier};

use tempfile::TempDir;

use crate::store::{AgentStatus, DEFAULT_VAULT, InviteStatus, KeyProtection, TokenKind, VaultRole};
use crate::vault::crypto::{KdfParams, Sealed};

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
