//! Tests of what is PostgreSQL's own in the store (postgres.rs, `postgres/open.rs`): opening
//! and migrating, concurrent writers, errors, and reading the URL. Each test has a database of
//! its own in the throwaway cluster of `tests/cluster.rs`.

mod changes;
mod cluster;

use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use postgres::{Client, NoTls};

use super::open::{ConnectionSettings, MIGRATIONS, migrate};
use super::*;
use crate::store::{
    ActorId, InstanceRole, Invite, InviteStore, LogQuery, RequestLogStore, UnixTime, User,
    UserStore, VaultRole, VaultStore, now,
};

pub(crate) use cluster::cluster;

const T0: UnixTime = 1_700_000_000;

fn user(id: &str, role: InstanceRole) -> User {
    User {
        id: id.into(),
        email: format!("{id}@example.com"),
        role,
        password_hash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
        created_at: T0,
    }
}

/// A store on a new database whose owners are alice (the first) and bob.
fn store_with_two_owners() -> (String, PostgresStore) {
    let url = cluster().new_database();
    let store = PostgresStore::open(&url).unwrap();
    store
        .create_first_owner(&user("alice", InstanceRole::Owner))
        .unwrap();
    let bob = user("bob", InstanceRole::Owner);
    store
        .create_invite(&Invite {
            hash: "invite-bob".into(),
            email: bob.email.clone(),
            role: InstanceRole::Owner,
            vaults: vec![(DEFAULT_VAULT_ID.into(), VaultRole::Member)],
            created_by: Some(ActorId::user("alice")),
            status: crate::store::InviteStatus::Pending,
            created_at: now(),
            expires_at: now() + 3600,
        })
        .unwrap();
    store.accept_invite("invite-bob", &bob).unwrap();
    (url, store)
}

fn owners(store: &PostgresStore) -> Vec<String> {
    store
        .users()
        .unwrap()
        .into_iter()
        .filter(|user| user.role == InstanceRole::Owner)
        .map(|user| user.id)
        .collect()
}

fn client(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap()
}

#[test]
fn two_stores_opening_an_empty_database_together_migrate_it_once() {
    let url = cluster().new_database();
    let start = Arc::new(Barrier::new(2));
    let migrations: Vec<_> = (0..2)
        .map(|_| {
            let (url, start) = (url.clone(), start.clone());
            std::thread::spawn(move || {
                let mut client = client(&url);
                start.wait();
                migrate(&mut client).unwrap()
            })
        })
        .collect();
    let mut applied: Vec<usize> = migrations
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    applied.sort();
    assert_eq!(
        applied,
        [0, MIGRATIONS.len()],
        "one applies, the other finds it done"
    );

    let versions: Vec<i64> = client(&url)
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(
        store.vaults().unwrap().len(),
        1,
        "the default vault is seeded once"
    );
}

#[test]
fn reopening_applies_no_migration_twice() {
    let url = cluster().new_database();
    PostgresStore::open(&url)
        .unwrap()
        .create_vault("payments", None)
        .unwrap();
    let store = PostgresStore::open(&url).unwrap();
    assert!(store.vault("payments").unwrap().is_some());
    assert_eq!(migrate(&mut client(&url)).unwrap(), 0);
}

#[test]
fn a_database_from_a_newer_agent_vault_is_refused() {
    let url = cluster().new_database();
    drop(PostgresStore::open(&url).unwrap());
    let newer = MIGRATIONS.len() as i64 + 1;
    client(&url)
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'future', 0)",
            &[&newer],
        )
        .unwrap();

    assert_eq!(
        PostgresStore::open(&url).unwrap_err(),
        StoreError::Database(format!(
            "the database was written by a newer agent-vault (schema version {newer}, \
             this agent-vault knows up to {}): upgrade agent-vault to open it",
            MIGRATIONS.len()
        ))
    );
}

/// A write that loses a serialization conflict runs again, and the second run sees what the
/// winner wrote: here the last owner rule, which the first run could not see broken.
#[test]
fn a_write_that_loses_a_serialization_conflict_runs_again() {
    let (url, store) = store_with_two_owners();
    let store = Arc::new(store);

    // Another replica demotes bob and holds alice's row, uncommitted.
    let mut other = client(&url);
    let mut demote_bob = other
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .unwrap();
    demote_bob
        .execute("UPDATE users SET role = 'member' WHERE id = 'bob'", &[])
        .unwrap();
    demote_bob
        .execute(
            "UPDATE users SET password_hash = password_hash WHERE id = 'alice'",
            &[],
        )
        .unwrap();

    // This store demotes alice: it counts two owners, then waits for alice's row.
    let demote_alice = {
        let store = store.clone();
        std::thread::spawn(move || store.set_user_role("alice", InstanceRole::Member))
    };
    let mut watcher = client(&url);
    while watcher
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    demote_bob.commit().unwrap();

    // Its first run fails to serialize; the second counts one owner and refuses.
    assert_eq!(demote_alice.join().unwrap(), Err(StoreError::LastOwner));
    assert_eq!(owners(&store), ["alice"]);
}

#[test]
fn of_two_concurrent_demotions_of_the_last_two_owners_one_is_refused() {
    for _ in 0..5 {
        let (_url, store) = store_with_two_owners();
        let store = Arc::new(store);
        let start = Arc::new(Barrier::new(2));
        let demotions: Vec<_> = ["alice", "bob"]
            .into_iter()
            .map(|id| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    store.set_user_role(id, InstanceRole::Member)
                })
            })
            .collect();
        let mut outcomes: Vec<Result<()>> = demotions
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect();
        outcomes.sort_by_key(|outcome| outcome.is_err());
        assert_eq!(outcomes, [Ok(()), Err(StoreError::LastOwner)]);
        assert_eq!(owners(&store).len(), 1);
    }
}

#[test]
fn a_refused_connection_is_unavailable_and_hides_the_password() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://agent:hunter2@127.0.0.1:{port}/vault?sslmode=disable");
    assert_eq!(
        PostgresStore::open(&url).unwrap_err(),
        StoreError::Unavailable(format!(
            "cannot connect to the database postgres://agent:***@127.0.0.1:{port}/vault\
             ?sslmode=disable: error connecting to server: Connection refused (os error 111)"
        ))
    );
}

#[test]
fn connections_the_server_ended_are_replaced() {
    let url = cluster().new_database();
    let store = PostgresStore::open(&url).unwrap();
    store.create_vault("payments", None).unwrap();
    client(&url)
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    assert_eq!(store.vaults().unwrap().len(), 2);
}

#[test]
fn a_write_waiting_on_another_sessions_lock_is_unavailable_after_the_lock_timeout() {
    let url = cluster().new_database();
    let store = PostgresStore::open(&url).unwrap();
    // Another program locks the table against writes (reads go on), and keeps it.
    let mut other = client(&url);
    let mut holding = other.transaction().unwrap();
    holding
        .batch_execute("LOCK TABLE vaults IN EXCLUSIVE MODE")
        .unwrap();
    assert_eq!(store.vaults().unwrap().len(), 1);
    match store.create_vault("payments", None) {
        Err(StoreError::Unavailable(message)) => assert!(
            message.contains("canceling statement due to lock timeout"),
            "{message}"
        ),
        other => panic!("expected the write to be unavailable, got {other:?}"),
    }
    // Let go, the same write goes through.
    holding.commit().unwrap();
    store.create_vault("payments", None).unwrap();
    assert_eq!(store.vaults().unwrap().len(), 2);
}

#[test]
fn emails_are_one_whatever_their_ascii_case() {
    let (_url, store) = store_with_two_owners();
    assert_eq!(
        store
            .user_by_email("ALICE@Example.com")
            .unwrap()
            .unwrap()
            .id,
        "alice"
    );
    let mut shouting = user("carol", InstanceRole::Member);
    shouting.email = "BOB@EXAMPLE.COM".into();
    store
        .create_invite(&Invite {
            hash: "invite-carol".into(),
            email: shouting.email.clone(),
            role: InstanceRole::Member,
            vaults: Vec::new(),
            created_by: None,
            status: crate::store::InviteStatus::Pending,
            created_at: now(),
            expires_at: now() + 3600,
        })
        .unwrap();
    assert_eq!(
        store.accept_invite("invite-carol", &shouting),
        Err(StoreError::Conflict("a user with this email".into()))
    );
}

#[test]
fn urls_are_shown_without_their_password() {
    assert_eq!(
        redact_url("postgres://agent:s3cret@db.internal:5432/vault?sslmode=require"),
        "postgres://agent:***@db.internal:5432/vault?sslmode=require"
    );
    assert_eq!(
        redact_url("postgresql://agent@db/vault?password=s3cret&sslmode=verify-full"),
        "postgresql://agent@db/vault?password=***&sslmode=verify-full"
    );
    assert_eq!(
        redact_url("postgres:///vault?host=/run/postgresql"),
        "postgres:///vault?host=/run/postgresql"
    );
}

#[test]
fn a_url_is_read_with_the_sslmodes_of_libpq() {
    for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
        let url = format!("postgres://agent@db.internal/vault?sslmode={mode}");
        assert!(ConnectionSettings::parse(&url).is_ok(), "{mode}");
    }
    let refused = |url: &str| match ConnectionSettings::parse(url) {
        Err(StoreError::Database(message)) => message,
        other => panic!("{url} was not refused: {:?}", other.map(|_| ())),
    };
    let not_a_url =
        "the database URL is not valid: it must start with postgres:// or postgresql://";
    assert_eq!(refused("mysql://agent:s3cret@db/vault"), not_a_url);
    assert_eq!(refused("host=db user=agent password=s3cret"), not_a_url);
    assert_eq!(
        refused("postgres://agent:s3cret@db/vault?sslmode=sometimes"),
        "the database URL postgres://agent:***@db/vault?sslmode=sometimes is not valid: \
         invalid connection string: invalid value for option `sslmode`"
    );
}

#[test]
fn tls_over_a_unix_socket_is_refused_before_connecting() {
    let url = format!("{}&sslmode=require", cluster().url("postgres"));
    let error = PostgresStore::open(&url).unwrap_err();
    assert_eq!(
        error,
        StoreError::Database(format!(
            "cannot use the database {url}: PostgreSQL offers no TLS over a Unix socket; \
             drop sslmode=require"
        ))
    );
}

/// Whether every connection agent-vault holds to database `name` is encrypted.
fn encrypted(name: &str) -> bool {
    client(&cluster().url(name))
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = current_database() AND a.application_name = 'agent-vault'",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn tls_to_the_database_is_verified_against_the_ca_the_url_names() {
    let name = cluster().create_database();
    let query = format!(
        "sslmode=verify-full&sslrootcert={}",
        cluster().ca_file().display()
    );
    let store = PostgresStore::open(&cluster().tcp_url(&name, &query)).unwrap();
    store.create_vault("payments", None).unwrap();
    assert!(encrypted(&name));

    // The same server is not trusted on the web PKI's word.
    let url = cluster().tcp_url(&name, "sslmode=require");
    assert_eq!(
        PostgresStore::open(&url).unwrap_err(),
        StoreError::Database(format!(
            "cannot connect to the database {url}: error performing TLS handshake: \
             invalid peer certificate: UnknownIssuer"
        ))
    );
}

#[test]
fn sslmode_disable_connects_in_plain() {
    let name = cluster().create_database();
    let store = PostgresStore::open(&cluster().tcp_url(&name, "sslmode=disable")).unwrap();
    store.create_vault("payments", None).unwrap();
    assert!(!encrypted(&name));
}

/// The server's way in: [`Db::run`] on the blocking pool, where the synchronous client may
/// block. Opening the store blocks too, so it happens there; dropping it may happen anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_server_reaches_the_store_through_the_blocking_pool() {
    let store =
        tokio::task::spawn_blocking(|| PostgresStore::open(&cluster().new_database()).unwrap())
            .await
            .unwrap();
    let db = crate::store::Db::new(Arc::new(store));
    db.run(|store| store.create_vault("payments", None))
        .await
        .unwrap();
    let names: Vec<String> = db
        .run(|store| store.vaults())
        .await
        .unwrap()
        .into_iter()
        .map(|vault| vault.name)
        .collect();
    assert_eq!(names, ["default", "payments"]);
    drop(db);
}

/// Servers sharing the database number their request-log journals each on its own, so each
/// journal keeps its own mark: one server writing far ahead must not make another's restart
/// skip the entries its journal holds and the database lacks (as one shared mark did).
#[test]
fn each_servers_request_log_journal_keeps_its_own_mark() {
    use crate::request_log::Journal;
    use crate::store::tests::log_entry;

    let url = cluster().new_database();
    let store = PostgresStore::open(&url).unwrap();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Journal::recover(a_dir.path(), &store).unwrap();
    let b = Journal::recover(b_dir.path(), &store).unwrap();
    assert_ne!(a.id(), b.id());

    // B journals three entries and is killed before writing them; A writes a hundred.
    for n in 0..3 {
        let mut entry = log_entry(DEFAULT_VAULT_ID, T0 + n);
        entry.path = format!("/b/{n}");
        b.append(entry, |_, _| ()).unwrap();
    }
    let b_id = b.id().to_owned();
    drop(b);
    let mut from_a = Vec::new();
    for n in 0..100 {
        a.append(log_entry(DEFAULT_VAULT_ID, T0), |_, entry| {
            from_a.push(entry)
        })
        .unwrap();
        assert_eq!(n + 1, from_a.len());
    }
    store.insert_journaled_logs(&from_a, a.id(), 100).unwrap();

    // B's restart writes its three.
    let b = Journal::recover(b_dir.path(), &store).unwrap();
    assert_eq!(b.id(), b_id, "a journal keeps its id across restarts");
    let written: Vec<String> = store
        .logs(
            DEFAULT_VAULT_ID,
            &LogQuery {
                limit: 500,
                ..LogQuery::default()
            },
        )
        .unwrap()
        .into_iter()
        .map(|entry| entry.path)
        .filter(|path| path.starts_with("/b/"))
        .collect();
    assert_eq!(written, ["/b/2", "/b/1", "/b/0"]);
    assert_eq!(store.journaled_through(b.id()).unwrap(), 3);
    assert_eq!(store.journaled_through(a.id()).unwrap(), 100);
}

/// Request-log ids rise in commit order also with several servers writing, so a reader
/// following the log with `after` misses nothing: a batch that took its ids, but has not
/// committed, holds back the batches after it rather than letting a higher id land first.
#[test]
fn a_reader_following_the_log_misses_no_entry_of_a_slower_server() {
    let url = cluster().new_database();
    let (a, b) = (
        Arc::new(PostgresStore::open(&url).unwrap()),
        PostgresStore::open(&url).unwrap(),
    );
    let entry = |path: &str| {
        let mut entry = crate::store::tests::log_entry(DEFAULT_VAULT_ID, T0);
        entry.path = path.into();
        entry
    };
    a.insert_journaled_logs(&[entry("/first")], "a", 1).unwrap();
    let follow = |after: i64| -> Vec<(i64, String)> {
        let query = LogQuery {
            after: Some(after),
            limit: 100,
            ..LogQuery::default()
        };
        let mut seen: Vec<(i64, String)> = b
            .logs(DEFAULT_VAULT_ID, &query)
            .unwrap()
            .into_iter()
            .map(|entry| (entry.id, entry.path))
            .collect();
        seen.sort();
        seen
    };
    let mut cursor = follow(0).last().unwrap().0;

    // Server A's next batch takes its id, then waits to move its journal mark (held here).
    let mut holder = client(&url);
    holder
        .batch_execute(
            "BEGIN; SELECT through FROM request_log_journal WHERE journal = 'a' FOR UPDATE",
        )
        .unwrap();
    let slow = std::thread::spawn({
        let a = a.clone();
        move || a.insert_journaled_logs(&[entry("/slow")], "a", 2).unwrap()
    });
    // Sessions of this database waiting for a lock.
    let waiters = || -> i64 {
        client(&url)
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let started = std::time::Instant::now();
    while waiters() < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "A never waited"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Meanwhile server B writes a batch, and a reader follows the log.
    let quick = std::thread::spawn({
        let b = PostgresStore::open(&url).unwrap();
        move || b.insert_logs(&[entry("/quick")]).unwrap()
    });
    let mut seen = Vec::new();
    // B's batch is written, or waits for A's.
    while !quick.is_finished() && waiters() < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (id, path) in follow(cursor) {
        cursor = id;
        seen.push(path);
    }
    holder.batch_execute("COMMIT").unwrap();
    slow.join().unwrap();
    quick.join().unwrap();
    seen.extend(follow(cursor).into_iter().map(|(_, path)| path));
    seen.sort();
    assert_eq!(seen, ["/quick", "/slow"]);
}

/// A vault deleted while a log batch is under way (by another server, say) keeps no entry:
/// the batch has checked the vault and is about to insert when the deletion starts; the
/// deletion waits for it and deletes what it wrote. Without the log's table lock, the
/// deletion would finish first and the batch's entry outlive its vault.
#[test]
fn a_vault_deleted_while_a_log_batch_is_under_way_keeps_no_entry() {
    const PAUSE: i64 = 42;
    let url = cluster().new_database();
    let store = Arc::new(PostgresStore::open(&url).unwrap());
    store.create_vault("doomed", None).unwrap();
    let doomed = store.vault("doomed").unwrap().unwrap().id;
    let entry = |vault: &str, path: &str| {
        let mut entry = crate::store::tests::log_entry(vault, T0);
        entry.path = path.into();
        entry
    };
    let waiting_on = |event: &str| {
        client(&url)
            .query_opt(
                "SELECT 1 FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event = $1",
                &[&event],
            )
            .unwrap()
            .is_some()
    };
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // A pause between the batch's check of its vaults and its insert: a trigger of this
    // test's own database that waits for a lock the test holds.
    let mut holder = client(&url);
    holder
        .batch_execute(&format!(
            "CREATE FUNCTION pause_log_insert() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_advisory_xact_lock_shared({PAUSE}); RETURN NULL; END $$;
             CREATE TRIGGER pause BEFORE INSERT ON request_logs
             FOR EACH STATEMENT EXECUTE FUNCTION pause_log_insert();
             SELECT pg_advisory_lock({PAUSE});"
        ))
        .unwrap();
    let batch = std::thread::spawn({
        let (store, doomed) = (store.clone(), doomed.clone());
        move || store.insert_logs(&[entry(DEFAULT_VAULT_ID, "/kept"), entry(&doomed, "/gone")])
    });
    wait_until("the batch never paused", &|| waiting_on("advisory"));
    let deletion = std::thread::spawn({
        let (store, doomed) = (store.clone(), doomed.clone());
        move || store.delete_vault(&doomed)
    });
    wait_until("the deletion neither ended nor waited", &|| {
        deletion.is_finished() || waiting_on("relation")
    });
    holder
        .batch_execute(&format!("SELECT pg_advisory_unlock({PAUSE})"))
        .unwrap();

    assert_eq!(batch.join().unwrap(), Ok(()));
    assert_eq!(deletion.join().unwrap(), Ok(()));
    let query = LogQuery {
        limit: 10,
        ..LogQuery::default()
    };
    let logged: Vec<String> = store
        .logs(DEFAULT_VAULT_ID, &query)
        .unwrap()
        .into_iter()
        .map(|entry| entry.path)
        .collect();
    assert_eq!(logged, ["/kept"]);
    let left: i64 = holder
        .query_one(
            "SELECT count(*) FROM request_logs WHERE vault_id = $1",
            &[&doomed],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "entries of the deleted vault are left");
}

/// A log batch naming a vault deleted before it is written without that vault's entries,
/// not refused.
#[test]
fn a_log_batch_naming_a_deleted_vault_is_written_without_it() {
    let url = cluster().new_database();
    let store = PostgresStore::open(&url).unwrap();
    store.create_vault("doomed", None).unwrap();
    let doomed = store.vault("doomed").unwrap().unwrap().id;
    store.delete_vault(&doomed).unwrap();
    let mut entries = [
        crate::store::tests::log_entry(DEFAULT_VAULT_ID, T0),
        crate::store::tests::log_entry(&doomed, T0),
    ];
    entries[0].path = "/kept".into();
    store.insert_logs(&entries).unwrap();

    let left: i64 = client(&url)
        .query_one("SELECT count(*) FROM request_logs", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
}
