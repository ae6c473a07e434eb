//! A vault's request log and traffic picture in the console: requests an agent makes
//! through the proxy show up in the log page and in the overview's totals, the filters
//! narrow, and the fragment the page's script polls holds only newer rows. Then what a
//! person without the member role, and text an agent chose, can and cannot do to them.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Page, Web};
use crate::store_rows::Rows;
use crate::support::{DataDir, MASTER_PASSWORD, Server};
use crate::upstream::Upstream;

pub(super) const OWNER: &str = "owner@example.com";
pub(super) const PASSWORD: &str = "owner password";
const SECRET: &str = "sk_test_console_log_value";

/// A server whose default vault has a bearer service `api` for the recording upstream.
pub(super) struct Setup {
    pub upstream: Upstream,
    pub server: Server,
    pub owner: String,
    _data: DataDir,
}

impl Setup {
    fn new() -> Setup {
        let setup = Setup::bare();
        ok(
            &setup.server,
            "POST",
            "/v1/credentials",
            Some(&setup.owner),
            json!({ "credentials": { "API_TOKEN": SECRET } }),
        );
        let service = json!({ "name": "api", "host": "api.test.example",
                              "auth": { "type": "bearer", "token": "API_TOKEN" } });
        ok(
            &setup.server,
            "PUT",
            "/v1/vaults/default/services",
            Some(&setup.owner),
            json!({ "services": [service] }),
        );
        setup
    }

    /// A server for the recording upstream whose owner is registered, and no service yet.
    pub(super) fn bare() -> Setup {
        let upstream = Upstream::start(&["api.test.example"]);
        let pin = format!("api.test.example:{}:127.0.0.1", upstream.port);
        let data = DataDir::new();
        let server = Server::start_with(
            &data,
            &[
                "--upstream-ca",
                upstream.ca_file.to_str().unwrap(),
                "--resolve",
                &pin,
                "--rate-limit-profile",
                "off",
            ],
            &[
                ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
                ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
            ],
        );
        let owner = ok(
            &server,
            "POST",
            "/v1/auth/register",
            None,
            json!({ "email": OWNER, "password": PASSWORD }),
        )["token"]
            .as_str()
            .unwrap()
            .to_owned();
        Setup {
            upstream,
            server,
            owner,
            _data: data,
        }
    }

    /// An agent's session for the default vault.
    pub(super) fn session(&self) -> String {
        ok(
            &self.server,
            "POST",
            "/v1/sessions",
            Some(&self.owner),
            json!({ "vault": "default" }),
        )["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A proxied GET of `path` on the upstream (or of a whole `/proxy/...` target); its status.
    pub(super) fn proxy_get(&self, session: &str, path: &str) -> u16 {
        let target = if path.starts_with("/proxy/") {
            path.to_owned()
        } else {
            format!("/proxy/api.test.example:{}{path}", self.upstream.port)
        };
        let address = self.server.url().trim_start_matches("http://").to_owned();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        let request = format!(
            "GET {target} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {session}\r\n\
             connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        String::from_utf8_lossy(&answer)[9..12].parse().unwrap()
    }

    /// Wait (bounded) until the request log holds `count` entries: its writer is a thread of
    /// its own, so an answered request's row reaches the store a moment later.
    fn wait_for_entries(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = ok(
                &self.server,
                "GET",
                "/v1/vaults/default/logs",
                Some(&self.owner),
                serde_json::Value::Null,
            );
            let found = logs["logs"].as_array().unwrap().len();
            if found >= count {
                assert_eq!(found, count, "{logs}");
                return;
            }
            assert!(Instant::now() < deadline, "only {found} entries: {logs}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A JSON call that must succeed; its answer.
pub(super) fn ok(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> serde_json::Value {
    let body = (!body.is_null()).then_some(&body);
    let (status, answer) = server.call(method, path, token, body);
    assert!((200..300).contains(&status), "{method} {path}: {answer}");
    answer
}

/// The ids of the log rows a page (or fragment) holds, in order.
fn row_ids(page: &Page) -> Vec<i64> {
    page.body
        .split("<tr data-id=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The paths of the log rows a page holds, in order.
fn row_paths(page: &Page) -> Vec<String> {
    page.body
        .split("data-label=\"Path\" class=\"mono wrap\">")
        .skip(1)
        .map(|rest| rest[..rest.find('<').unwrap()].to_owned())
        .collect()
}

#[test]
fn proxied_requests_appear_in_the_log_page_and_the_traffic_picture() {
    let setup = Setup::new();
    let session = setup.session();
    assert_eq!(setup.proxy_get(&session, "/v1/items"), 200);
    assert_eq!(setup.proxy_get(&session, "/v1/orders"), 200);
    assert_eq!(setup.proxy_get(&session, "/redirect"), 302);
    assert_eq!(
        setup.proxy_get(&session, "/proxy/elsewhere.example/v1/items"),
        403,
        "no service covers the host"
    );
    setup.wait_for_entries(4);

    let mut web = Web::sign_in(&setup.server, OWNER, PASSWORD);
    let log = web.get("/vaults/default/logs");
    assert_eq!(log.status, 200, "{}", log.text());
    assert_eq!(
        row_paths(&log),
        ["/v1/items", "/redirect", "/v1/orders", "/v1/items"],
        "newest first"
    );
    assert!(log.shows("elsewhere.example"), "{}", log.text());
    assert!(log.shows("403 forbidden"), "{}", log.text());
    assert!(log.body.contains(r#"<span class="badge info">302</span>"#));
    assert!(log.body.contains(r#"<span class="badge ok">200</span>"#));
    assert!(!log.body.contains(SECRET), "no credential in the page");

    // Filters narrow, as a GET form would ask.
    let redirects = web.get("/vaults/default/logs?service=&status=3xx&ingress=&span=");
    assert_eq!(row_paths(&redirects), ["/redirect"]);
    let api = web.get("/vaults/default/logs?service=api&span=15m");
    assert_eq!(row_paths(&api), ["/redirect", "/v1/orders", "/v1/items"]);
    assert!(
        api.body
            .contains(r#"<option value="api" selected>api</option>"#),
        "the form keeps what was chosen"
    );
    let transparent = web.get("/vaults/default/logs?ingress=transparent");
    assert!(row_ids(&transparent).is_empty());
    assert!(
        transparent.shows("No requests match these filters"),
        "{}",
        transparent.text()
    );
    let bad = web.get("/vaults/default/logs?span=forever");
    assert_eq!(bad.status, 200);
    assert!(
        bad.body
            .contains("There is no time span &#34;forever&#34;."),
        "{}",
        bad.text()
    );

    // The fragment the script polls: only rows after the id, and nothing else.
    let ids = row_ids(&log);
    let newer = web.get(&format!(
        "/vaults/default/logs?fragment=rows&after={}",
        ids[2]
    ));
    assert_eq!(newer.status, 200);
    assert_eq!(row_ids(&newer), ids[..2]);
    assert!(!newer.body.contains("<html"), "{}", newer.body);
    let none = web.get(&format!(
        "/vaults/default/logs?fragment=rows&after={}",
        ids[0]
    ));
    assert_eq!((none.status, none.body.trim()), (200, ""));
    // The first page tells the script where to follow on from.
    assert!(
        log.body.contains(&format!(
            r#"data-follow="/vaults/default/logs?fragment=rows&amp;after=" data-after="{}""#,
            ids[0]
        )),
        "{}",
        log.body
    );
    assert_eq!(setup.proxy_get(&session, "/v1/later"), 200);
    setup.wait_for_entries(5);
    let later = web.get(&format!(
        "/vaults/default/logs?fragment=rows&after={}",
        ids[0]
    ));
    assert_eq!(row_paths(&later), ["/v1/later"]);

    // The overview's picture counts the same requests.
    let overview = web.get("/vaults/default");
    assert_eq!(overview.status, 200);
    assert!(
        overview.shows(
            "5 requests in the last hour, per minute (times UTC): 2xx: 3 3xx: 1 4xx: 1 5xx: 0"
        ),
        "{}",
        overview.text()
    );
    assert!(overview.body.contains("<svg "), "{}", overview.body);
    assert!(overview.body.contains(
        r#"<title id="traffic-title">Requests per minute over the last hour, by status class</title>"#
    ));
    let day = web.get("/vaults/default?window=day");
    assert!(day.shows("5 requests in the last day"), "{}", day.text());
    let stats = ok(
        &setup.server,
        "GET",
        "/v1/vaults/default/logs/stats?window=day",
        Some(&setup.owner),
        serde_json::Value::Null,
    );
    assert_eq!(stats["bucket_seconds"], 900);
    assert_eq!(stats["buckets"].as_array().unwrap().len(), 96);
    assert_eq!(
        stats["totals"],
        json!({ "2xx": 3, "3xx": 1, "4xx": 1, "5xx": 0, "other": 0 })
    );

    let server_log = setup.server.log_so_far().join("\n");
    assert!(!server_log.contains(SECRET), "{server_log}");
}

#[test]
fn the_log_pages_of_many_requests_go_back_with_older_links() {
    let setup = Setup::new();
    insert_entries(&setup, 120, "/v1/charges", "api.test.example");
    let mut web = Web::sign_in(&setup.server, OWNER, PASSWORD);
    let first = web.get("/vaults/default/logs?status=2xx");
    assert_eq!(row_ids(&first).len(), 50);
    assert_eq!(row_paths(&first)[0], "/v1/charges/119");
    let older = first
        .body
        .split("<a class=\"button secondary\" href=\"")
        .find_map(|rest| {
            let link = &rest[..rest.find('"').unwrap()];
            link.contains("before=").then(|| link.replace("&#38;", "&"))
        })
        .expect("a link to older requests");
    assert!(older.ends_with("&status=2xx"), "{older}");
    let second = web.get(&older);
    assert_eq!(row_paths(&second)[0], "/v1/charges/69");
    assert!(second.shows("Back to the newest"));
    assert!(
        !second.body.contains("data-follow"),
        "only the first page follows new rows"
    );
}

/// Write `count` entries into the default vault's log as the proxy would, paths
/// `{prefix}/{n}`.
fn insert_entries(setup: &Setup, count: usize, prefix: &str, host: &str) {
    let mut db = Rows::open(&setup._data);
    let vault_id = db.value("SELECT id FROM vaults WHERE name = $1", &["default".into()]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    db.in_transaction(|db| {
        for n in 0..count {
            db.execute(
                "INSERT INTO request_logs (vault_id, ingress, method, host, path, matched_service, credential_keys, status, latency_ms, error_code, created_at)
                 VALUES ($1, 'explicit', 'GET', $2, $3, 'api', '[\"API_TOKEN\"]', 200, 12, NULL, $4)",
                &[
                    vault_id.text().into(),
                    host.into(),
                    format!("{prefix}/{n}").into(),
                    now.into(),
                ],
            );
        }
    });
}

#[test]
fn people_outside_the_vault_and_agent_sessions_see_no_log_and_agent_text_is_escaped() {
    let setup = Setup::new();
    // An agent's choice of path and host, as the proxy logs them.
    insert_entries(
        &setup,
        1,
        "/<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
    );
    let mut owner = Web::sign_in(&setup.server, OWNER, PASSWORD);
    for path in ["/vaults/default/logs", "/vaults/default"] {
        let page = owner.get(path);
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
    }
    let log = owner.get("/vaults/default/logs");
    assert!(
        log.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;/0"),
        "shown, escaped: {}",
        log.body
    );

    // People hold the admin or member role in a vault (a user's vault role cannot be
    // proxy), and both may read its log; a person outside the vault cannot even see it, and
    // no page of its log answers them.
    let invite = ok(
        &setup.server,
        "POST",
        "/v1/users/invites",
        Some(&setup.owner),
        json!({ "email": "outsider@example.com", "role": "member", "vaults": [] }),
    );
    let token = invite["token"].as_str().unwrap();
    ok(
        &setup.server,
        "POST",
        &format!("/v1/users/invites/{token}/accept"),
        None,
        json!({ "password": "a user password" }),
    );
    let mut outsider = Web::sign_in(&setup.server, "outsider@example.com", "a user password");
    for path in [
        "/vaults/default",
        "/vaults/default/logs",
        "/vaults/default/logs?status=2xx",
        "/vaults/default/logs?fragment=rows&after=0",
    ] {
        let page = outsider.get(path);
        assert_eq!(page.status, 404, "{path}: {}", page.text());
        assert!(page.shows("Vault not found: default"), "{}", page.text());
        assert!(!page.body.contains("alert(1)"), "{}", page.body);
        assert!(!page.shows("Traffic"), "{}", page.text());
    }

    // The stats route refuses what /logs refuses, with the same words: an agent's session
    // (the proxy role), a vault that is not there.
    let session = setup.session();
    for (token, vault) in [
        (session.as_str(), "default"),
        (setup.owner.as_str(), "nowhere"),
    ] {
        let logs = setup.server.call(
            "GET",
            &format!("/v1/vaults/{vault}/logs"),
            Some(token),
            None,
        );
        let stats = setup.server.call(
            "GET",
            &format!("/v1/vaults/{vault}/logs/stats"),
            Some(token),
            None,
        );
        assert!(
            [
                (403, "Member role required"),
                (404, "Vault not found: nowhere")
            ]
            .contains(&(logs.0, logs.1["error"].as_str().unwrap_or_default())),
            "{logs:?}"
        );
        assert_eq!(stats, logs);
    }
    let (status, answer) = setup.server.call(
        "GET",
        "/v1/vaults/default/logs/stats?window=week",
        Some(&setup.owner),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("window must be hour or day, not \"week\""))
    );
    let (status, answer) = setup.server.call(
        "GET",
        "/v1/vaults/default/logs?since=yesterday",
        Some(&setup.owner),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (
            400,
            Some("since must be a time like 2025-01-31T12:00:00Z, not \"yesterday\"")
        )
    );
}
