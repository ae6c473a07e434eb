//! The request log as `GET /v1/vaults/{name}/logs` serves it (newest first, paged with id
//! cursors, and only the vault's own entries) and as `agent-vault vault logs` prints it.
//! (The proxy writes the entries; here they are written straight into the server's
//! database, as the proxy would.) Then the log's journal: the rows of answered requests
//! survive a killed server, and a journal that cannot be written stops the proxy.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::store_rows::Rows;
use crate::support::{self, DataDir, MASTER_PASSWORD, Server};
use crate::upstream::Upstream;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn insert_entries(data: &DataDir, vault: &str, count: usize) {
    let mut db = Rows::open(data);
    let vault_id = db.value("SELECT id FROM vaults WHERE name = $1", &[vault.into()]);
    let now = now();
    db.in_transaction(|db| {
        for n in 0..count {
            db.execute(
                "INSERT INTO request_logs (vault_id, ingress, method, host, path, matched_service, credential_keys, status, latency_ms, error_code, created_at)
                 VALUES ($1, 'explicit', 'GET', 'api.stripe.com', $2, 'stripe', '[\"STRIPE_KEY\"]', 200, 12, NULL, $3)",
                &[vault_id.text().into(), format!("/v1/charges/{n}").into(), now.into()],
            );
        }
    });
}

#[test]
fn the_request_log_pages_newest_first_with_cursors() {
    let data = DataDir::new();
    let owner = {
        let server = Server::start(&data);
        let (status, answer) = server.call(
            "POST",
            "/v1/auth/register",
            None,
            Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
        );
        assert_eq!(status, 201);
        let token = answer["token"].as_str().unwrap().to_owned();
        let (status, _) = server.call(
            "POST",
            "/v1/vaults",
            Some(&token),
            Some(&json!({ "name": "other" })),
        );
        assert_eq!(status, 201);
        token
    };
    insert_entries(&data, "default", 120);
    insert_entries(&data, "other", 5);
    let server = Server::start(&data);
    let page = |query: &str| {
        let (status, answer) = server.call(
            "GET",
            &format!("/v1/vaults/default/logs{query}"),
            Some(&owner),
            None,
        );
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let paths = |answer: &serde_json::Value| -> Vec<String> {
        answer["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect()
    };

    let first = page("");
    assert_eq!(paths(&first).len(), 50);
    assert_eq!(paths(&first)[0], "/v1/charges/119", "newest first");
    assert_eq!(first["logs"][0]["credential_keys"], json!(["STRIPE_KEY"]));
    assert_eq!(first["logs"][0]["matched_service"], "stripe");
    let cursor = first["next_cursor"].as_i64().unwrap();
    let second = page(&format!("?before={cursor}"));
    assert_eq!(paths(&second)[0], "/v1/charges/69");
    let last = page(&format!(
        "?before={}&limit=200",
        second["next_cursor"].as_i64().unwrap()
    ));
    assert_eq!(paths(&last).len(), 20);
    assert_eq!(
        last["next_cursor"],
        serde_json::Value::Null,
        "no more pages"
    );
    let newer = page(&format!(
        "?after={}&limit=5",
        first["latest_id"].as_i64().unwrap() - 3
    ));
    assert_eq!(
        paths(&newer),
        ["/v1/charges/119", "/v1/charges/118", "/v1/charges/117"]
    );

    let (status, answer) = server.call(
        "GET",
        "/v1/vaults/default/logs?before=1&after=2",
        Some(&owner),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("before and after cannot be used together"))
    );
    let (status, answer) = server.call(
        "GET",
        "/v1/vaults/default/logs?limit=500",
        Some(&owner),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("limit must be 1 to 200"))
    );
}

/// One request as the proxy logs it.
struct Row {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    service: Option<&'static str>,
    keys: &'static str,
    status: u16,
    latency_ms: u64,
    error: Option<&'static str>,
}

const CHARGE: Row = Row {
    method: "GET",
    host: "api.stripe.com",
    path: "/v1/charges",
    service: Some("stripe"),
    keys: r#"["STRIPE_KEY"]"#,
    status: 200,
    latency_ms: 12,
    error: None,
};

const ISSUE: Row = Row {
    method: "POST",
    host: "api.github.com",
    path: "/repos/acme/app/issues",
    service: Some("github"),
    keys: r#"["GH_TOKEN","GH_APP_ID"]"#,
    status: 502,
    latency_ms: 1500,
    error: Some("upstream_error"),
};

const UNMATCHED: Row = Row {
    method: "DELETE",
    host: "internal.example.com:8443",
    path: "/users/7",
    service: None,
    keys: "[]",
    status: 0,
    latency_ms: 0,
    error: Some("no_match"),
};

/// The lines `vault logs` prints for [`CHARGE`], [`ISSUE`] and [`UNMATCHED`], after the time.
const CHARGE_LINE: &str = "GET     api.stripe.com/v1/charges  200    12ms  stripe  STRIPE_KEY  -";
const ISSUE_LINE: &str = "POST    api.github.com/repos/acme/app/issues  502  1500ms  github  GH_TOKEN,GH_APP_ID  upstream_error";
const UNMATCHED_LINE: &str =
    "DELETE  internal.example.com:8443/users/7    -     0ms  -  -  no_match";

fn insert_rows(data: &DataDir, vault: &str, rows: &[&Row]) {
    let mut db = Rows::open(data);
    db.in_transaction(|db| {
        let vault_id = db.value("SELECT id FROM vaults WHERE name = $1", &[vault.into()]);
        for row in rows {
            db.execute(
                "INSERT INTO request_logs (vault_id, ingress, method, host, path, matched_service, credential_keys, status, latency_ms, error_code, created_at)
                 VALUES ($1, 'explicit', $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    vault_id.text().into(),
                    row.method.into(),
                    row.host.into(),
                    row.path.into(),
                    row.service.into(),
                    row.keys.into(),
                    i64::from(row.status).into(),
                    (row.latency_ms as i64).into(),
                    row.error.into(),
                    now().into(),
                ],
            );
        }
    });
}

/// A running server and the owner's CLI data directory, logged in to it.
fn server_with_owner() -> (DataDir, Server, DataDir) {
    let server_data = DataDir::new();
    let server = Server::start(&server_data);
    let owner = DataDir::new();
    owner
        .command(&[
            "auth",
            "register",
            "--address",
            &server.url(),
            "--email",
            "owner@example.com",
            "--password-stdin",
        ])
        .stdin("owner password\n")
        .run()
        .ok();
    (server_data, server, owner)
}

/// The printed lines without their time, checking that each starts with one.
fn without_time(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| strip_time(line).to_owned())
        .collect()
}

fn strip_time(line: &str) -> &str {
    let (time, rest) = line
        .split_once("  ")
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time:?} is not an RFC 3339 time"
    );
    rest
}

#[test]
fn vault_logs_prints_the_newest_entries_oldest_first() {
    let (server_data, _server, owner) = server_with_owner();
    owner.run(&["vault", "create", "other"]).ok();
    let empty = owner.run(&["vault", "logs"]);
    assert_eq!(empty.ok(), "", "nothing logged is not a failure");
    assert_eq!(empty.stderr(), "No requests logged in vault default.\n");

    insert_rows(&server_data, "default", &[&CHARGE, &ISSUE, &UNMATCHED]);
    insert_rows(&server_data, "other", &[&ISSUE]);
    assert_eq!(
        without_time(&owner.run(&["vault", "logs"]).ok()),
        [CHARGE_LINE, ISSUE_LINE, UNMATCHED_LINE]
    );
    assert_eq!(
        without_time(&owner.run(&["vault", "logs", "--limit", "2"]).ok()),
        [ISSUE_LINE, UNMATCHED_LINE]
    );
    assert_eq!(
        without_time(&owner.run(&["vault", "logs", "--vault", "other"]).ok()),
        [ISSUE_LINE]
    );

    // More than the API's page of 200: read in two pages, printed in one order.
    insert_entries(&server_data, "default", 250);
    let lines = without_time(&owner.run(&["vault", "logs", "-n", "240"]).ok());
    assert_eq!(lines.len(), 240);
    assert!(lines[0].starts_with("GET     api.stripe.com/v1/charges/10  200"));
    assert!(lines[239].starts_with("GET     api.stripe.com/v1/charges/249  200"));
}

#[test]
fn vault_logs_shows_only_one_service_status_class_or_ingress_when_asked() {
    let (server_data, server, owner) = server_with_owner();
    insert_rows(
        &server_data,
        "default",
        &[&CHARGE, &ISSUE, &UNMATCHED, &CHARGE],
    );
    let logs = |filter: &[&str]| {
        let mut args = vec!["vault", "logs"];
        args.extend(filter);
        without_time(&owner.run(&args).ok())
    };
    assert_eq!(logs(&["--service", "stripe"]), [CHARGE_LINE, CHARGE_LINE]);
    assert_eq!(logs(&["--status", "5xx"]), [ISSUE_LINE]);
    assert_eq!(
        logs(&["--status", "2xx", "--service", "github"]),
        Vec::<String>::new()
    );
    assert_eq!(
        logs(&["--ingress", "explicit", "-n", "2"]),
        [UNMATCHED_LINE, CHARGE_LINE]
    );
    let none = owner.run(&["vault", "logs", "--ingress", "transparent"]);
    assert_eq!(none.ok(), "");
    assert_eq!(
        none.stderr(),
        "No requests that match logged in vault default.\n"
    );

    // The API names what it does not understand.
    let refused = owner.run(&["vault", "logs", "--status", "200"]).fails();
    assert!(
        refused.contains("status_bucket must be 1xx to 5xx"),
        "{refused}"
    );
    let token = support::session_token(&owner);
    let (status, answer) = server.call(
        "GET",
        "/v1/vaults/default/logs?ingress=sideways",
        Some(&token),
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "ingress must be explicit or transparent (mitm), not \"sideways\""
    );
    // Agent Vault's name for the transparent ingress is understood.
    let (status, answer) = server.call(
        "GET",
        "/v1/vaults/default/logs?ingress=mitm",
        Some(&token),
        None,
    );
    assert_eq!(
        (status, answer["logs"].as_array().map(Vec::len)),
        (200, Some(0))
    );
}

#[test]
fn discovered_hosts_are_the_hosts_agents_tried_that_no_service_covers() {
    let (server_data, server, owner) = server_with_owner();
    owner
        .command(&[
            "vault",
            "credential",
            "set",
            "STRIPE_KEY=sk_test_discovered",
        ])
        .run()
        .ok();
    owner
        .run(&[
            "vault",
            "service",
            "add",
            "--name",
            "stripe",
            "--host",
            "api.stripe.com",
            "--auth-type",
            "bearer",
            "--token-key",
            "STRIPE_KEY",
        ])
        .ok();
    let refused = |host: &'static str| Row {
        method: "POST",
        host,
        path: "/v1/chat/completions",
        service: None,
        keys: "[]",
        status: 403,
        latency_ms: 0,
        error: Some("forbidden"),
    };
    let tunnelled = Row {
        method: "CONNECT",
        host: "uploads.example.com:443",
        path: "",
        service: None,
        keys: "[]",
        status: 200,
        latency_ms: 0,
        error: None,
    };
    let openai = refused("api.openai.com:443");
    let openai_other_port = refused("api.openai.com:8443");
    // Covered by the stripe service since these were refused.
    let stripe = refused("api.stripe.com:443");
    insert_rows(
        &server_data,
        "default",
        &[
            &openai,
            &stripe,
            &tunnelled,
            &openai,
            &stripe,
            &openai_other_port,
            &tunnelled,
            &openai,
            &CHARGE,
            &ISSUE,
        ],
    );
    let token = support::session_token(&owner);
    let discovered = |query: &str| {
        let (status, answer) = server.call(
            "GET",
            &format!("/v1/vaults/default/discovered-hosts{query}"),
            Some(&token),
            None,
        );
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let all = discovered("");
    assert_eq!(all["total"], 2);
    let hosts = all["hosts"].as_array().unwrap();
    assert_eq!(
        hosts
            .iter()
            .map(|host| (
                host["host"].as_str().unwrap(),
                host["request_count"].as_u64().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("api.openai.com", 4), ("uploads.example.com", 2)]
    );
    assert!(hosts[0]["last_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(discovered("?limit=1")["hosts"].as_array().unwrap().len(), 1);
    let count_only = discovered("?limit=0");
    assert_eq!(
        (
            count_only["hosts"].as_array().unwrap().len(),
            &count_only["total"]
        ),
        (0, &json!(2))
    );
    let (status, answer) = server.call(
        "GET",
        "/v1/vaults/default/discovered-hosts?limit=500",
        Some(&token),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("limit must be 0 to 100"))
    );
}

/// A command left running; killed when dropped, so that a failed test leaves nothing behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn vault_logs_follow_prints_entries_logged_after_it_started() {
    let (server_data, _server, owner) = server_with_owner();
    insert_rows(&server_data, "default", &[&CHARGE]);

    let mut command = Command::new(support::binary());
    command
        .args(["vault", "logs", "--follow", "--data-dir"])
        .arg(owner.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for name in [
        "AGENT_VAULT_HOME",
        "AGENT_VAULT_TOKEN",
        "AGENT_VAULT_ADDR",
        "AGENT_VAULT_VAULT",
    ] {
        command.env_remove(name);
    }
    let mut following = Running(command.spawn().unwrap());
    let stdout = BufReader::new(following.0.stdout.take().unwrap());
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let next_line = || {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("`vault logs --follow` printed nothing more");
        strip_time(&line).to_owned()
    };

    assert_eq!(
        next_line(),
        CHARGE_LINE,
        "what was logged before it started"
    );
    insert_rows(&server_data, "default", &[&ISSUE, &UNMATCHED]);
    assert_eq!(next_line(), ISSUE_LINE);
    assert_eq!(next_line(), UNMATCHED_LINE);
    insert_rows(&server_data, "default", &[&CHARGE]);
    assert_eq!(next_line(), CHARGE_LINE);

    drop(following);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(5)).ok(),
        None,
        "each entry is printed once"
    );
}

// The journal.

/// What every server of these tests is started with: the recording upstream pinned to
/// 127.0.0.1 and trusted, no rate limits, and the test master password.
struct Setup {
    upstream: Upstream,
    pin: String,
}

impl Setup {
    fn new() -> Setup {
        let upstream = Upstream::start(&["api.test.example"]);
        let pin = format!("api.test.example:{}:127.0.0.1", upstream.port);
        Setup { upstream, pin }
    }

    /// The agents of these tests call as fast as they can: no rate limits.
    fn args(&self) -> [&str; 6] {
        [
            "--upstream-ca",
            self.upstream.ca_file.to_str().unwrap(),
            "--resolve",
            &self.pin,
            "--rate-limit-profile",
            "off",
        ]
    }

    const ENV: [(&str, &str); 2] = [
        ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
        ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
    ];

    /// `/proxy/...` for `path` on the upstream.
    fn target(&self, path: &str) -> String {
        format!("/proxy/api.test.example:{}{path}", self.upstream.port)
    }
}

/// Register the owner, give the default vault a bearer service for the upstream, and mint a
/// vault session: (owner token, session token). `call` is the server's JSON API call.
fn owner_and_session(
    call: impl Fn(&str, &str, Option<&str>, serde_json::Value) -> (u16, serde_json::Value),
) -> (String, String) {
    let (status, registered) = call(
        "POST",
        "/v1/auth/register",
        None,
        json!({ "email": "owner@example.com", "password": "owner password" }),
    );
    assert_eq!(status, 201, "{registered}");
    let owner = registered["token"].as_str().unwrap().to_owned();
    let (status, answer) = call(
        "POST",
        "/v1/credentials",
        Some(&owner),
        json!({ "credentials": { "API_TOKEN": "sk_test_journal" } }),
    );
    assert_eq!(status, 200, "{answer}");
    let service = json!({ "name": "api", "host": "api.test.example",
                          "auth": { "type": "bearer", "token": "API_TOKEN" } });
    let (status, answer) = call(
        "PUT",
        "/v1/vaults/default/services",
        Some(&owner),
        json!({ "services": [service] }),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, session) = call(
        "POST",
        "/v1/sessions",
        Some(&owner),
        json!({ "vault": "default" }),
    );
    assert_eq!(status, 200, "{session}");
    (owner, session["token"].as_str().unwrap().to_owned())
}

/// A proxied GET on a new connection; its status, or `None` if no whole answer head came
/// back (the server was killed).
fn try_proxy_get(address: &str, target: &str, token: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    if !answer.contains("\r\n\r\n") {
        return None;
    }
    answer.get(9..12)?.parse().ok()
}

/// How many rows the request log holds for each path, read from the database.
fn rows_by_path(mut db: Rows) -> std::collections::BTreeMap<String, i64> {
    db.query("SELECT path, count(*) FROM request_logs GROUP BY path", &[])
        .into_iter()
        .map(|row| (row[0].text().to_owned(), row[1].int()))
        .collect()
}

#[test]
fn a_killed_server_loses_no_row_of_an_answered_request() {
    // Agents call through the proxy while the server is killed (SIGKILL) at a random
    // moment, again and again; each request answered 200 must be in the log once the server
    // is back, exactly once, however far its batch had got.
    let setup = Setup::new();
    let data = DataDir::new();
    let token = {
        let server = Server::start_with(&data, &setup.args(), &Setup::ENV);
        let call = |method: &str, path: &str, token: Option<&str>, body| {
            server.call(method, path, token, Some(&body))
        };
        owner_and_session(call).1
    };
    let answered = Arc::new(Mutex::new(Vec::new()));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut pauses = Vec::new();
    for round in 0..6u64 {
        let mut server = Server::start_with(&data, &setup.args(), &Setup::ENV);
        let stop = Arc::new(AtomicBool::new(false));
        let agents: Vec<_> = (0..3)
            .map(|agent| {
                let (address, token) = (server.address.clone(), token.clone());
                let (stop, answered) = (stop.clone(), answered.clone());
                let target = setup.target(&format!("/v1/round-{round}/agent-{agent}"));
                std::thread::spawn(move || {
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let path = format!("{target}/{n}");
                        match try_proxy_get(&address, &path, &token) {
                            Some(200) => {
                                let logged = path.split_once("/v1/").unwrap().1;
                                answered.lock().unwrap().push(format!("/v1/{logged}"));
                            }
                            Some(status) => panic!("{path}: {status}"),
                            None => return,
                        }
                    }
                })
            })
            .collect();
        let pause = 150 + (nanos / (round + 1)) % 450;
        pauses.push(pause);
        std::thread::sleep(Duration::from_millis(pause));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for agent in agents {
            agent.join().unwrap();
        }
    }
    let _server = Server::start_with(&data, &setup.args(), &Setup::ENV);
    let rows = rows_by_path(Rows::open(&data));
    let answered = answered.lock().unwrap();
    assert!(answered.len() > 100, "only {} answered", answered.len());
    let lost: Vec<&String> = answered.iter().filter(|p| !rows.contains_key(*p)).collect();
    assert!(
        lost.is_empty(),
        "kills after {pauses:?} ms: {} of {} answered requests have no row, e.g. {:?}",
        lost.len(),
        answered.len(),
        &lost[..lost.len().min(5)]
    );
    let twice: Vec<_> = rows.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "rows written twice: {twice:?}");
    // A row may also be a request whose answer the kill cut off, never one that did not
    // reach the upstream.
    assert!(rows.len() <= setup.upstream.received().len());
}

#[test]
fn a_journal_that_cannot_be_written_stops_the_proxy_until_it_can() {
    use crate::adversarial::confined::{ConfinedServer, Confinement};
    // The journal's directory is a 64 KiB tmpfs of its own in the server's mount namespace;
    // the test fills it through /proc/PID/root, and later makes room again.
    let setup = Setup::new();
    let data = tempfile::tempdir().unwrap();
    let server = ConfinedServer::start(
        data.path(),
        Confinement {
            journal_tmpfs_kib: Some(64),
            ..Confinement::default()
        },
        &setup.args(),
        &Setup::ENV,
    );
    let call = |method: &str, path: &str, token: Option<&str>, body| {
        server.call(method, path, token, &body)
    };
    let (_, token) = owner_and_session(call);
    let target = setup.target("/v1/used");
    assert_eq!(server.send("GET", &target, &token, b"").status, 200);
    let mut answered = 1;

    let filler = server.inside("request-log-journal/filler");
    fill(&filler);
    // Appends go on while the journal file's last page has room; the one that finds none
    // fails (its request was already answered), and the proxy stops forwarding.
    let refused = (0..500)
        .find_map(|_| {
            let answer = server.send("GET", &target, &token, b"");
            if answer.status == 200 {
                answered += 1;
                return None;
            }
            Some(answer)
        })
        .expect("the journal never filled up");
    assert_eq!(
        refused.proxy_error(),
        (503, "request_log_unavailable".to_owned())
    );
    server.wait_for_log(&[
        "cannot write the request log's journal",
        "No space left on device",
    ]);

    // Room again: the server opens a new journal file and forwards, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if server.send("GET", &target, &token, b"").status == 200 {
            answered += 1;
            break;
        }
        assert!(Instant::now() < deadline, "the proxy never forwarded again");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.wait_for_log(&["the request log's journal is written again"]);

    // Every answered request is in the log (the one whose append failed too); refusals are
    // not requests the proxy made.
    let log = server.stop().join("\n");
    assert!(!log.contains("panicked"), "{log}");
    // The confined server keeps its state in SQLite whatever the run's backend
    // (adversarial/confined.rs).
    let rows = rows_by_path(Rows::sqlite_in(data.path()));
    assert_eq!(rows.get("/v1/used"), Some(&answered));
}

/// Write zeros to `path` until its file system is full.
fn fill(path: &std::path::Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 16 * 1024];
    loop {
        match file.write_all(&block) {
            Ok(()) => continue,
            Err(error) if error.raw_os_error() == Some(28) => break, // ENOSPC
            Err(error) => panic!("filling the disk: {error}"),
        }
    }
}

#[test]
fn a_server_whose_journal_cannot_be_opened_does_not_start() {
    let data = DataDir::new();
    std::fs::write(data.path().join("request-log-journal"), "in the way").unwrap();
    let refused = data
        .command(&["server", "--port", "0", "--mitm-port", "0"])
        .env("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD)
        .run()
        .fails();
    let expected = format!(
        "cannot open the request log's journal: cannot create the request log's journal \
         directory {}: File exists (os error 17)",
        data.path().join("request-log-journal").display()
    );
    assert!(refused.contains(&expected), "{refused}");
}
