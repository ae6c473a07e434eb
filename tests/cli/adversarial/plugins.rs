//! Adversarial cases 29-30: plugins that misbehave or try to exfiltrate. Each fixture of
//! `plugins/fixtures/` is a purpose-built hostile plugin; here they all sit in one server's
//! plugin directory next to a healthy bearer service, each bound to the canary. (The
//! per-plugin suite, with the timing-sensitive spinner and the decision bomb, is
//! `tests/cli/hostile_plugins.rs`.)

use serde_json::{Value, json};

use super::Canary;
use crate::proxy::Proxy;
use crate::support::{DataDir, built_wasm};

/// A server whose plugin directory holds the fixtures (crate names), the canary bound as the
/// `token` slot of every hostile service and a healthy bearer service next to them.
fn server_with(fixtures: &[&str], canary: &Canary) -> Proxy {
    let data = DataDir::new();
    for name in fixtures {
        let file = format!("{}.wasm", name.replace('_', "-"));
        std::fs::copy(built_wasm(name), data.plugin_dir().join(file)).unwrap();
    }
    let proxy = Proxy::start_in(
        data,
        &[],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "HOSTILE_TOKEN": canary.value, "API_TOKEN": "sk_healthy_0001" }));
    proxy
}

/// Fixtures that declare a `token` slot; the others take no credential.
const WITH_TOKEN_SLOT: [&str; 5] = [
    "fixture-infinite-loop",
    "fixture-memory-growth",
    "fixture-sets-host",
    "fixture-crlf-value",
    "fixture-foreign-slot",
];

/// A service at `other.test.example/{path}/*` run by `plugin`, with the canary in its slot
/// if it has one.
fn hostile(path: &str, plugin: &str) -> Value {
    let credentials = if WITH_TOKEN_SLOT.contains(&plugin) {
        json!({ "token": "HOSTILE_TOKEN" })
    } else {
        json!({})
    };
    json!({ "name": format!("hostile-{path}"), "host": format!("other.test.example/{path}/*"),
            "auth": { "type": "plugin", "plugin": plugin, "credentials": credentials } })
}

fn healthy() -> Value {
    json!({ "name": "healthy", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } })
}

fn assert_healthy(proxy: &Proxy) {
    let answer = proxy.call("GET", "api.test.example", "/healthy", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Requests that reached the upstream other than the healthy service's.
fn hostile_deliveries(proxy: &Proxy) -> Vec<String> {
    proxy
        .upstream
        .received()
        .into_iter()
        .filter(|received| received.target != "/healthy")
        .map(|received| received.target)
        .collect()
}

#[test]
fn case_29_a_misbehaving_plugin_fails_closed_and_the_rest_keeps_serving() {
    let canary = Canary::new("misbehave");
    let fixtures = [
        ("loop", "fixture_infinite_loop"),
        ("memory", "fixture_memory_growth"),
        ("recursion", "fixture_deep_recursion"),
        ("unreachable", "fixture_trap"),
        ("panic", "fixture_panic"),
        ("malformed", "fixture_invalid_decision"),
        ("counter", "fixture_counter"),
    ];
    let crates: Vec<&str> = fixtures.iter().map(|(_, name)| *name).collect();
    let proxy = server_with(&crates, &canary);
    let mut services = vec![healthy()];
    services.extend(
        fixtures[..6]
            .iter()
            .map(|(path, name)| hostile(path, &name.replace('_', "-"))),
    );
    // The counter serves a host of its own: it traps on the path `/trap`.
    services.push(json!({ "name": "counter", "host": "uploads.test.example",
                          "auth": { "type": "plugin", "plugin": "fixture-counter" } }));
    proxy.services(json!(services));
    for (path, _) in &fixtures[..6] {
        let answer = proxy.call("GET", "other.test.example", &format!("/{path}/x"), &[]);
        assert_eq!(answer.proxy_error(), (502, "plugin_error".into()), "{path}");
        canary.assert_absent(&answer.body, &format!("the agent ({path})"));
        let message = answer.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !message.contains('\n'),
            "{path}: a multi-line error: {message}"
        );
        assert_healthy(&proxy);
    }
    assert_eq!(
        hostile_deliveries(&proxy),
        Vec::<String>::new(),
        "nothing went out without a decision"
    );
    // A trap discards the instance: the next call starts fresh, with nothing remembered.
    let count = |path: &str| {
        let answer = proxy.call("GET", "uploads.test.example", path, &[]);
        assert_eq!(answer.status, 200, "{answer:?}");
        proxy.upstream.last().header("x-call-count").join(",")
    };
    assert_eq!(count("/a"), "1");
    assert_eq!(count("/b"), "2", "a warm instance remembers");
    let trapped = proxy.call("GET", "uploads.test.example", "/trap", &[]);
    assert_eq!(trapped.proxy_error(), (502, "plugin_error".into()));
    assert_eq!(count("/c"), "1", "the trapped instance was thrown away");
    // A corrupt file at hot reload: the previous version keeps serving, with its credential.
    let plugin_dir = proxy.data.path().join("plugins");
    let bytes = std::fs::read(built_wasm("fixture_counter")).unwrap();
    std::fs::write(
        plugin_dir.join("fixture-counter.wasm"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    proxy
        .server
        .wait_for_log(&["previous version keeps serving"]);
    assert_eq!(count("/d"), "2", "the previous version still serves, warm");
    // A corrupt file at start: that plugin is not loaded, and only its own service fails.
    let data = DataDir::new();
    std::fs::write(data.plugin_dir().join("broken.wasm"), &bytes[..100]).unwrap();
    let fresh = Proxy::start_in(
        data,
        &[],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    fresh.credentials(json!({ "API_TOKEN": "sk_healthy_0001", "HOSTILE_TOKEN": canary.value }));
    let (status, refused) = fresh.server.call(
        "PUT",
        "/v1/vaults/default/services",
        Some(&fresh.owner),
        Some(&json!({ "services": [healthy(), hostile("broken", "broken")] })),
    );
    assert_eq!(
        status, 400,
        "a service on a plugin that did not load: {refused}"
    );
    fresh.services(json!([healthy()]));
    assert_healthy(&fresh);
}

#[test]
fn case_30_an_exfiltrating_plugin_is_refused_at_load_or_by_the_hosts_checks() {
    let canary = Canary::new("exfil");
    let proxy = server_with(
        &[
            "fixture_wasi_import",
            "fixture_sets_host",
            "fixture_crlf_value",
            "fixture_foreign_slot",
            "fixture_oversized_crypto_input",
        ],
        &canary,
    );
    // A plugin that imports WASI (sockets, files, environment) never loads.
    proxy.server.wait_for_log(&["fixture-wasi-import", "wasi"]);
    let (status, refused) = proxy.server.call(
        "PUT",
        "/v1/vaults/default/services",
        Some(&proxy.owner),
        Some(&json!({ "services": [hostile("wasi", "fixture-wasi-import")] })),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused.to_string().contains("fixture-wasi-import"),
        "{refused}"
    );
    // The others load, and each decision is refused by the host: another host, CR/LF in a
    // value, a slot the service does not bind, a crypto input over the limit.
    let cases = [
        ("host", "fixture-sets-host"),
        ("crlf", "fixture-crlf-value"),
        ("slot", "fixture-foreign-slot"),
        ("crypto", "fixture-oversized-crypto-input"),
    ];
    let mut services = vec![healthy()];
    services.extend(cases.iter().map(|(path, plugin)| hostile(path, plugin)));
    proxy.services(json!(services));
    for (path, _) in cases {
        let answer = proxy.call("GET", "other.test.example", &format!("/{path}/x"), &[]);
        assert_eq!(answer.status, 502, "{path}: {answer:?}");
        canary.assert_absent(&answer.body, &format!("the agent ({path})"));
        assert_healthy(&proxy);
    }
    assert_eq!(hostile_deliveries(&proxy), Vec::<String>::new());
    // Nothing a plugin returned put the canary in the server's log either.
    proxy.server.terminate();
    let log = proxy.server.rest_of_log().join("\n");
    canary.assert_absent(log.as_bytes(), "the server log");
}
