//! The store's tests that every backend passes, and the helpers they share. Each case is a
//! function of the [`Backend`] it runs on, and [`backend_tests!`] makes of it one `#[test]`
//! on SQLite and one on PostgreSQL (a database of its own in the throwaway cluster of
//! `postgres/tests/cluster.rs`). What only one backend has (files and pragmas, the URL,
//! concurrent replicas) is tested in `sqlite/tests.rs` and `postgres/tests.rs`.

mod agent_invites;
mod agents;
mod devices;
mod invites;
mod master_key;
pub(crate) mod proposals;
mod request_log;
mod tokens;
mod users;
mod vaults;

use std::ops::Deref;

use tempfile::TempDir;

use super::postgres::PostgresStore;
use super::sqlite::{DEFAULT_VAULT_ID, SqliteStore};
use super::*;
use crate::vault::crypto::Sealed;

/// Which backend a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A store on a new, empty database of one backend, and what keeps that database.
pub(crate) enum TestStore {
    Sqlite {
        dir: TempDir,
        store: Box<SqliteStore>,
    },
    Postgres {
        url: String,
        store: PostgresStore,
    },
}

impl TestStore {
    pub(crate) fn open(backend: Backend) -> TestStore {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(&dir.path().join("agent-vault.db")).unwrap();
                TestStore::Sqlite {
                    dir,
                    store: Box::new(store),
                }
            }
            Backend::Postgres => {
                let url = super::postgres::tests::cluster().new_database();
                let store = PostgresStore::open(&url).unwrap();
                TestStore::Postgres { url, store }
            }
        }
    }

    /// Another store on the same database, as a second process or replica opens it.
    pub(crate) fn reopen(&self) -> Box<dyn Store> {
        match self {
            TestStore::Sqlite { dir, .. } => {
                Box::new(SqliteStore::open(&dir.path().join("agent-vault.db")).unwrap())
            }
            TestStore::Postgres { url, .. } => Box::new(PostgresStore::open(url).unwrap()),
        }
    }

    /// Rows of `table` whose `vault_id` is `vault_id`, read behind the trait's back.
    pub(crate) fn rows_of_vault(&self, table: &str, vault_id: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE vault_id = $1");
        match self {
            TestStore::Sqlite { dir, .. } => {
                rusqlite::Connection::open(dir.path().join("agent-vault.db"))
                    .unwrap()
                    .query_row(&sql, [vault_id], |row| row.get(0))
                    .unwrap()
            }
            TestStore::Postgres { url, .. } => ::postgres::Client::connect(url, ::postgres::NoTls)
                .unwrap()
                .query_one(&sql, &[&vault_id])
                .unwrap()
                .get(0),
        }
    }
}

impl TestStore {
    /// Make every insert of a credential named `key` fail with `message`, behind the trait's
    /// back, as a full disk would.
    pub(crate) fn fail_credential_inserts(&self, key: &str, message: &str) {
        match self {
            TestStore::Sqlite { dir, .. } => {
                rusqlite::Connection::open(dir.path().join("agent-vault.db"))
                    .unwrap()
                    .execute_batch(&format!(
                        "CREATE TRIGGER fail_insert BEFORE INSERT ON credentials
                         WHEN NEW.key = '{key}' BEGIN SELECT RAISE(ABORT, '{message}'); END;"
                    ))
                    .unwrap();
            }
            TestStore::Postgres { url, .. } => {
                ::postgres::Client::connect(url, ::postgres::NoTls)
                    .unwrap()
                    .batch_execute(&format!(
                        "CREATE FUNCTION fail_insert() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN
                             IF NEW.key = '{key}' THEN RAISE EXCEPTION '{message}'; END IF;
                             RETURN NEW;
                         END $$;
                         CREATE TRIGGER fail_insert BEFORE INSERT ON credentials
                             FOR EACH ROW EXECUTE FUNCTION fail_insert();"
                    ))
                    .unwrap();
            }
        }
    }
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            TestStore::Sqlite { store, .. } => store.as_ref(),
            TestStore::Postgres { store, .. } => store,
        }
    }
}

/// `#[test]`s of the cases named, one module per backend.
macro_rules! backend_tests {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    super::$case($crate::store::tests::Backend::Sqlite)
                }
            )+
        }

        mod postgres {
            $(
                #[test]
                fn $case() {
                    super::$case($crate::store::tests::Backend::Postgres)
                }
            )+
        }
    };
}
use backend_tests;

pub(crate) const T0: UnixTime = 1_700_000_000;

pub(crate) fn open_store(backend: Backend) -> TestStore {
    TestStore::open(backend)
}

/// A store whose first owner, alice, administers the default vault.
pub(crate) fn store_with_owner(backend: Backend) -> TestStore {
    let store = open_store(backend);
    store
        .create_first_owner(&user("alice", InstanceRole::Owner))
        .unwrap();
    store
}

pub(crate) fn user(id: &str, role: InstanceRole) -> User {
    User {
        id: id.into(),
        email: format!("{id}@example.com"),
        role,
        password_hash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
        created_at: T0,
    }
}

pub(crate) fn invite(
    hash: &str,
    email: &str,
    role: InstanceRole,
    vaults: &[(&str, VaultRole)],
) -> Invite {
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
pub(crate) fn add_user(store: &dyn Store, id: &str, role: InstanceRole) -> User {
    let user = user(id, role);
    let hash = format!("invite-{id}");
    store
        .create_invite(&invite(&hash, &user.email, role, &[]))
        .unwrap();
    store.accept_invite(&hash, &user).unwrap();
    user
}

pub(crate) fn agent(id: &str, role: InstanceRole) -> Agent {
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

pub(crate) fn agent_token(agent_id: &str, hash: &str) -> TokenRecord {
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
pub(crate) fn add_agent(
    store: &dyn Store,
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

pub(crate) fn login_token(
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

pub(crate) fn scoped_token(
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

pub(crate) fn grant(actor: ActorId, vault_id: &str, role: VaultRole) -> Grant {
    Grant {
        actor,
        vault_id: vault_id.into(),
        role,
    }
}

pub(crate) fn sealed(byte: u8) -> Sealed {
    Sealed {
        key_version: 1,
        nonce: [byte; 12],
        ciphertext: vec![byte; 24],
    }
}

pub(crate) fn credential(key: &str, byte: u8) -> StoredCredential {
    StoredCredential {
        key: key.into(),
        sealed: sealed(byte),
    }
}

pub(crate) fn log_entry(vault_id: &str, created_at: UnixTime) -> LogEntry {
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

pub(crate) fn page(
    store: &dyn Store,
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

pub(crate) fn roles_in(store: &dyn Store, vault_id: &str) -> Vec<(ActorId, VaultRole)> {
    store
        .vault_grants(vault_id)
        .unwrap()
        .into_iter()
        .map(|grant| (grant.actor, grant.role))
        .collect()
}
