//! Hostile plugins against a live server (issue 26): each test drops one purpose-built plugin
//! from `plugins/fixtures/` into the plugin directory, next to a healthy bearer service, and
//! checks what the agent gets (status, error code, never a canary byte) and what the upstream
//! received (nothing, for a refused request), and that the healthy service still answers.
//!
//! "Does not stall" is asserted by order, not by time: with the hostile calls running (the
//! server's debug log says each has moved to the plugin threads), the healthy request is
//! answered before any of them ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::proxy::{Answer, Proxy, send_raw};
use crate::support::{DataDir, built_wasm};

/// The healthy service's token.
const HEALTHY_TOKEN: &str = "sk_healthy_2c81d0";
/// The hostile service's credential: no byte of it may reach the agent.
const CANARY: &str = "canary-7f3a9c1e5b42";

/// A server whose plugin directory holds the fixture `crate_name` (with `options` as its
/// `NAME.toml`, if any), with the credentials both services use.
fn start(crate_name: &str, options: &str, args: &[&str]) -> Proxy {
    let data = DataDir::new();
    let name = crate_name.replace('_', "-");
    std::fs::copy(
        built_wasm(crate_name),
        data.plugin_dir().join(format!("{name}.wasm")),
    )
    .unwrap();
    if !options.is_empty() {
        std::fs::write(data.plugin_dir().join(format!("{name}.toml")), options).unwrap();
    }
    let proxy = Proxy::start_in(
        data,
        args,
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": HEALTHY_TOKEN, "HOSTILE_TOKEN": CANARY }));
    proxy
}

/// The healthy bearer service at `api.test.example` and `hostile` next to it.
fn services(proxy: &Proxy, hostile: Value) {
    proxy.services(json!([
        { "name": "healthy", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
        hostile,
    ]));
}

/// A service of the hostile plugin at `other.test.example`, its slot bound to the canary.
fn hostile_service(name: &str, plugin: &str) -> Value {
    json!({ "name": name, "host": "other.test.example",
            "auth": { "type": "plugin", "plugin": plugin, "credentials": { "token": "HOSTILE_TOKEN" } } })
}

/// The healthy service answers, and its upstream gets its token.
fn healthy_answers(proxy: &Proxy) {
    let answer = proxy.call("GET", "api.test.example", "/healthy", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = proxy.upstream.last();
    assert_eq!(received.target, "/healthy");
    assert_eq!(
        received.header("authorization"),
        [format!("Bearer {HEALTHY_TOKEN}")]
    );
}

/// Requests the hostile service's upstream received.
fn reached_upstream(proxy: &Proxy) -> usize {
    proxy
        .upstream
        .received()
        .iter()
        .filter(|received| received.target != "/healthy")
        .count()
}

/// The canary in none of the forms a plugin can write it in (raw, hex either case, base64).
fn assert_no_canary(answer: &Answer) {
    let mut seen = String::from_utf8_lossy(&answer.body).into_owned();
    for (name, value) in &answer.headers {
        seen.push_str(&format!("\n{name}: {value}"));
    }
    use base64::Engine as _;
    for form in [
        CANARY.to_owned(),
        hex::encode(CANARY),
        hex::encode_upper(CANARY),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(CANARY),
    ] {
        assert!(!seen.contains(&form), "{form} reached the agent: {seen}");
    }
}

/// The agent's request to the hostile service, from another thread.
fn call_in_background(
    proxy: &Proxy,
    path: &str,
    done: &Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Answer> {
    let address = proxy.server.address.clone();
    let target = proxy.target("other.test.example", path);
    let auth = format!("Bearer {}", proxy.token);
    let done = done.clone();
    std::thread::spawn(move || {
        let answer = send_raw(&address, "GET", &target, &[("authorization", &auth)], b"");
        done.fetch_add(1, Ordering::SeqCst);
        answer
    })
}

/// Wait until the server says a call of `plugin` runs on the plugin threads.
fn wait_until_offloaded(proxy: &Proxy, plugin: &str) {
    let field = format!("plugin={plugin}");
    proxy.server.wait_for_log(&[
        "a slow plugin call runs on the plugin threads",
        field.as_str(),
    ]);
}

/// The largest resident set the server process has had, in KiB (Linux).
fn peak_rss_kib(proxy: &Proxy) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.server.child.id()))
        .expect("the server's /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

const SPINNER_DEBUG: [&str; 4] = [
    "--log-level",
    "debug",
    "--plugin-timeout-ceiling-ms",
    "5000",
];

#[test]
fn a_spinning_plugin_does_not_stall_a_healthy_service() {
    let proxy = start(
        "fixture_infinite_loop",
        "timeout-ms = 5000\n",
        &SPINNER_DEBUG,
    );
    services(&proxy, hostile_service("spinner", "fixture-infinite-loop"));
    let done = Arc::new(AtomicUsize::new(0));
    let spinners: Vec<_> = (0..4)
        .map(|_| call_in_background(&proxy, "/spin", &done))
        .collect();
    for _ in 0..spinners.len() {
        wait_until_offloaded(&proxy, "fixture-infinite-loop");
    }
    // Four calls spin until their 5 s deadline; the healthy service answers meanwhile.
    healthy_answers(&proxy);
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "the healthy request was answered before any spinning call ended"
    );
    for spinner in spinners {
        let answer = spinner.join().unwrap();
        assert_eq!(answer.proxy_error(), (502, "plugin_error".into()));
        assert_eq!(
            answer.json()["message"],
            "plugin fixture-infinite-loop exceeded its time limit of 5s"
        );
        assert_no_canary(&answer);
    }
    assert_eq!(reached_upstream(&proxy), 0);
    healthy_answers(&proxy);
}

#[test]
fn a_slow_plugin_at_its_limit_is_answered_busy_at_once() {
    let proxy = start(
        "fixture_infinite_loop",
        "timeout-ms = 5000\nmax-slow-calls = 1\n",
        &SPINNER_DEBUG,
    );
    services(&proxy, hostile_service("spinner", "fixture-infinite-loop"));
    let done = Arc::new(AtomicUsize::new(0));
    let first = call_in_background(&proxy, "/spin", &done);
    wait_until_offloaded(&proxy, "fixture-infinite-loop");
    let refused = proxy.call("GET", "other.test.example", "/spin", &[]);
    assert_eq!(refused.proxy_error(), (503, "plugin_busy".into()));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.json()["message"],
        "plugin fixture-infinite-loop is slow and already runs its limit of 1 calls at once; \
         retry shortly"
    );
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "refused while the call holding the plugin's place still runs"
    );
    healthy_answers(&proxy);
    let first = first.join().unwrap();
    assert_eq!(first.proxy_error(), (502, "plugin_error".into()));
    assert_eq!(reached_upstream(&proxy), 0);
}

#[test]
fn a_memory_hog_is_refused_and_nothing_is_forwarded() {
    let proxy = start("fixture_memory_growth", "timeout-ms = 1000\n", &[]);
    services(&proxy, hostile_service("hog", "fixture-memory-growth"));
    let answer = proxy.call("GET", "other.test.example", "/", &[]);
    assert_eq!(answer.proxy_error(), (502, "plugin_error".into()));
    assert_eq!(
        answer.json()["message"],
        "plugin fixture-memory-growth exceeded its memory limit of 16777216 bytes"
    );
    assert_no_canary(&answer);
    assert_eq!(reached_upstream(&proxy), 0);
    healthy_answers(&proxy);
}

#[test]
fn a_decision_bomb_is_refused_without_the_host_copying_it() {
    let proxy = start("fixture_decision_bomb", "", &[]);
    services(&proxy, hostile_service("bomb", "fixture-decision-bomb"));
    healthy_answers(&proxy);
    let before = peak_rss_kib(&proxy);
    for _ in 0..10 {
        let answer = proxy.call("GET", "other.test.example", "/", &[]);
        assert_eq!(answer.proxy_error(), (502, "plugin_error".into()));
        assert_eq!(
            answer.json()["message"],
            "plugin fixture-decision-bomb returned more than the host reads (1114112 bytes of \
             strings and lists in all) or a result the contract does not allow"
        );
    }
    // Each bomb would be 128 MiB of copies; the host stops after about 1 MiB.
    let grown = peak_rss_kib(&proxy) - before;
    assert!(
        grown < 32 * 1024,
        "the server's peak RSS grew by {grown} KiB"
    );
    assert_eq!(reached_upstream(&proxy), 0);
    healthy_answers(&proxy);
}

#[test]
fn a_path_rewrite_cannot_leave_the_allow_rules() {
    let proxy = start("fixture_path_rewriter", "", &[]);
    let mut router = hostile_service("router", "fixture-path-rewriter");
    router["allow"] = json!([{ "methods": ["GET"], "paths": ["/pathset*"] }]);
    services(&proxy, router);

    let escaped = proxy.call(
        "GET",
        "other.test.example",
        "/pathset?to=/admin/delete-everything",
        &[],
    );
    assert_eq!(escaped.proxy_error(), (403, "path_not_allowed".into()));
    assert_eq!(
        escaped.json()["message"],
        "the request as plugin \"fixture-path-rewriter\" leaves it is not allowed by service \
         \"router\": its path and allow rules are checked again on the request after the plugin \
         and the placeholders"
    );
    assert_no_canary(&escaped);
    assert_eq!(reached_upstream(&proxy), 0, "nothing went out");

    // A rewrite the rules allow goes out, with its credential.
    let kept = proxy.call("GET", "other.test.example", "/pathset?to=/pathset/v2", &[]);
    assert_eq!(kept.status, 200, "{kept:?}");
    let received = proxy.upstream.last();
    assert_eq!(received.target, "/pathset/v2");
    assert_eq!(
        received.header("authorization"),
        [format!("Bearer {CANARY}")]
    );
    healthy_answers(&proxy);
}

#[test]
fn a_credential_attached_in_hex_is_redacted_when_echoed() {
    let proxy = start("fixture_hex_echo", "", &[]);
    services(&proxy, hostile_service("hexer", "fixture-hex-echo"));
    let answer = proxy.call("GET", "other.test.example", "/echo", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        proxy.upstream.last().header("x-token-hex"),
        [hex::encode(CANARY)],
        "the plugin attached the credential in hex"
    );
    assert_eq!(
        answer.json()["headers"]["x-token-hex"],
        "[REDACTED:HOSTILE_TOKEN]"
    );
    assert_no_canary(&answer);
    healthy_answers(&proxy);
}

#[test]
fn a_plugin_that_imports_wasi_is_refused_at_load_and_the_rest_serves() {
    let proxy = start("fixture_wasi_import", "", &[]);
    let line = proxy.server.wait_for_log(&[
        "fixture-wasi-import.wasm",
        "which agent-vault does not provide",
    ]);
    assert!(line.contains("imports `wasi:"), "{line}");
    let (status, answer) = proxy.server.call(
        "PUT",
        "/v1/vaults/default/services",
        Some(&proxy.owner),
        Some(&json!({ "services": [hostile_service("wasi", "fixture-wasi-import")] })),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no plugin named \"fixture-wasi-import\" is loaded"),
        "{answer}"
    );
    services(
        &proxy,
        json!({ "name": "spare", "host": "other.test.example", "auth": { "type": "passthrough" } }),
    );
    healthy_answers(&proxy);
}

#[test]
fn a_crypto_input_over_the_limit_fails_in_one_line() {
    let proxy = start("fixture_oversized_crypto_input", "", &[]);
    services(
        &proxy,
        json!({ "name": "flood", "host": "other.test.example",
                "auth": { "type": "plugin", "plugin": "fixture-oversized-crypto-input" } }),
    );
    let answer = proxy.call("GET", "other.test.example", "/", &[]);
    assert_eq!(answer.proxy_error(), (502, "plugin_error".into()));
    assert_eq!(
        answer.json()["message"],
        "plugin fixture-oversized-crypto-input passed more than 1048576 bytes to a crypto import",
        "no guest backtrace reaches the agent"
    );
    assert_eq!(reached_upstream(&proxy), 0);
    healthy_answers(&proxy);
}

#[test]
fn a_credential_that_does_not_fit_says_nothing_about_itself() {
    let proxy = start("fixture_hex_echo", "", &[]);
    proxy.credentials(json!({
        "LINE_BREAK": format!("{CANARY}\r\nX-Injected: yes"),
        "TOO_LONG": format!("{CANARY}{}", "x".repeat(70_000)),
    }));
    proxy.services(json!([
        { "name": "healthy", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
        { "name": "broken", "host": "other.test.example/broken", "auth": { "type": "bearer", "token": "LINE_BREAK" } },
        { "name": "long", "host": "other.test.example/long", "auth": { "type": "bearer", "token": "TOO_LONG" } },
    ]));
    // Two different checks fail (a header cannot carry CR LF; the value is too long); the
    // agent is told the same thing about either.
    for (path, service) in [("/broken", "broken"), ("/long", "long")] {
        let answer = proxy.call("GET", "other.test.example", path, &[]);
        assert_eq!(
            answer.proxy_error(),
            (502, "credential_unrenderable".into())
        );
        assert_eq!(
            answer.json()["message"],
            format!(
                "plugin bearer put a credential of service \"{service}\" where it cannot be \
                 written (the server's log at debug level says which check failed)"
            )
        );
        assert_no_canary(&answer);
    }
    assert_eq!(reached_upstream(&proxy), 0);
    healthy_answers(&proxy);
}
