//! Servers on one database hearing each other's changes (`postgres/changes.rs`): a watcher
//! moves its server's generation when another server announces a change, finds a change it
//! was not notified of on its next re-check, hears again after its connection is ended, and
//! hears nothing from the writes the proxy makes on every request; the proxy's cache does not
//! keep a read that a change overtook.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;

use super::{T0, client, cluster};
use crate::proxy::Cache;
use crate::store::postgres::{DEFAULT_VAULT_ID, PostgresStore, WATCHER_APPLICATION_NAME};
use crate::store::tests::{add_agent, log_entry};
use crate::store::{
    AgentStore, ChangeWatcher, Db, Generation, InstanceRole, RequestLogStore, Store, TokenStore,
    VaultRole, VaultStore,
};

/// How long a test waits for what should take about a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// Wait until `done`, for at most [`PATIENCE`]; how long it took.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The watcher of the database `url` has read the counter on its current connection: it
/// listens, and will see any later change.
fn watcher_ready(url: &str) -> bool {
    client(url)
        .query_opt(
            "SELECT 1 FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1
               AND query LIKE '%change_counter%'",
            &[&WATCHER_APPLICATION_NAME],
        )
        .unwrap()
        .is_some()
}

/// Wait until `generation` has stood still for two re-checks, and return it.
fn settled(generation: &Generation) -> u64 {
    let mut last = generation.current();
    loop {
        std::thread::sleep(super::RECHECK * 2);
        let now = generation.current();
        if now == last {
            return now;
        }
        last = now;
    }
}

fn counter(url: &str) -> i64 {
    client(url)
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM change_counter",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Server `b`'s generation, watched (until the watcher is dropped), on a new database that
/// server `a` shares.
fn two_servers() -> (String, PostgresStore, ChangeWatcher, Generation) {
    let url = cluster().new_database();
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    let generation = Generation::default();
    let watcher = b.watch_changes(generation.clone()).unwrap().unwrap();
    wait_for("the watcher's first read", || watcher_ready(&url));
    (url, a, watcher, generation)
}

#[test]
fn a_change_written_by_one_server_moves_the_generation_of_another() {
    let (_url, a, _b, generation) = two_servers();
    let before = settled(&generation);

    a.create_vault("payments", None).unwrap();

    let took = wait_for("the announced change", || generation.current() != before);
    eprintln!("a change reached the other server in {took:?}");
}

/// The announcement is the database's, made inside the writing transaction: a change that
/// another program commits (an operator's `psql`, or a server that dies right after its
/// commit) reaches the servers just the same.
#[test]
fn a_change_committed_by_any_client_of_the_database_moves_the_generation() {
    let (url, _a, _b, generation) = two_servers();
    let before = settled(&generation);

    client(&url)
        .batch_execute("BEGIN; DELETE FROM vault_grants; UPDATE vaults SET name = name; COMMIT")
        .unwrap();

    let took = wait_for("the committed change", || generation.current() != before);
    eprintln!("a change committed through psql reached the server in {took:?}");
}

#[test]
fn a_change_whose_notification_was_missed_is_found_by_the_re_check() {
    let (url, _a, _b, generation) = two_servers();
    let before = settled(&generation);

    // Counted, never notified: what a listener that was not listening then has missed.
    client(&url)
        .batch_execute("SELECT nextval('change_counter')")
        .unwrap();

    let took = wait_for("the re-check", || generation.current() != before);
    eprintln!("the re-check found the change in {took:?}");
}

#[test]
fn a_watcher_whose_connection_the_server_ended_listens_again() {
    let (url, a, _b, generation) = two_servers();
    let ended: i64 = client(&url)
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
            &[&WATCHER_APPLICATION_NAME],
        )
        .unwrap()
        .get(0);
    assert_eq!(ended, 1);

    wait_for("the watcher's new connection", || watcher_ready(&url));
    let before = settled(&generation);
    a.create_vault("payments", None).unwrap();

    wait_for("the announced change", || generation.current() != before);
}

#[test]
fn request_log_writes_and_token_touches_announce_nothing() {
    let url = cluster().new_database();
    let store = PostgresStore::open(&url).unwrap();
    add_agent(
        &store,
        "deployer",
        InstanceRole::Member,
        &[(DEFAULT_VAULT_ID, VaultRole::Member)],
    );
    let mut listener = client(&url);
    listener
        .batch_execute("LISTEN agent_vault_changes")
        .unwrap();
    let before = counter(&url);

    store
        .insert_logs(&[log_entry(DEFAULT_VAULT_ID, T0)])
        .unwrap();
    store.touch_token("deployer-token", T0 + 60).unwrap();
    assert_eq!(counter(&url), before);

    store.revoke_agent("deployer", T0 + 120).unwrap();
    assert!(counter(&url) > before);
    let heard: Vec<String> = listener
        .notifications()
        .timeout_iter(Duration::from_millis(500))
        .map(|notification| Ok(notification.channel().to_owned()))
        .collect()
        .unwrap();
    assert_eq!(heard, ["agent_vault_changes"]);
}

/// The proxy's cache does not keep what a read found when a change was announced while it
/// read: the change may have committed after the read's snapshot.
#[test]
fn a_read_overtaken_by_a_change_is_not_kept_in_the_proxys_cache() {
    let url = cluster().new_database();
    let store = Arc::new(PostgresStore::open(&url).unwrap());
    let vault = store.vault("default").unwrap().unwrap();
    let generation = Generation::default();
    let cache = Cache::new(Db::new(store.clone()), generation.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // The proxy's read of the vault's services waits behind a lock, its snapshot taken.
    let mut locker = client(&url);
    locker
        .batch_execute("BEGIN; LOCK TABLE services IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let reading = runtime.spawn({
        let (cache, vault) = (cache.clone(), vault.clone());
        async move { cache.view(&vault).await.unwrap().deny_unmatched }
    });
    wait_for("the read to wait on the lock", || {
        client(&url)
            .query_opt(
                "SELECT 1 FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .is_some()
    });

    // Meanwhile the vault starts refusing unknown hosts, and the change is announced; then
    // the read goes on, and finds what its snapshot holds.
    store
        .set_vault_setting(&vault.id, "unmatched_host_policy", Some("deny"))
        .unwrap();
    generation.bump();
    locker.batch_execute("COMMIT").unwrap();
    assert!(!runtime.block_on(reading).unwrap());

    assert!(
        runtime.block_on(cache.view(&vault)).unwrap().deny_unmatched,
        "the next read sees the change"
    );
}
