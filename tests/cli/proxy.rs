//! The explicit ingress, `/proxy/{host}/{path}`, end to end: an agent with a vault token
//! calls a recording HTTPS upstream through a real server, and the tests look at exactly what
//! the upstream received and what the agent got back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::store_rows::Rows;
use crate::support::{Backend, DataDir, MASTER_PASSWORD, Server};
use crate::upstream::{Received, Upstream};

/// An instance with an owner, a recording upstream at `api.test.example` (and friends), and a
/// vault token for the default vault.
pub struct Proxy {
    pub upstream: Upstream,
    pub server: Server,
    pub data: DataDir,
    pub owner: String,
    pub token: String,
}

/// Names the upstream answers for; all pinned to 127.0.0.1.
const NAMES: [&str; 3] = [
    "api.test.example",
    "uploads.test.example",
    "other.test.example",
];

impl Proxy {
    pub fn start() -> Proxy {
        Proxy::start_with(&[], &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")])
    }

    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        Proxy::start_in(DataDir::new(), args, env)
    }

    /// With built plugins (crate names) dropped into the plugin directory first.
    pub fn start_plugins(crates: &[&str]) -> Proxy {
        let data = DataDir::new();
        for name in crates {
            let file = format!("{}.wasm", name.replace('_', "-"));
            std::fs::copy(
                crate::support::built_wasm(name),
                data.plugin_dir().join(file),
            )
            .unwrap();
        }
        Proxy::start_in(
            data,
            &[],
            &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
        )
    }

    pub fn start_in(data: DataDir, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        Proxy::start_under(&[], data, args, env)
    }

    /// Start the server under a `wrapper` command (`Server::start_under`).
    pub fn start_under(
        wrapper: &[&str],
        data: DataDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        let upstream = Upstream::start(&NAMES);
        let pins: Vec<String> = NAMES
            .iter()
            .map(|name| format!("{name}:{}:127.0.0.1", upstream.port))
            .collect();
        let mut all_args: Vec<&str> = vec!["--upstream-ca", upstream.ca_file.to_str().unwrap()];
        for pin in &pins {
            all_args.extend(["--resolve", pin.as_str()]);
        }
        all_args.extend(args);
        let mut all_env = vec![("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD)];
        all_env.extend(env);
        let server = Server::start_under(wrapper, &data, &all_args, &all_env);
        let (status, registered) = server.call(
            "POST",
            "/v1/auth/register",
            None,
            Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
        );
        assert_eq!(status, 201, "{registered}");
        let owner = registered["token"].as_str().unwrap().to_owned();
        let (status, session) = server.call(
            "POST",
            "/v1/sessions",
            Some(&owner),
            Some(&json!({ "vault": "default" })),
        );
        assert_eq!(status, 200, "{session}");
        let token = session["token"].as_str().unwrap().to_owned();
        Proxy {
            upstream,
            server,
            data,
            owner,
            token,
        }
    }

    /// Owner API call that must succeed.
    pub fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self
            .server
            .call(method, path, Some(&self.owner), Some(&body));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }

    pub fn credentials(&self, pairs: Value) {
        self.api("POST", "/v1/credentials", json!({ "credentials": pairs }));
    }

    pub fn services(&self, services: Value) {
        self.api(
            "PUT",
            "/v1/vaults/default/services",
            json!({ "services": services }),
        );
    }

    /// `/proxy/{name}:{port}{path}` for an upstream name.
    pub fn target(&self, name: &str, path: &str) -> String {
        format!("/proxy/{name}:{}{path}", self.upstream.port)
    }

    /// Send a raw HTTP/1.1 request to the proxy; the parsed answer.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        send_raw(&self.server.address, method, target, headers, body)
    }

    /// The agent's request with the vault token.
    pub fn call(&self, method: &str, name: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.send(method, &self.target(name, path), &all, b"")
    }
}

/// What the agent got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A proxy error: its status and code, with the proxy's marker header.
    pub fn proxy_error(&self) -> (u16, String) {
        assert_eq!(
            self.header("x-agent-vault-proxy-error"),
            Some("true"),
            "{self:?}"
        );
        (
            self.status,
            self.json()["error"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

pub fn send_raw(
    address: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
    out
}

fn bearer_service(name: &str, host: &str) -> Value {
    json!({ "name": name, "host": host, "auth": { "type": "bearer", "token": "API_TOKEN" } })
}

/// The headers an agent's request carries that must reach the upstream untouched.
fn assert_agent_headers_gone(received: &Received) {
    assert!(
        received.header("x-vault").is_empty(),
        "X-Vault must not reach the upstream"
    );
    assert!(received.header("proxy-authorization").is_empty());
    for (_, value) in &received.headers {
        assert!(
            !value.contains("av_sess_"),
            "the agent's token must not reach the upstream"
        );
    }
}

#[test]
fn bearer_injects_the_token_and_strips_the_agents_own() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "sk_test_injected" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let answer = proxy.call(
        "GET",
        "api.test.example",
        "/v1/items?limit=3",
        &[("x-client", "a"), ("x-vault", "default")],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), json!({ "ok": true }));
    let received = proxy.upstream.last();
    assert_eq!(received.method, "GET");
    assert_eq!(received.target, "/v1/items?limit=3");
    assert_eq!(
        received.header("authorization"),
        ["Bearer sk_test_injected"]
    );
    assert_eq!(received.header("x-client"), ["a"]);
    assert_eq!(
        received.header("host"),
        [format!("api.test.example:{}", proxy.upstream.port)]
    );
    assert_eq!(
        received.version, "HTTP/2.0",
        "HTTP/2 to an upstream that offers it"
    );
    assert_agent_headers_gone(&received);
}

#[test]
fn every_standard_plugin_sends_exactly_its_credential() {
    let proxy = Proxy::start();
    proxy.credentials(json!({
        "API_TOKEN": "tok", "USER": "u", "PASS": "p", "KEY": "k-1", "ZD": "zd-secret", "HMAC_SECRET": "s3cret",
        "AWS_ID": "AKIDEXAMPLE", "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    }));
    let plugin = |name: &str, path: &str, plugin: &str, config: Value, credentials: Value| {
        json!({ "name": name, "host": format!("api.test.example{path}"),
                "auth": { "type": "plugin", "plugin": plugin, "config": config, "credentials": credentials } })
    };
    proxy.services(json!([
        { "name": "bearer", "host": "api.test.example/bearer", "auth": { "type": "bearer", "token": "API_TOKEN" } },
        { "name": "basic", "host": "api.test.example/basic", "auth": { "type": "basic", "username": "USER", "password": "PASS" } },
        { "name": "api-key", "host": "api.test.example/api-key", "auth": { "type": "api-key", "key": "KEY", "header": "x-api-key", "prefix": "Key " } },
        { "name": "custom", "host": "api.test.example/custom", "auth": { "type": "custom", "headers": { "X-Zd": "Token token={{ ZD }}", "X-Tenant": "t-1" } } },
        { "name": "passthrough", "host": "api.test.example/passthrough", "auth": { "type": "passthrough" } },
        plugin("query-param", "/query", "query-param", json!({ "name": "key" }), json!({ "key": "KEY" })),
        plugin("hmac", "/hmac", "hmac", json!({ "timestamp-header": "x-ts" }), json!({ "secret": "HMAC_SECRET" })),
        plugin("aws", "/aws", "aws-sigv4", json!({ "region": "us-east-1", "service": "execute-api" }),
               json!({ "access_key_id": "AWS_ID", "secret_access_key": "AWS_SECRET" })),
    ]));
    let get = |path: &str| {
        let answer = proxy.call("GET", "api.test.example", path, &[("cookie", "mine=1")]);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        let received = proxy.upstream.last();
        assert_agent_headers_gone(&received);
        received
    };
    assert_eq!(get("/bearer").header("authorization"), ["Bearer tok"]);
    assert_eq!(get("/basic").header("authorization"), ["Basic dTpw"]);
    let api_key = get("/api-key");
    assert_eq!(api_key.header("x-api-key"), ["Key k-1"]);
    assert!(api_key.header("authorization").is_empty());
    let custom = get("/custom");
    assert_eq!(
        (custom.header("x-zd"), custom.header("x-tenant")),
        (vec!["Token token=zd-secret"], vec!["t-1"])
    );
    let passthrough = get("/passthrough");
    assert!(passthrough.header("authorization").is_empty());
    assert_eq!(passthrough.header("cookie"), ["mine=1"]);
    assert_eq!(get("/query?x=1").target, "/query?x=1&key=k-1");
    let hmac = get("/hmac");
    assert_eq!(hmac.header("x-signature")[0].len(), 64);
    assert_eq!(hmac.header("x-ts")[0].len(), 10);
    let aws = get("/aws");
    let authorization = aws.header("authorization")[0];
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && authorization.contains("/us-east-1/execute-api/aws4_request"),
        "{authorization}"
    );
    assert_eq!(aws.header("x-amz-date")[0].len(), 16);
}

#[test]
fn discover_lists_services_and_credential_names() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example/v1/*")]));
    let answer = proxy.send(
        "GET",
        "/discover",
        &[("authorization", &format!("Bearer {}", proxy.token))],
        b"",
    );
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({ "vault": "default", "services": [{ "name": "api", "host": "api.test.example/v1/*", "any_port": true }], "available_credentials": ["API_TOKEN"] })
    );
    let owner = proxy.send(
        "GET",
        "/discover",
        &[("authorization", &format!("Bearer {}", proxy.owner))],
        b"",
    );
    assert_eq!(owner.proxy_error().0, 403);
}

#[test]
fn agent_tokens_name_their_vault() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let agent = proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "bot", "vaults": [{ "vault_name": "default" }] }),
    );
    let token = format!("Bearer {}", agent["av_agent_token"].as_str().unwrap());
    let target = proxy.target("api.test.example", "/x");
    let without = proxy.send("GET", &target, &[("authorization", &token)], b"");
    assert_eq!(without.proxy_error(), (400, "bad_request".into()));
    let with = proxy.send(
        "GET",
        &target,
        &[("authorization", &token), ("x-vault", "default")],
        b"",
    );
    assert_eq!(with.status, 200, "{with:?}");
    assert_eq!(
        proxy.upstream.last().header("authorization"),
        ["Bearer tok"]
    );
    let unknown = proxy.send(
        "GET",
        &target,
        &[("authorization", &token), ("x-vault", "nope")],
        b"",
    );
    assert_eq!(unknown.proxy_error(), (404, "not_found".into()));
    // A vault the agent has no grant in.
    proxy.api("POST", "/v1/vaults", json!({ "name": "private" }));
    let ungranted = proxy.send(
        "GET",
        &target,
        &[("authorization", &token), ("x-vault", "private")],
        b"",
    );
    assert_eq!(ungranted.proxy_error(), (403, "forbidden".into()));
    // A vault token naming another vault than its own.
    let scoped = format!("Bearer {}", proxy.token);
    let elsewhere = proxy.send(
        "GET",
        &target,
        &[("authorization", &scoped), ("x-vault", "private")],
        b"",
    );
    assert_eq!(elsewhere.proxy_error(), (403, "forbidden".into()));
}

#[test]
fn each_error_row_of_the_contract() {
    let proxy = Proxy::start_with(
        &[
            "--max-request-bytes",
            "1024",
            "--max-response-bytes",
            "1000",
            "--upstream-timeout",
            "2",
        ],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([
        bearer_service("api", "api.test.example"),
        { "name": "off", "host": "uploads.test.example", "enabled": false, "auth": { "type": "bearer", "token": "API_TOKEN" } },
        { "name": "missing", "host": "other.test.example/missing*", "auth": { "type": "bearer", "token": "NOT_SET" } },
        { "name": "read-only", "host": "other.test.example/ro/*", "auth": { "type": "bearer", "token": "API_TOKEN" },
          "allow": [{ "methods": ["GET"], "paths": ["/ro/*"] }] },
    ]));
    let target = proxy.target("api.test.example", "/x");
    // 401: no token, a wrong one.
    assert_eq!(
        proxy.send("GET", &target, &[], b"").proxy_error(),
        (401, "unauthorized".into())
    );
    assert_eq!(
        proxy
            .send(
                "GET",
                &target,
                &[("authorization", "Bearer av_sess_0000")],
                b""
            )
            .proxy_error(),
        (401, "unauthorized".into())
    );
    // 403 forbidden with a proposal hint: a host no service covers.
    let unmatched = proxy.call("GET", "nowhere.test.example", "/", &[]);
    assert_eq!(unmatched.proxy_error(), (403, "forbidden".into()));
    let hint = &unmatched.json()["proposal_hint"];
    assert_eq!(
        hint["host"],
        format!("nowhere.test.example:{}", proxy.upstream.port)
    );
    assert_eq!(hint["endpoint"], "POST /v1/proposals");
    assert_eq!(hint["supported_auth_types"][0], "bearer");
    assert!(
        unmatched.json()["help"]
            .as_str()
            .unwrap()
            .contains("/discover")
    );
    // 403 service_disabled.
    assert_eq!(
        proxy
            .call("GET", "uploads.test.example", "/", &[])
            .proxy_error(),
        (403, "service_disabled".into())
    );
    // 403 path_not_allowed.
    assert_eq!(
        proxy
            .call("POST", "other.test.example", "/ro/x", &[])
            .proxy_error(),
        (403, "path_not_allowed".into())
    );
    assert_eq!(
        proxy.call("GET", "other.test.example", "/ro/x", &[]).status,
        200
    );
    // 502 credential_not_found, naming the key (also through a custom-header template).
    proxy.api(
        "POST",
        "/v1/vaults/default/services",
        json!({ "services": [{ "name": "templated", "host": "other.test.example/templated",
                               "auth": { "type": "custom", "headers": { "X-Key": "k={{ ABSENT_KEY }}" } } }] }),
    );
    let templated = proxy.call("GET", "other.test.example", "/templated", &[]);
    assert_eq!(
        templated.proxy_error(),
        (502, "credential_not_found".into())
    );
    assert!(
        templated.json()["message"]
            .as_str()
            .unwrap()
            .contains("ABSENT_KEY")
    );
    let missing = proxy.call("GET", "other.test.example", "/missing", &[]);
    assert_eq!(missing.proxy_error(), (502, "credential_not_found".into()));
    assert!(
        missing.json()["message"]
            .as_str()
            .unwrap()
            .contains("NOT_SET")
    );
    // 413 request_too_large.
    let big = proxy.send(
        "POST",
        &target,
        &[("authorization", &format!("Bearer {}", proxy.token))],
        &vec![b'x'; 2048],
    );
    assert_eq!(big.proxy_error(), (413, "request_too_large".into()));
    // 502 response_too_large.
    assert_eq!(
        proxy
            .call("GET", "api.test.example", "/big", &[])
            .proxy_error(),
        (502, "response_too_large".into())
    );
    // 504 upstream_timeout.
    assert_eq!(
        proxy
            .call("GET", "api.test.example", "/hang", &[])
            .proxy_error(),
        (504, "upstream_timeout".into())
    );
}

#[test]
fn allowing_private_ranges_reaches_an_internal_upstream_without_an_allowlist() {
    for (setting, expected) in [("true", 200), ("false", 403)] {
        let proxy = Proxy::start_with(&[], &[("AGENT_VAULT_ALLOW_PRIVATE_RANGES", setting)]);
        proxy.credentials(json!({ "API_TOKEN": "tok" }));
        proxy.services(json!([bearer_service("api", "api.test.example")]));
        let answer = proxy.call("GET", "api.test.example", "/", &[]);
        assert_eq!(answer.status, expected, "{setting}: {answer:?}");
    }
}

#[test]
fn upstream_failures_are_told_apart() {
    // Not allowlisted: the pinned loopback address is refused.
    let blocked = Proxy::start_with(&[], &[]);
    blocked.credentials(json!({ "API_TOKEN": "tok" }));
    blocked.services(json!([bearer_service("api", "api.test.example")]));
    assert_eq!(
        blocked
            .call("GET", "api.test.example", "/", &[])
            .proxy_error(),
        (403, "upstream_blocked".into())
    );
    assert!(blocked.upstream.received().is_empty());
    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pin = format!("refused.test.example:{port}:127.0.0.1");
    let refused = Proxy::start_with(
        &["--resolve", &pin],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    refused.credentials(json!({ "API_TOKEN": "tok" }));
    refused.services(json!([bearer_service("api", "refused.test.example")]));
    let auth = format!("Bearer {}", refused.token);
    let answer = refused.send(
        "GET",
        &format!("/proxy/refused.test.example:{port}/"),
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(answer.proxy_error(), (502, "upstream_error".into()));
}

#[test]
fn responses_pass_through_without_set_cookie_and_redirects_are_not_followed() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let cookie = proxy.call("GET", "api.test.example", "/set-cookie", &[]);
    assert_eq!(cookie.status, 200);
    assert_eq!(cookie.header("x-upstream"), Some("yes"));
    assert_eq!(cookie.header("set-cookie"), None);
    let redirect = proxy.call("GET", "api.test.example", "/redirect", &[]);
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (302, Some("https://elsewhere.example/landing"))
    );
    assert_eq!(
        proxy.upstream.received().len(),
        2,
        "the redirect was not followed"
    );
}

#[test]
fn a_streamed_response_arrives_as_it_is_sent() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let mut stream = TcpStream::connect(&proxy.server.address).unwrap();
    write!(
        stream,
        "GET {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        proxy.target("api.test.example", "/stream"),
        proxy.token
    )
    .unwrap();
    // Read until the first event arrives: a proxy that buffered the response would hand over
    // all three events at once, after the upstream's last one.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "the stream ended before the first event");
        seen.extend_from_slice(&chunk[..read]);
        if String::from_utf8_lossy(&seen).contains("data: 0") {
            break;
        }
    }
    assert!(
        !String::from_utf8_lossy(&seen).contains("data: 2"),
        "the first event came alone"
    );
    stream.read_to_end(&mut seen).unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("data: 1") && text.contains("data: 2"),
        "{text}"
    );
}

/// Read from `stream` until `needle` has arrived; everything read so far.
pub fn read_until(stream: &mut impl Read, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).unwrap();
        assert!(
            read > 0,
            "ended before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..read]);
        if String::from_utf8_lossy(&seen).contains(needle) {
            return String::from_utf8_lossy(&seen).into_owned();
        }
    }
}

/// An agent's GET of `path` on the upstream through the explicit ingress, sent on a
/// connection of its own; the connection, to read the answer from.
fn send_get(proxy: &Proxy, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(&proxy.server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
        proxy.target("api.test.example", path),
        proxy.token
    )
    .unwrap();
    stream
}

/// After SIGTERM: the server exited cleanly, without waiting out the grace period for a
/// connection that never finished.
pub fn assert_stopped_cleanly(server: &mut Server) {
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    let log = server.rest_of_log();
    assert!(
        !log.iter().any(|line| line.contains("still in flight")),
        "{log:#?}"
    );
}

#[test]
fn stopping_the_server_lets_an_answer_in_flight_finish() {
    let mut proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    // An idle keep-alive connection must not hold the shutdown up...
    let mut idle = TcpStream::connect(&proxy.server.address).unwrap();
    write!(idle, "GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    read_until(&mut idle, "\"ok\"");
    // ...and an event stream under way is answered to its end.
    let mut stream = send_get(&proxy, "/stream");
    let first = read_until(&mut stream, "data: 0");
    assert!(!first.contains("data: 2"), "{first}");

    proxy.server.terminate();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("data: 1") && rest.contains("data: 2"),
        "{rest}"
    );
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "the chunked body ended: {rest:?}"
    );
    assert_stopped_cleanly(&mut proxy.server);
}

#[test]
fn an_answer_that_outlasts_the_shutdown_grace_is_cut_with_a_warning() {
    let mut proxy = Proxy::start_with(
        &["--shutdown-grace", "1"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let mut stream = send_get(&proxy, "/hang");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .upstream
        .received()
        .iter()
        .any(|received| received.target == "/hang")
    {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    proxy.server.terminate();
    let exit = proxy.server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    let log = proxy.server.rest_of_log();
    assert!(
        log.iter()
            .any(|line| line.contains("requests still in flight after 1 s")),
        "{log:#?}"
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}

#[test]
fn no_spelling_of_a_path_reaches_what_an_allow_rule_excludes() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([{ "name": "repos", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" },
                            "allow": [{ "methods": ["*"], "paths": ["/repos/org/*"] }] }]));
    assert_eq!(
        proxy
            .call("GET", "api.test.example", "/repos/org/app", &[])
            .status,
        200
    );
    let before = proxy.upstream.received().len();
    for path in [
        "/repos/org/../admin",
        "/repos/org/%2e%2e/admin",
        "/repos/org/%2E%2e/admin",
        "/repos/org/.%2E/admin",
        "/repos/org%2f..%2fadmin",
        "/repos/org%2F%2E%2E%2Fadmin",
        "/repos/org/..%5cadmin",
        "//admin",
        "/admin",
        "/REPOS/org/app",
        "/repos/org/./../admin",
    ] {
        let answer = proxy.call("GET", "api.test.example", path, &[]);
        let (status, code) = answer.proxy_error();
        assert!(
            (status, code.as_str()) == (400, "bad_request")
                || (status, code.as_str()) == (403, "path_not_allowed"),
            "{path}: {status} {code}"
        );
    }
    assert_eq!(
        proxy.upstream.received().len(),
        before,
        "nothing reached the upstream"
    );
}

/// Found by the `services` fuzz target: a service whose path held `://` was accepted, then
/// its stored form read back as a host with a scheme and every service of the vault stopped
/// working.
#[test]
fn a_service_path_holding_a_scheme_separator_leaves_the_vault_working() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([
        { "name": "odd", "host": "odd.test.example", "path": "/go/https://*",
          "auth": { "type": "bearer", "token": "API_TOKEN" } },
        bearer_service("api", "api.test.example"),
    ]));
    let listed = proxy.api("GET", "/v1/vaults/default/services", json!({}));
    assert_eq!(
        listed["services"][0]["host"], "odd.test.example/go/https://*",
        "{listed}"
    );
    let answer = proxy.call("GET", "api.test.example", "/v1/charges", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(proxy.upstream.last().target, "/v1/charges");
}

/// Found by the `path` fuzz target: `%+c` was read as the escape of byte 0x0c.
#[test]
fn a_percent_sign_followed_by_a_sign_is_a_bad_escape() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let before = proxy.upstream.received().len();
    for path in ["/files/a%+c", "/files/%+0"] {
        let answer = proxy.call("GET", "api.test.example", path, &[]);
        assert_eq!(
            answer.proxy_error(),
            (400, "bad_request".to_owned()),
            "{path}"
        );
        assert_eq!(
            answer.json()["message"],
            "the path has a \"%\" that is not followed by two hex digits",
            "{path}"
        );
    }
    assert_eq!(
        proxy.upstream.received().len(),
        before,
        "nothing reached the upstream"
    );
}

#[test]
fn every_proxied_request_is_logged_without_query_or_values() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "sk_never_logged" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    assert_eq!(
        proxy
            .call("GET", "api.test.example", "/v1/charges?secret_param=x", &[])
            .status,
        200
    );
    assert_eq!(
        proxy.call("GET", "nowhere.test.example", "/", &[]).status,
        403
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = proxy.api("GET", "/v1/vaults/default/logs", json!({}));
        if logs["logs"].as_array().unwrap().len() >= 2 || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let entries = logs["logs"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{logs}");
    let (denied, forwarded) = (&entries[0], &entries[1]);
    assert_eq!(forwarded["path"], "/v1/charges");
    assert_eq!(
        forwarded["host"],
        format!("api.test.example:{}", proxy.upstream.port)
    );
    assert_eq!(forwarded["matched_service"], "api");
    assert_eq!(forwarded["credential_keys"], json!(["API_TOKEN"]));
    assert_eq!(forwarded["status"], 200);
    assert_eq!(denied["error_code"], "forbidden");
    assert_eq!(denied["status"], 403);
    assert!(
        !logs.to_string().contains("sk_never_logged") && !logs.to_string().contains("secret_param")
    );
    // The refused host is one the vault may want a service for.
    let discovered = proxy.api("GET", "/v1/vaults/default/discovered-hosts", json!({}));
    assert_eq!(discovered["hosts"][0]["host"], "nowhere.test.example");
    assert_eq!(discovered["total"], 1);
}

#[test]
fn while_the_request_log_cannot_be_written_requests_are_refused_and_no_entry_is_lost() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "sk_test_log_outage" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let call = || proxy.call("GET", "api.test.example", "/v1/charges", &[]);
    assert_eq!(call().status, 200);

    // Another program takes the database's write lock (a backup, say; with PostgreSQL, a
    // lock on the request log's table) and keeps it longer than the server waits for it
    // (5 s). The log's next write fails; from then on the proxy refuses requests rather than
    // forward ones it cannot record.
    let mut database = Rows::open(&proxy.data);
    match proxy.data.backend() {
        Backend::Sqlite => {
            database.execute("BEGIN IMMEDIATE", &[]);
        }
        Backend::Postgres => {
            database.execute("BEGIN", &[]);
            database.execute("LOCK TABLE request_logs IN EXCLUSIVE MODE", &[]);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let answer = call();
        match answer.status {
            200 => {}
            503 => break answer,
            status => panic!("unexpected {status}: {answer:?}"),
        }
        assert!(Instant::now() < deadline, "the proxy never refused");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        refused.proxy_error(),
        (503, "request_log_unavailable".to_owned())
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    proxy
        .server
        .wait_for_log(&["cannot write the request log", "refused"]);

    // The lock is let go: the batch the store refused is written, and requests go through.
    database.execute("COMMIT", &[]);
    drop(database);
    loop {
        let answer = call();
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(Instant::now() < deadline, "the proxy never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    proxy
        .server
        .wait_for_log(&["the request log is written again"]);

    // Every request that reached the upstream is in the log; the refused ones are not.
    let forwarded = proxy.upstream.received().len();
    let entries = loop {
        let logs = proxy.api("GET", "/v1/vaults/default/logs?limit=200", json!({}));
        let entries = logs["logs"].as_array().unwrap().clone();
        if entries.len() >= forwarded || Instant::now() > deadline {
            break entries;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(entries.len(), forwarded, "{entries:?}");
    assert!(
        entries.iter().all(|entry| entry["status"] == 200),
        "{entries:?}"
    );
}

/// At debug level, what the server logs about: a proxied request with a credential and a
/// query string, one with a wrong token, a sign-in and a failed one, a person's invite
/// accepted and an agent's invite redeemed. Stops the server; its log lines, and every
/// secret that went by, none of which may be in them.
fn debug_log_of_everything(format: &str) -> (Vec<String>, Vec<String>) {
    let proxy = Proxy::start_with(
        &["--log-level", "debug", "--log-format", format],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": "sk_debug_never_logged" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let answer = proxy.call("GET", "api.test.example", "/v1/items?secret_param=x", &[]);
    assert_eq!(answer.status, 200);
    let refused = proxy.send(
        "GET",
        "/proxy/api.test.example/v1/items?secret_param=y",
        &[("authorization", "Bearer av_sess_wrong_never_logged")],
        b"",
    );
    assert_eq!(refused.proxy_error(), (401, "unauthorized".into()));

    let (status, signed_in) = proxy.server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
    );
    assert_eq!(status, 200, "{signed_in}");
    let (status, _) = proxy.server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "owner@example.com", "password": "a wrong password" })),
    );
    assert_eq!(status, 401);

    let invited = proxy.api(
        "POST",
        "/v1/users/invites",
        json!({ "email": "bob@example.com" }),
    );
    let invite_token = invited["token"].as_str().unwrap().to_owned();
    let (status, joined) = proxy.server.call(
        "POST",
        &format!("/v1/users/invites/{invite_token}/accept"),
        None,
        Some(&json!({ "password": "bob's own password" })),
    );
    assert_eq!(status, 200, "{joined}");

    let agent_invite = proxy.api(
        "POST",
        "/v1/agents/invites",
        json!({ "name": "log-bot", "vaults": [{ "vault_name": "default" }] }),
    );
    let link = agent_invite["invite_url"].as_str().unwrap();
    let redeem_path = link.strip_prefix(&proxy.server.url()).unwrap();
    let (status, redeemed) = proxy.server.call("POST", redeem_path, None, None);
    assert_eq!(status, 201, "{redeemed}");

    proxy.server.terminate();
    let log = proxy.server.rest_of_log();
    let mut secrets: Vec<String> = [
        "sk_debug_never_logged",
        "secret_param",
        "av_sess_wrong_never_logged",
        "owner password",
        "a wrong password",
        "bob's own password",
        MASTER_PASSWORD,
        &proxy.token,
        &proxy.owner,
        &invite_token,
    ]
    .map(str::to_owned)
    .to_vec();
    for (answer, key) in [
        (&signed_in, "token"),
        (&signed_in, "device_token"),
        (&joined, "token"),
        (&joined, "device_token"),
        (&redeemed, "av_agent_token"),
    ] {
        secrets.push(answer[key].as_str().unwrap().to_owned());
    }
    let agent_invite_token = redeem_path
        .split('/')
        .find(|part| part.starts_with("av_inv_"));
    secrets.push(agent_invite_token.unwrap().to_owned());
    (log, secrets)
}

#[test]
fn at_debug_level_each_request_is_one_line_without_values_tokens_or_query() {
    let (log, secrets) = debug_log_of_everything("text");
    let lines: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("proxy_request"))
        .collect();
    assert_eq!(lines.len(), 1, "{log:#?}");
    for field in [
        "method=GET",
        "path=/v1/items ",
        "service=api",
        "credential_keys=API_TOKEN",
        "status=200",
    ] {
        assert!(lines[0].contains(field), "{field} in {}", lines[0]);
    }
    for line in &log {
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "{secret:?} in {line}");
        }
    }
}

#[test]
fn in_json_format_each_line_is_one_object_with_stable_keys_and_no_secret() {
    let (log, secrets) = debug_log_of_everything("json");
    let events: Vec<serde_json::Map<String, Value>> = log
        .iter()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(event)) => event,
            other => panic!("not one JSON object: {line:?} ({other:?})"),
        })
        .collect();
    for event in &events {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(event[key].is_string(), "{key} in {event:?}");
        }
        let timestamp = event["timestamp"].as_str().unwrap();
        assert!(
            timestamp.len() == "2026-01-01T00:00:00.000000Z".len()
                && timestamp.as_bytes()[10] == b'T'
                && timestamp.ends_with('Z'),
            "{timestamp}"
        );
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG"].contains(&event["level"].as_str().unwrap()),
            "{event:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|event| event["message"] == "agent-vault started"
                && event["target"] == "agent_vault::server"
                && event["plugins"].is_number()),
        "{log:#?}"
    );
    let requests: Vec<_> = events
        .iter()
        .filter(|event| event["message"] == "proxy_request")
        .collect();
    // A request with an unknown token is refused before it has a vault: no request-log row.
    assert_eq!(requests.len(), 1, "{log:#?}");
    let forwarded = requests[0];
    let host = forwarded["host"].as_str().unwrap();
    assert!(host.starts_with("api.test.example:"), "{forwarded:?}");
    assert_eq!(forwarded["level"], "DEBUG");
    assert_eq!(forwarded["target"], "agent_vault::request_log");
    for (field, value) in [
        ("ingress", json!("explicit")),
        ("method", json!("GET")),
        ("path", json!("/v1/items")),
        ("service", json!("api")),
        ("credential_keys", json!("API_TOKEN")),
        ("status", json!(200)),
        ("error", json!("-")),
    ] {
        assert_eq!(forwarded[field], value, "{field} in {forwarded:?}");
    }
    assert!(forwarded["latency_ms"].is_u64(), "{forwarded:?}");
    for line in &log {
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "{secret:?} in {line}");
        }
    }
}

#[test]
fn a_failing_plugin_refuses_and_a_denying_plugin_is_passed_on() {
    let proxy = Proxy::start_plugins(&["fixture_trap", "fixture_deny"]);
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([
        { "name": "trapping", "host": "api.test.example", "auth": { "type": "plugin", "plugin": "fixture-trap" } },
        { "name": "policy", "host": "other.test.example", "auth": { "type": "plugin", "plugin": "fixture-deny" } },
    ]));
    let trapped = proxy.call("GET", "api.test.example", "/", &[]);
    assert_eq!(trapped.proxy_error(), (502, "plugin_error".into()));
    assert!(
        trapped.json()["message"]
            .as_str()
            .unwrap()
            .contains("executed `unreachable`")
    );
    let denied = proxy.call("DELETE", "other.test.example", "/repos/x", &[]);
    assert_eq!(denied.proxy_error(), (403, "path_not_allowed".into()));
    assert_eq!(
        denied.json()["message"],
        "DELETE is not allowed for this service"
    );
    assert_eq!(
        proxy
            .call("GET", "other.test.example", "/repos/x", &[])
            .status,
        200
    );
    assert_eq!(
        proxy.upstream.received().len(),
        1,
        "only the allowed request went out"
    );
}

#[test]
fn too_many_requests_get_429_with_retry_after() {
    let proxy = Proxy::start_with(
        &["--rate-limit-profile", "strict"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let mut limited = None;
    for _ in 0..400 {
        let answer = proxy.call("GET", "nowhere.test.example", "/", &[]);
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the strict profile's burst of 100 runs out");
    assert_eq!(limited.proxy_error(), (429, "rate_limit_scope".into()));
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
}

#[test]
fn one_limit_is_tuned_from_the_environment_and_a_bad_value_stops_the_start() {
    let proxy = Proxy::start_with(
        &[],
        &[
            ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
            ("AGENT_VAULT_RATELIMIT_PROXY_BURST", "3"),
            ("AGENT_VAULT_RATELIMIT_PROXY_RATE", "0.1"),
        ],
    );
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    for n in 0..3 {
        let answer = proxy.call("GET", "api.test.example", "/", &[]);
        assert_eq!(answer.status, 200, "request {n}");
    }
    let limited = proxy.call("GET", "api.test.example", "/", &[]);
    assert_eq!(limited.proxy_error(), (429, "rate_limit_scope".into()));
    assert_eq!(limited.header("retry-after"), Some("10"));

    let data = DataDir::new();
    let refused = data
        .command(&[
            "server",
            "--passwordless",
            "--port",
            "0",
            "--mitm-port",
            "0",
        ])
        .env("AGENT_VAULT_RATELIMIT_AUTH_MAX", "1")
        .run()
        .fails();
    assert!(
        refused.contains("AGENT_VAULT_RATELIMIT_AUTH_MAX=\"1\": at least 5"),
        "{refused}"
    );
}

#[test]
fn a_client_whose_tokens_keep_failing_is_refused_before_the_next_is_looked_up() {
    // Remote clients reach the proxy through a reverse proxy on this host, which names them
    // in X-Forwarded-For.
    let proxy = Proxy::start_with(
        &["--trusted-proxies", "127.0.0.1"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let target = proxy.target("api.test.example", "/");
    let call_as = |client: &str, token: &str| {
        let auth = format!("Bearer {token}");
        proxy.send(
            "GET",
            &target,
            &[("authorization", &auth), ("x-forwarded-for", client)],
            b"",
        )
    };
    let guess = |n: usize| format!("av_sess_{n:064x}");
    // 50 failures per 5 minutes (the default profile)...
    for n in 0..50 {
        assert_eq!(call_as("203.0.113.9", &guess(n)).status, 401, "guess {n}");
    }
    // ...then the client waits, whatever token it sends.
    let refused = call_as("203.0.113.9", &guess(50));
    assert_eq!(refused.proxy_error(), (429, "rate_limit_scope".into()));
    assert_eq!(refused.header("retry-after"), Some("6"));
    assert_eq!(call_as("203.0.113.9", &proxy.token).status, 429);
    // Other clients are not held back, and successes are not counted.
    assert_eq!(call_as("203.0.113.10", &guess(51)).status, 401);
    for _ in 0..60 {
        assert_eq!(call_as("203.0.113.11", &proxy.token).status, 200);
    }
    // Agents on the server's own host are never counted.
    for n in 0..60 {
        let auth = format!("Bearer {}", guess(100 + n));
        assert_eq!(
            proxy
                .send("GET", &target, &[("authorization", &auth)], b"")
                .status,
            401
        );
    }
    assert_eq!(proxy.upstream.received().len(), 60);
}

#[test]
fn revoked_disabled_and_expired_access_stops_at_the_next_request() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    assert_eq!(proxy.call("GET", "api.test.example", "/", &[]).status, 200);
    // Disabling the service takes effect at once, and enabling it again too.
    proxy.api(
        "PATCH",
        "/v1/vaults/default/services/api",
        json!({ "enabled": false }),
    );
    assert_eq!(
        proxy
            .call("GET", "api.test.example", "/", &[])
            .proxy_error(),
        (403, "service_disabled".into())
    );
    proxy.api(
        "PATCH",
        "/v1/vaults/default/services/api",
        json!({ "enabled": true }),
    );
    assert_eq!(proxy.call("GET", "api.test.example", "/", &[]).status, 200);
    // A revoked vault token.
    let sessions = proxy.api("GET", "/v1/sessions?vault=default", json!({}));
    let id = sessions["sessions"][0]["id"].as_str().unwrap().to_owned();
    proxy.api(
        "DELETE",
        &format!("/v1/sessions/{id}?vault=default"),
        json!({}),
    );
    assert_eq!(
        proxy
            .call("GET", "api.test.example", "/", &[])
            .proxy_error(),
        (401, "unauthorized".into())
    );
    // An expired one: its expiry moved into the past, then any write drops the cache.
    let expiring = proxy.api("POST", "/v1/sessions", json!({ "vault": "default" }));
    let token = expiring["token"].as_str().unwrap();
    Rows::open(&proxy.data).execute(
        "UPDATE tokens SET expires_at = 1 WHERE kind = 'scoped'",
        &[],
    );
    proxy.api("POST", "/v1/vaults", json!({ "name": "bump" }));
    let auth = format!("Bearer {token}");
    let answer = proxy.send(
        "GET",
        &proxy.target("api.test.example", "/"),
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(answer.proxy_error(), (401, "unauthorized".into()));
    assert_eq!(answer.json()["message"], "Session expired");
}

#[test]
fn cloud_metadata_stays_unreachable_even_when_allowlisted() {
    let proxy = Proxy::start_with(
        &["--resolve", "metadata.test.example:443:169.254.169.254"],
        &[(
            "AGENT_VAULT_NETWORK_ALLOWLIST",
            "127.0.0.1/32,169.254.0.0/16",
        )],
    );
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("meta", "metadata.test.example")]));
    let auth = format!("Bearer {}", proxy.token);
    let answer = proxy.send(
        "GET",
        "/proxy/metadata.test.example/latest/meta-data/",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(answer.proxy_error(), (403, "upstream_blocked".into()));
}

#[test]
fn discover_before_an_owner_exists_says_so() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let answer = send_raw(&server.address, "GET", "/discover", &[], b"");
    assert_eq!(answer.proxy_error(), (503, "not_initialized".into()));
}

#[test]
fn a_large_upload_streams_through_without_buffering() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let pid = proxy.server.child.id();
    let high_water = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    // Warm up so that the baseline includes the connection pool and TLS state.
    assert_eq!(
        proxy.call("POST", "api.test.example", "/warm", &[]).status,
        200
    );
    let before = high_water();
    let size = 96 * 1024 * 1024;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let auth = format!("Bearer {}", proxy.token);
    let answer = proxy.send(
        "POST",
        &proxy.target("api.test.example", "/upload"),
        &[("authorization", &auth)],
        &body,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = proxy.upstream.last();
    assert_eq!(received.body.len(), size);
    assert!(received.body == body, "the body arrived intact");
    let growth = high_water().saturating_sub(before);
    assert!(
        growth < 32 * 1024 * 1024,
        "the server's peak memory grew by {growth} bytes for a {size}-byte upload"
    );
}

#[test]
fn a_101_without_the_right_websocket_accept_is_not_relayed() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([bearer_service("api", "api.test.example")]));
    let answer = proxy.call(
        "GET",
        "api.test.example",
        "/ws-bad-accept",
        &[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    assert_eq!(answer.proxy_error(), (502, "upstream_error".into()));
    let message = answer.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("Sec-WebSocket-Accept"), "{message}");
}
