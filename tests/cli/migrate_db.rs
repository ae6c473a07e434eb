//! `agent-vault migrate-db`: an instance run on SQLite, stopped, copied into a database of
//! the throwaway PostgreSQL cluster (`host/src/store/postgres/tests/cluster.rs`), and served
//! from there with the same master password; and the operator's mistakes: a target that
//! already holds an instance, a copy that fails halfway, a wrong `--from`, an unreachable
//! target, none of which prints the target's password.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::pg_cluster::cluster;
use crate::proxy::{Proxy, send_raw};
use crate::support::{DataDir, Invocation, MASTER_PASSWORD, Run, Server};

/// The password every target URL here carries. The test cluster trusts local connections,
/// so it is never checked; it must never be printed either.
const DB_PASSWORD: &str = "Sekrit-db-pa55word";

/// A new database of the cluster, its URL carrying [`DB_PASSWORD`].
fn target_database() -> String {
    cluster().new_database().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_PASSWORD}@"),
        1,
    )
}

/// How the command shows that URL.
fn shown(url: &str) -> String {
    url.replacen(DB_PASSWORD, "***", 1)
}

/// `agent-vault migrate-db --from sqlite:DB --to URL MORE...`, with no master password in
/// reach; asserts that nothing it printed holds the database password.
fn migrate(db: &std::path::Path, url: &str, more: &[&str]) -> Run {
    let from = format!("sqlite:{}", db.display());
    let mut args = vec!["migrate-db", "--from", &from, "--to", url];
    args.extend(more);
    let run = Invocation::new(&args).run();
    for printed in [run.stdout(), run.stderr()] {
        assert!(!printed.contains(DB_PASSWORD), "{printed}");
    }
    run
}

/// An instance on SQLite with a credential, a service and a vault session that called it
/// once; stopped cleanly. Its database file.
fn stopped_instance() -> (Proxy, PathBuf) {
    // The source is SQLite whichever backend the run gives other tests.
    let mut proxy = Proxy::start_in(
        DataDir::sqlite(),
        &["--mitm-port", "auto"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": "sk_test_moved_0042" }));
    proxy.services(json!([{
        "name": "api",
        "host": "api.test.example",
        "auth": { "type": "bearer", "token": "API_TOKEN" },
    }]));
    assert_eq!(
        proxy
            .call("GET", "api.test.example", "/v1/first", &[])
            .status,
        200
    );
    stop(&mut proxy.server);
    let db = proxy.data.path().join("agent-vault.db");
    (proxy, db)
}

fn stop(server: &mut Server) {
    server.terminate();
    assert!(server.child.wait().unwrap().success());
}

/// A server on the PostgreSQL database `url` that reaches `proxy`'s recording upstream.
fn server_on(url: &str, proxy: &Proxy) -> Server {
    server_in(&DataDir::new(), url, proxy)
}

/// [`server_on`], in the data directory `data`.
fn server_in(data: &DataDir, url: &str, proxy: &Proxy) -> Server {
    let pin = format!("api.test.example:{}:127.0.0.1", proxy.upstream.port);
    Server::start_with(
        data,
        &[
            "--mitm-port",
            "auto",
            "--upstream-ca",
            proxy.upstream.ca_file.to_str().unwrap(),
            "--resolve",
            &pin,
        ],
        &[
            ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
            ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
            ("DATABASE_URL", url),
        ],
    )
}

fn pg(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// The sealed columns of every credential, the CA's key and the data key, as stored.
fn sealed_in_sqlite(db: &std::path::Path) -> Vec<Vec<u8>> {
    let connection = rusqlite::Connection::open(db).unwrap();
    let mut sealed = Vec::new();
    for sql in SEALED {
        let mut statement = connection.prepare(sql).unwrap();
        let rows = statement
            .query_map([], |row| Ok([row.get::<_, Vec<u8>>(0)?, row.get(1)?]))
            .unwrap();
        for row in rows {
            sealed.extend(row.unwrap());
        }
    }
    sealed
}

fn sealed_in_postgres(url: &str) -> Vec<Vec<u8>> {
    let mut client = pg(url);
    let mut sealed = Vec::new();
    for sql in SEALED {
        for row in client.query(sql, &[]).unwrap() {
            sealed.extend([row.get::<_, Vec<u8>>(0), row.get(1)]);
        }
    }
    sealed
}

/// The ids of the default vault's request log, newest first, once it has `rows` (its writer
/// batches rows a moment after their requests).
fn logged(server: &Server, token: &str, rows: usize) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, logs) = server.call("GET", "/v1/vaults/default/logs", Some(token), None);
        let ids: Vec<i64> = logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["id"].as_i64().unwrap())
            .collect();
        if ids.len() >= rows {
            assert_eq!(ids.len(), rows);
            return ids;
        }
        assert!(Instant::now() < deadline, "the log has {ids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SEALED: [&str; 3] = [
    "SELECT nonce, ciphertext FROM credentials ORDER BY vault_id, key",
    "SELECT nonce, ciphertext FROM mitm_ca",
    "SELECT wrap_nonce, wrapped_key FROM master_key",
];

#[test]
fn an_instance_moved_to_postgresql_keeps_its_people_agents_credentials_log_and_ca() {
    // The source is SQLite whichever backend the run gives other tests.
    let mut proxy = Proxy::start_in(
        DataDir::sqlite(),
        &["--mitm-port", "auto"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": "sk_test_moved_0042" }));
    proxy.services(json!([{
        "name": "api",
        "host": "api.test.example",
        "auth": { "type": "bearer", "token": "API_TOKEN" },
    }]));
    proxy.api("POST", "/v1/vaults", json!({ "name": "payments" }));
    let agent = proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "bot", "vaults": [{ "vault_name": "default" }] }),
    );
    let agent_auth = format!("Bearer {}", agent["av_agent_token"].as_str().unwrap());
    let items = proxy.target("api.test.example", "/v1/items");
    let agent_call = |address: &str| {
        send_raw(
            address,
            "GET",
            &items,
            &[("authorization", &agent_auth), ("x-vault", "default")],
            b"",
        )
    };
    assert_eq!(agent_call(&proxy.server.address).status, 200);
    assert_eq!(agent_call(&proxy.server.address).status, 200);
    let (status, _) = proxy.server.call(
        "POST",
        "/v1/proposals",
        Some(&proxy.token),
        Some(&json!({
            "services": [{ "name": "items", "host": "items.test.example",
                           "auth": { "type": "bearer", "token": "ITEMS_KEY" } }],
            "credentials": [{ "key": "ITEMS_KEY" }],
            "message": "I need the items API",
        })),
    );
    assert_eq!(status, 201);
    proxy.api(
        "POST",
        "/v1/users/invites",
        json!({ "email": "friend@example.com" }),
    );
    let ca = send_raw(&proxy.server.address, "GET", "/v1/mitm/ca.pem", &[], b"");
    assert_eq!(ca.status, 200);
    let logged_ids = logged(&proxy.server, &proxy.owner, 2);
    stop(&mut proxy.server);
    let db = proxy.data.path().join("agent-vault.db");

    let url = target_database();
    let copied = migrate(&db, &url, &[]).ok();
    let lines: Vec<&str> = copied.lines().collect();
    assert_eq!(
        lines[0],
        format!("Copying sqlite:{} into {}", db.display(), shown(&url))
    );
    assert_eq!(
        lines[1],
        "Copied in one transaction, every table counted in both databases:"
    );
    for expected in [
        "  master_key: 1",
        "  vaults: 2",
        "  credentials: 1",
        "  users: 1",
        "  agents: 1",
        "  user_invites: 1",
        "  proposals: 1",
        "  mitm_ca: 1",
        "  request_logs: 2",
        "  request_log_journal: 1",
    ] {
        assert!(lines.contains(&expected), "{expected:?} in\n{copied}");
    }
    assert_eq!(
        lines.last(),
        Some(
            &"Start the servers with --database-url (or DATABASE_URL) set to this database and the same master password."
        )
    );
    // Byte for byte: nothing was decrypted or sealed again.
    let sealed = sealed_in_sqlite(&db);
    assert_eq!(sealed.len(), 6);
    assert_eq!(sealed_in_postgres(&url), sealed);

    // A server on PostgreSQL, in a new data directory, with the same master password.
    let server = server_on(&url, &proxy);
    let (status, login) = server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
    );
    assert_eq!(status, 200, "{login}");
    let owner = login["token"].as_str().unwrap();
    let moved = agent_call(&server.address);
    assert_eq!(moved.status, 200, "{moved:?}");
    assert_eq!(
        proxy.upstream.last().header("authorization"),
        ["Bearer sk_test_moved_0042"]
    );
    let ca_there = send_raw(&server.address, "GET", "/v1/mitm/ca.pem", &[], b"");
    assert_eq!(ca_there.status, 200);
    assert_eq!(ca_there.body, ca.body, "the same CA certificate");
    let (_, proposals) = server.call("GET", "/v1/proposals", Some(&proxy.token), None);
    assert_eq!(proposals["proposals"].as_array().unwrap().len(), 1);
    let (_, invites) = server.call("GET", "/v1/users/invites", Some(owner), None);
    assert_eq!(invites["invites"].as_array().unwrap().len(), 1);
    // The log kept its rows, and the new request's row took the next id.
    let ids = logged(&server, owner, 3);
    assert_eq!(ids[1..], logged_ids[..]);
    assert_eq!(ids[0], logged_ids[0] + 1);
}

#[test]
fn a_target_that_holds_an_instance_is_refused_unless_replaced() {
    let (proxy, db) = stopped_instance();
    // A server was started on the target first, and someone registered there.
    let url = target_database();
    let server = server_on(&url, &proxy);
    let (status, _) = server.call(
        "POST",
        "/v1/auth/register",
        None,
        Some(&json!({ "email": "early@example.com", "password": "early password" })),
    );
    assert_eq!(status, 201);
    drop(server);
    let users = |url: &str| -> Vec<String> {
        pg(url)
            .query("SELECT email FROM users", &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };

    let refused = migrate(&db, &url, &[]).fails();
    assert_eq!(
        refused,
        format!(
            "error: the database {} already holds an agent-vault instance (master_key: 1, \
             users: 1, vault_grants: 1, tokens: 1, device_tokens: 1, mitm_ca: 1); nothing was copied. Copy into a new, empty database, or \
             pass --replace to delete what it holds and replace it with the copy\n",
            shown(&url)
        )
    );
    assert_eq!(users(&url), ["early@example.com"]);

    let unconfirmed = migrate(&db, &url, &["--replace"]).fails();
    assert_eq!(
        unconfirmed,
        "error: --replace needs --yes when standard input is not a terminal\n"
    );
    assert_eq!(users(&url), ["early@example.com"]);

    let replaced = migrate(&db, &url, &["--replace", "--yes"]).ok();
    assert!(
        replaced.contains("\nReplaced what the database held (master_key: 1, users: 1, vault_grants: 1, tokens: 1, device_tokens: 1, mitm_ca: 1).\n"),
        "{replaced}"
    );
    assert_eq!(users(&url), ["owner@example.com"]);
    let server = server_on(&url, &proxy);
    let (status, _) = server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
    );
    assert_eq!(status, 200);
}

#[test]
fn a_copy_that_fails_halfway_leaves_the_target_empty() {
    let (_proxy, db) = stopped_instance();
    // SQLite's text may hold a NUL character; PostgreSQL's cannot. The request log is copied
    // after every other table but the journal position.
    let source = rusqlite::Connection::open(&db).unwrap();
    source
        .execute("UPDATE request_logs SET path = ?1", ["/v1/fir\0st"])
        .unwrap();
    let url = target_database();

    let failed = migrate(&db, &url, &[]).fails();
    assert_eq!(
        failed,
        format!(
            "error: cannot copy into the database {}: cannot write table request_logs: invalid \
             byte sequence for encoding \"UTF8\": 0x00; nothing was copied (the transaction \
             was rolled back)\n",
            shown(&url)
        )
    );
    let mut client = pg(&url);
    for (table, rows) in [
        ("master_key", 0),
        ("users", 0),
        ("credentials", 0),
        ("tokens", 0),
        ("mitm_ca", 0),
        ("request_logs", 0),
        ("vaults", 1),
    ] {
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(count, rows, "{table}");
    }

    // Mended, the same copy goes into the same database, which was left empty.
    source
        .execute("UPDATE request_logs SET path = '/v1/first'", [])
        .unwrap();
    let copied = migrate(&db, &url, &[]).ok();
    assert!(copied.contains("\n  request_logs: 1\n"), "{copied}");
}

#[test]
fn a_wrong_source_or_an_unreachable_target_is_refused_clearly_without_the_password() {
    let url = target_database();
    let refused = Invocation::new(&[
        "migrate-db",
        "--from",
        &format!("postgres://agent:{DB_PASSWORD}@db.example/av"),
        "--to",
        &url,
    ])
    .run()
    .fails();
    assert_eq!(
        refused,
        "error: --from must name a SQLite database (sqlite:PATH), not a postgres: URL; \
         migrate-db copies from SQLite into the PostgreSQL database of --to\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("agent-vault.db");
    assert_eq!(
        migrate(&missing, &url, &[]).fails(),
        format!(
            "error: there is no SQLite database at {}\n",
            missing.display()
        )
    );
    assert!(!missing.exists());

    // A real source, and a target nobody listens for.
    drop(agent_vault::store::sqlite::SqliteStore::open(&missing).unwrap());
    let unreachable = format!("postgres://agent:{DB_PASSWORD}@127.0.0.1:1/av?sslmode=disable");
    let failed = migrate(&missing, &unreachable, &[]).fails();
    assert!(
        failed.starts_with(
            "error: database unavailable: cannot connect to the database \
             postgres://agent:***@127.0.0.1:1/av?sslmode=disable: "
        ),
        "{failed}"
    );
}

/// The server that takes over in the data directory the SQLite instance had finds its
/// request-log journal there, holding what the copy already brought over: the journal's
/// mark came with the copy, so nothing is written twice.
#[test]
fn a_server_taking_over_the_old_data_directory_writes_no_log_entry_twice() {
    let (proxy, db) = stopped_instance();
    let url = target_database();
    migrate(&db, &url, &[]).ok();

    let server = server_in(&proxy.data, &url, &proxy);
    assert_eq!(logged(&server, &proxy.owner, 1).len(), 1);
}
