//! `agent-vault server --database-url`: the state in a PostgreSQL database instead of the
//! data directory's SQLite file, shared by servers that name the same database (replicas,
//! each with its data directory and the master password); `master-password change` on it. The database is one of the
//! throwaway cluster's (`host/src/store/postgres/tests/cluster.rs`).

use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::pg_cluster::cluster;
use crate::proxy::{Answer, Proxy, send_raw};
use crate::support::{DataDir, MASTER_PASSWORD, Server};

const OWNER: &str = "owner@example.com";
const OWNER_PASSWORD: &str = "correct horse battery staple";

/// `agent-vault auth VERB` against `server` as the owner, from the CLI data directory `cli`.
fn auth(cli: &DataDir, verb: &str, server: &Server) -> String {
    cli.command(&[
        "auth",
        verb,
        "--address",
        &server.url(),
        "--email",
        OWNER,
        "--password-stdin",
    ])
    .stdin(&format!("{OWNER_PASSWORD}\n"))
    .run()
    .ok()
}

#[test]
fn servers_on_one_postgresql_database_share_users_vaults_and_the_master_key() {
    let url = cluster().new_database();
    let env = [
        ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
        ("DATABASE_URL", url.as_str()),
    ];
    let first_data = DataDir::new();
    let first = Server::start_with(&first_data, &[], &env);
    let owner = DataDir::new();
    assert_eq!(
        auth(&owner, "register", &first),
        "Registered and logged in as owner@example.com (owner).\n"
    );
    assert_eq!(
        owner.run(&["vault", "create", "payments"]).ok(),
        "Created vault payments; you are its admin.\n"
    );

    // A second server on the same database unlocks the same master key, and knows the
    // owner and the vault.
    let second_data = DataDir::new();
    let second = Server::start_with(&second_data, &[], &env);
    let elsewhere = DataDir::new();
    assert_eq!(
        auth(&elsewhere, "login", &second),
        "Logged in as owner@example.com (owner).\n"
    );
    assert_eq!(
        elsewhere.run(&["vault", "list"]).ok(),
        "  NAME      ROLE   MEMBERSHIP\n* default   admin  explicit\n  payments  admin  explicit\n"
    );
    for data in [&first_data, &second_data] {
        assert!(!data.path().join("agent-vault.db").exists());
    }

    // The master password changes in the database, for every server's next start.
    let new_password = "a brand new master password";
    let changed = DataDir::new()
        .command(&["master-password", "change", "--password-stdin"])
        .env("DATABASE_URL", &url)
        .stdin(&format!("{MASTER_PASSWORD}\n{new_password}\n"))
        .run();
    assert_eq!(
        changed.ok(),
        "Master password changed. A running server keeps its unlocked key; from its next start it needs the new password.\n"
    );
    let third_data = DataDir::new();
    let third = Server::start_with(
        &third_data,
        &[],
        &[
            ("AGENT_VAULT_MASTER_PASSWORD", new_password),
            ("DATABASE_URL", url.as_str()),
        ],
    );
    assert_eq!(
        auth(&DataDir::new(), "login", &third),
        "Logged in as owner@example.com (owner).\n"
    );
}

/// Server A (with the recording upstream, the owner and an agent's vault token) and server B
/// on one new PostgreSQL database; B reaches the same upstream.
fn two_servers() -> (String, Proxy, Server) {
    let url = cluster().new_database();
    let env = [
        ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
        ("DATABASE_URL", url.as_str()),
    ];
    let a = Proxy::start_with(&[], &env);
    a.credentials(json!({ "API_TOKEN": "sk_test_injected" }));
    a.services(json!([{
        "name": "api",
        "host": "api.test.example",
        "auth": { "type": "bearer", "token": "API_TOKEN" },
    }]));
    let pin = format!("api.test.example:{}:127.0.0.1", a.upstream.port);
    let b = Server::start_with(
        &DataDir::new(),
        &[
            "--upstream-ca",
            a.upstream.ca_file.to_str().unwrap(),
            "--resolve",
            &pin,
        ],
        &[
            ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
            ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
            ("DATABASE_URL", url.as_str()),
        ],
    );
    (url, a, b)
}

/// The agent's request to the upstream through `server`, with `a`'s vault token.
fn agent_call(a: &Proxy, server: &Server) -> Answer {
    call_with(a, server, &a.token, "api.test.example")
}

/// A request to `host` on the upstream through `server`, with the vault token `token`.
fn call_with(a: &Proxy, server: &Server, token: &str, host: &str) -> Answer {
    let auth = format!("Bearer {token}");
    send_raw(
        &server.address,
        "GET",
        &a.target(host, "/v1/items"),
        &[("authorization", &auth)],
        b"",
    )
}

/// Call through `server` until the answer is `expected` (status, proxy error code or "" for a
/// success); how long it took. A replica should follow within about a second; this waits
/// five, well short of anything else that would drop its cache (a session is re-read after
/// 15 s, a service never).
fn until_answer(a: &Proxy, server: &Server, expected: (u16, &str)) -> Duration {
    until(expected, || agent_call(a, server))
}

/// [`until_answer`] for any request.
fn until(expected: (u16, &str), call: impl Fn() -> Answer) -> Duration {
    let start = Instant::now();
    loop {
        let answer = call();
        let got = if answer.status == 200 {
            (200, String::new())
        } else {
            answer.proxy_error()
        };
        if (got.0, got.1.as_str()) == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {got:?} instead of {expected:?} after 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_service_disabled_or_a_token_revoked_on_one_server_stops_working_on_the_other() {
    let (_url, a, b) = two_servers();
    // B serves the agent, and keeps the service and the session in its cache.
    assert_eq!(agent_call(&a, &b).status, 200);
    assert_eq!(
        a.upstream.last().header("authorization"),
        ["Bearer sk_test_injected"]
    );
    // A token made on A while B runs works on B at once.
    let before = a.api("GET", "/v1/sessions?vault=default", json!({}));
    let minted = a.api("POST", "/v1/sessions", json!({ "vault": "default" }));
    let token = minted["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call_with(&a, &b, &token, "api.test.example").status,
        200,
        "a token made on A, used on B"
    );

    a.api(
        "PATCH",
        "/v1/vaults/default/services/api",
        json!({ "enabled": false }),
    );
    let took = until_answer(&a, &b, (403, "service_disabled"));
    eprintln!("a service disabled on A was refused on B after {took:?}");

    a.api(
        "PATCH",
        "/v1/vaults/default/services/api",
        json!({ "enabled": true }),
    );
    until_answer(&a, &b, (200, ""));

    // The token made on A, revoked on A, is refused on B; the agent's first token still works.
    let ids = |sessions: &serde_json::Value| -> Vec<String> {
        sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|session| session["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let after = a.api("GET", "/v1/sessions?vault=default", json!({}));
    let old = ids(&before);
    let new: Vec<String> = ids(&after)
        .into_iter()
        .filter(|id| !old.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "{before} {after}");
    a.api(
        "DELETE",
        &format!("/v1/sessions/{}?vault=default", new[0]),
        json!({}),
    );
    let took = until((401, "unauthorized"), || {
        call_with(&a, &b, &token, "api.test.example")
    });
    eprintln!("a token revoked on A was refused on B after {took:?}");
    assert_eq!(agent_call(&a, &b).status, 200);
}

#[test]
fn a_proposal_approved_on_one_server_is_a_service_on_the_other() {
    let (_url, a, b) = two_servers();
    // The agent wants a service for other.test.example; A has none and says so.
    let other = || call_with(&a, &a.server, &a.token, "other.test.example");
    assert_eq!(other().proxy_error(), (403, "forbidden".to_owned()));
    let (status, proposed) = a.server.call(
        "POST",
        "/v1/proposals",
        Some(&a.token),
        Some(&json!({
            "services": [{ "name": "other", "host": "other.test.example",
                           "auth": { "type": "bearer", "token": "OTHER_KEY" } }],
            "credentials": [{ "key": "OTHER_KEY", "description": "The other API's key" }],
            "message": "I need the other API",
            "user_message": "Please add the other API",
        })),
    );
    assert_eq!(status, 201, "{proposed}");
    let id = proposed["id"].as_u64().unwrap();

    // The owner approves it on B, with the credential's value.
    let (status, approved) = b.call(
        "POST",
        &format!("/v1/admin/proposals/{id}/approve"),
        Some(&a.owner),
        Some(&json!({ "credentials": { "OTHER_KEY": "sk_test_approved_on_b" } })),
    );
    assert_eq!(status, 200, "{approved}");
    let took = until((200, ""), other);
    eprintln!("a proposal approved on B was a service on A after {took:?}");
    assert_eq!(
        a.upstream.last().header("authorization"),
        ["Bearer sk_test_approved_on_b"]
    );
}

/// A replica killed (SIGKILL) in the middle of a burst of writes through it: every write it
/// acknowledged (a 200 the client received) is there when read through the other replica,
/// the credential with the value of its last acknowledged write (or of a later one that was
/// under way), every acknowledged session working.
#[test]
fn a_replica_killed_mid_burst_loses_no_acknowledged_write() {
    use crate::adversarial::faults::{Ledger, kill, next_random, random_seed};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (_url, a, b) = two_servers();
    let seed = random_seed();
    let ledger = Ledger::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| ledger.credential_writer(&a.server.address, &a.owner, writer, stop.clone()))
        .chain([ledger.session_writer(&a.server.address, &a.owner, stop.clone())])
        .collect();
    // Somewhere between 0.3 and 1.3 s into the burst, with writes in flight.
    std::thread::sleep(Duration::from_millis(300 + next_random(seed) % 1000));
    kill(&a.server);
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let (credentials, sessions) = ledger.acknowledged();
    eprintln!(
        "A acknowledged {credentials} credential writes and {sessions} sessions before the kill"
    );
    assert!(
        credentials > 0 && sessions > 0,
        "seed {seed}: the burst wrote something: {credentials} credential writes, {sessions} sessions"
    );
    ledger.check(&b, &a.owner, &format!("seed {seed}, read through B"));
}

/// Each server listens for the others' changes on a connection of its own; when the database
/// ends it, the server connects again and misses nothing.
#[test]
fn a_server_whose_listening_connection_was_ended_still_follows_the_other() {
    let (url, a, b) = two_servers();
    assert_eq!(agent_call(&a, &b).status, 200);
    // Each server's watcher connects on a thread of its own, after the server is up.
    let start = Instant::now();
    while listeners(&url) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the watchers never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ended: i64 = postgres::Client::connect(&url, postgres::NoTls)
        .unwrap()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'agent-vault changes'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ended, 2, "one listening connection per server");

    a.api(
        "PATCH",
        "/v1/vaults/default/services/api",
        json!({ "enabled": false }),
    );
    let took = until_answer(&a, &b, (403, "service_disabled"));
    eprintln!("a change on A reached B, whose listener had been ended, after {took:?}");
    b.wait_for_log(&["not listening for other servers' changes to the database"]);
    b.wait_for_log(&["listening again for other servers' changes"]);
}

/// How many servers' change watchers are connected to the database `url`.
fn listeners(url: &str) -> i64 {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'agent-vault changes'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// `bytes` (a plugin component) with a custom section appended: the same plugin, loading and
/// deciding alike, at another sha256, as a rebuilt or patched copy would be.
fn another_build_of(bytes: &[u8]) -> Vec<u8> {
    let name = b"agent-vault-test";
    let payload = b"another build";
    let mut patched = bytes.to_vec();
    patched.push(0); // a custom section
    patched.push((1 + name.len() + payload.len()) as u8);
    patched.push(name.len() as u8);
    patched.extend_from_slice(name);
    patched.extend_from_slice(payload);
    patched
}

/// Servers on one database share the services, but each has its own plugin directory. A
/// service pinned to a plugin's sha256 is refused by a server whose directory holds another
/// build of that plugin, or none, and that server says so in its log, rather than letting
/// the other build decide how the credential is attached.
#[test]
fn a_server_without_the_plugin_build_a_service_pins_refuses_it_and_says_so() {
    let url = cluster().new_database();
    let env = [
        ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
        ("DATABASE_URL", url.as_str()),
    ];
    let plugin = std::fs::read(crate::support::built_wasm("fixture_counter")).unwrap();
    let a_data = DataDir::new();
    std::fs::write(a_data.plugin_dir().join("fixture-counter.wasm"), &plugin).unwrap();
    let a = Proxy::start_in(a_data, &[], &env);
    let pinned = hex::encode(Sha256::digest(&plugin));
    a.services(json!([{
        "name": "api",
        "host": "api.test.example",
        "auth": { "type": "plugin", "plugin": "fixture-counter", "sha256": pinned },
    }]));
    assert_eq!(agent_call(&a, &a.server).status, 200);

    let pin = format!("api.test.example:{}:127.0.0.1", a.upstream.port);
    let args = [
        "--upstream-ca",
        a.upstream.ca_file.to_str().unwrap(),
        "--resolve",
        &pin,
    ];
    let env = [
        ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
        ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
        ("DATABASE_URL", url.as_str()),
    ];

    // B holds another build of the plugin.
    let b_data = DataDir::new();
    let other = another_build_of(&plugin);
    std::fs::write(b_data.plugin_dir().join("fixture-counter.wasm"), &other).unwrap();
    let b = Server::start_with(&b_data, &args, &env);
    let delivered = a.upstream.received().len();
    let answer = agent_call(&a, &b);
    let expected = format!(
        "plugin fixture-counter is at sha256 {}, but the service pins {pinned}",
        hex::encode(Sha256::digest(&other))
    );
    assert_eq!(answer.proxy_error(), (502, "plugin_error".into()));
    assert_eq!(answer.json()["message"], expected.as_str());
    b.wait_for_log(&["proxy error:", &expected]);

    // C has no such plugin at all.
    let c = Server::start_with(&DataDir::new(), &args, &env);
    let answer = agent_call(&a, &c);
    assert_eq!(answer.proxy_error(), (502, "plugin_error".into()));
    c.wait_for_log(&["proxy error:", "fixture-counter"]);

    assert_eq!(
        a.upstream.received().len(),
        delivered,
        "nothing went out from the servers without the pinned build"
    );
}
