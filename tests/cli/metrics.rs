//! `/metrics` as a Prometheus server scrapes it: parsed with the Prometheus project's own
//! Python parser (`prometheus_client.parser`), after a scripted load through the proxy whose
//! request log is read back for comparison. Then the guard (loopback only, or the metrics
//! token and nothing else), and what an agent cannot make the scrape hold.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proxy::{Proxy, send_raw};

/// One sample of a scrape: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `text` parsed by `prometheus_client.parser.text_string_to_metric_families`; panics (with
/// the parser's error) if it does not parse.
fn parse(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
print(json.dumps(samples))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/lib.sh installs prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    samples
        .into_iter()
        .map(|sample| Sample {
            name: sample["name"].as_str().unwrap().to_owned(),
            labels: sample["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            value: sample["value"].as_f64().unwrap(),
        })
        .collect()
}

/// The value of the sample `name` with exactly `labels`, 0 if there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|sample| sample.name == name && sample.labels == wanted)
        .map_or(0.0, |sample| sample.value)
}

/// `GET /metrics` at `address` with `headers`: the status and the body.
fn scrape_at(address: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let answer = send_raw(address, "GET", "/metrics", headers, b"");
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

/// A scrape from loopback without a token, which must be served.
fn scrape(proxy: &Proxy) -> String {
    let (status, text) = scrape_at(&proxy.server.address, &[]);
    assert_eq!(status, 200, "{text}");
    text
}

/// The vault's request log once it holds `count` rows (waiting for the writer).
fn log_rows(proxy: &Proxy, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = proxy.api("GET", "/v1/vaults/default/logs?limit=200", json!({}));
        let rows = logs["logs"].as_array().unwrap().clone();
        if rows.len() >= count || Instant::now() > deadline {
            assert_eq!(rows.len(), count, "{logs}");
            return rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_class(status: u64) -> String {
    format!("{}xx", status / 100)
}

#[test]
fn the_counters_match_the_request_log_after_a_scripted_load() {
    let proxy = Proxy::start_plugins(&["fixture_trap", "fixture_deny"]);
    proxy.credentials(json!({ "API_TOKEN": "sk_metrics_secret_value" }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
        { "name": "trapping", "host": "uploads.test.example", "auth": { "type": "plugin", "plugin": "fixture-trap" } },
        { "name": "policy", "host": "other.test.example", "auth": { "type": "plugin", "plugin": "fixture-deny" } },
    ]));
    let call = |method: &str, host: &str, path: &str| proxy.call(method, host, path, &[]).status;
    // Three answers that echo the credential (redacted), a compressed answer the proxy
    // cannot search (502), a host no service covers (403), a plugin that traps (502), one
    // that refuses (403) and one that lets a request through (200).
    for n in 0..3 {
        assert_eq!(
            call(
                "GET",
                "api.test.example",
                &format!("/echo/{n}?secret_query=1")
            ),
            200
        );
    }
    assert_eq!(call("GET", "api.test.example", "/gzip-bomb"), 502);
    assert_eq!(call("GET", "nowhere.test.example", "/private/path"), 403);
    assert_eq!(call("GET", "uploads.test.example", "/"), 502);
    assert_eq!(call("DELETE", "other.test.example", "/repos/x"), 403);
    assert_eq!(call("GET", "other.test.example", "/repos/x"), 200);
    // A token the server does not know: no vault, no row.
    let refused = proxy.send(
        "GET",
        &proxy.target("api.test.example", "/"),
        &[("authorization", "Bearer av_sess_not_a_real_token")],
        b"",
    );
    assert_eq!(refused.status, 401);

    // The agent asks for another service: one proposal waits for a person.
    let (status, proposed) = proxy.server.call(
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
    assert_eq!(status, 201, "{proposed}");

    let rows = log_rows(&proxy, 8);
    let samples = parse(&scrape(&proxy));
    // Every (service, status class) the log holds, counted the same in the scrape.
    let mut from_log: BTreeMap<(String, String), f64> = BTreeMap::new();
    for row in &rows {
        let service = row["matched_service"].as_str().unwrap_or("").to_owned();
        *from_log
            .entry((service, status_class(row["status"].as_u64().unwrap())))
            .or_default() += 1.0;
    }
    let from_metrics: BTreeMap<(String, String), f64> = samples
        .iter()
        .filter(|sample| {
            sample.name == "agent_vault_proxy_requests_total"
                && sample.labels["vault"] == "default"
                && sample.value > 0.0
        })
        .map(|sample| {
            assert_eq!(sample.labels["ingress"], "explicit");
            (
                (
                    sample.labels["service"].clone(),
                    sample.labels["status"].clone(),
                ),
                sample.value,
            )
        })
        .collect();
    assert_eq!(from_metrics, from_log);
    assert_eq!(
        from_log,
        BTreeMap::from([
            (("".into(), "4xx".into()), 1.0),
            (("api".into(), "2xx".into()), 3.0),
            (("api".into(), "5xx".into()), 1.0),
            (("policy".into(), "2xx".into()), 1.0),
            (("policy".into(), "4xx".into()), 1.0),
            (("trapping".into(), "5xx".into()), 1.0),
        ])
    );
    let unknown = [
        ("vault", ""),
        ("service", ""),
        ("ingress", "explicit"),
        ("status", "4xx"),
    ];
    assert_eq!(
        value(&samples, "agent_vault_proxy_requests_total", &unknown),
        1.0,
        "the refused token counts under vault=\"\""
    );
    assert_eq!(
        value(
            &samples,
            "agent_vault_proxy_request_duration_seconds_count",
            &[("ingress", "explicit")]
        ),
        9.0
    );
    // The upstream answered the three echoes, the compressed answer and the allowed request.
    assert_eq!(
        value(&samples, "agent_vault_upstream_duration_seconds_count", &[]),
        5.0
    );
    let plugin = |name: &str, plugin: &str| value(&samples, name, &[("plugin", plugin)]);
    assert_eq!(
        plugin("agent_vault_plugin_calls_total", "fixture-deny"),
        2.0
    );
    assert_eq!(
        plugin("agent_vault_plugin_errors_total", "fixture-deny"),
        0.0
    );
    assert_eq!(
        plugin("agent_vault_plugin_calls_total", "fixture-trap"),
        1.0
    );
    assert_eq!(
        plugin("agent_vault_plugin_errors_total", "fixture-trap"),
        1.0
    );
    assert_eq!(
        plugin("agent_vault_plugin_timeouts_total", "fixture-trap"),
        0.0
    );
    assert_eq!(
        plugin(
            "agent_vault_plugin_call_duration_seconds_count",
            "fixture-trap"
        ),
        1.0
    );
    // Each echo quotes the credential in two headers and in its body.
    assert_eq!(
        value(
            &samples,
            "agent_vault_credential_echo_redactions_total",
            &[("vault", "default"), ("service", "api")]
        ),
        9.0
    );
    assert_eq!(value(&samples, "agent_vault_proposals_pending", &[]), 1.0);
    assert_eq!(
        value(&samples, "agent_vault_request_log_queue_depth", &[]),
        0.0
    );
    assert!(
        value(
            &samples,
            "agent_vault_open_connections",
            &[("listener", "control_plane")]
        ) >= 1.0,
        "the scrape's own connection is open"
    );
    for name in [
        "agent_vault_request_log_waits_total",
        "agent_vault_request_log_write_refusals_total",
        "agent_vault_rate_limited_requests_total",
    ] {
        assert!(
            samples.iter().any(|sample| sample.name == name),
            "{name} missing"
        );
    }
}

#[test]
fn no_secret_token_path_or_query_appears_in_the_scrape() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "sk_metrics_secret_value" }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
    ]));
    proxy.call("GET", "api.test.example", "/v1/charges?secret_query=1", &[]);
    proxy.call("GET", "nowhere.test.example", "/private/path?q=x", &[]);
    let text = scrape(&proxy);
    for needle in [
        "sk_metrics_secret_value",
        proxy.token.as_str(),
        proxy.owner.as_str(),
        "/v1/charges",
        "secret_query",
        "nowhere.test.example",
        "/private/path",
        "api.test.example",
    ] {
        assert!(!text.contains(needle), "{needle} appears in the scrape");
    }
}

#[test]
fn thousands_of_invented_hosts_paths_and_tokens_do_not_grow_the_scrape() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "tok" }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
    ]));
    let auth = format!("Bearer {}", proxy.token);
    let mut before = 0;
    let invent = |n: usize| {
        let host = format!("h{n}x{}.invented.example", n * 7919);
        let path = format!("/p{n}/{}?q={n}", n * 31);
        // An unconfigured host, then a token nobody minted, then an X-Vault nobody made.
        match n % 3 {
            0 => proxy.send(
                "GET",
                &format!("/proxy/{host}{path}"),
                &[("authorization", &auth)],
                b"",
            ),
            1 => proxy.send(
                "GET",
                &format!("/proxy/{host}{path}"),
                &[("authorization", &format!("Bearer av_sess_invented{n}"))],
                b"",
            ),
            _ => proxy.send(
                "GET",
                &format!("/proxy/{host}{path}"),
                &[("authorization", &auth), ("x-vault", &format!("vault{n}"))],
                b"",
            ),
        }
        .status
    };
    // Each kind once, so that every series it can make exists before the first scrape.
    let mut statuses = BTreeMap::<u16, usize>::new();
    for n in 0..1500 {
        *statuses.entry(invent(n)).or_default() += 1;
        if n == 2 {
            before = parse(&scrape(&proxy)).len();
        }
    }
    // An invented token is refused (401); an invented host is not covered (403), unless the
    // session's rate limit refuses the request first (429).
    assert_eq!(statuses.get(&401), Some(&500), "{statuses:?}");
    let limited = statuses.get(&429).copied().unwrap_or(0);
    assert_eq!(
        statuses.get(&403).unwrap_or(&0) + limited,
        1000,
        "{statuses:?}"
    );
    let text = scrape(&proxy);
    assert_eq!(parse(&text).len(), before, "the scrape grew:\n{text}");
    assert!(!text.contains("invented"));
    let requests = value(
        &parse(&text),
        "agent_vault_proxy_requests_total",
        &[
            ("vault", "default"),
            ("service", ""),
            ("ingress", "explicit"),
            ("status", "4xx"),
        ],
    );
    assert_eq!(
        requests, 500.0,
        "every unconfigured host of the session's vault counts under service=\"\""
    );
    let answered: f64 = parse(&text)
        .iter()
        .filter(|sample| sample.name == "agent_vault_proxy_requests_total")
        .map(|sample| sample.value)
        .sum();
    assert_eq!(answered, 1500.0, "every request counts once");
    let refused_by_limits: f64 = parse(&text)
        .iter()
        .filter(|sample| sample.name == "agent_vault_rate_limited_requests_total")
        .map(|sample| sample.value)
        .sum();
    assert_eq!(refused_by_limits, limited as f64);
}

#[test]
fn a_metrics_token_is_required_and_no_agent_or_user_token_opens_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "metrics-scrape-token-0123456789\n").unwrap();
    let proxy = Proxy::start_with(
        &["--metrics-token-file", token_file.to_str().unwrap()],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    let address = &proxy.server.address;
    let refusal = |headers: &[(&str, &str)]| {
        let answer = send_raw(address, "GET", "/metrics", headers, b"");
        (
            answer.status,
            answer.json()["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert_eq!(refusal(&[]), (401, "metrics_token_required".into()));
    for token in [
        proxy.token.as_str(),
        proxy.owner.as_str(),
        "metrics-scrape-token-012345678",
        "metrics-scrape-token-0123456789x",
    ] {
        assert_eq!(
            refusal(&[("authorization", &format!("Bearer {token}"))]),
            (401, "metrics_token_invalid".into()),
            "{token} must not open /metrics"
        );
    }
    let (status, text) = scrape_at(
        address,
        &[("authorization", "Bearer metrics-scrape-token-0123456789")],
    );
    assert_eq!(status, 200, "{text}");
    assert!(!parse(&text).is_empty());
    assert!(!text.contains("metrics-scrape-token"));
}

#[test]
fn metrics_on_a_listener_of_their_own_with_the_token_from_the_environment() {
    let proxy = Proxy::start_with(
        &["--metrics-addr", "127.0.0.1:0"],
        &[
            ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
            ("AGENT_VAULT_METRICS_TOKEN", "env-metrics-token-42"),
        ],
    );
    let metrics = proxy.server.metrics.clone().expect("a metrics listener");
    // The control plane no longer answers /metrics, with or without the token.
    let on_control = send_raw(
        &proxy.server.address,
        "GET",
        "/metrics",
        &[("authorization", "Bearer env-metrics-token-42")],
        b"",
    );
    assert_eq!(on_control.status, 404);
    assert_eq!(scrape_at(&metrics, &[]).0, 401);
    let (status, text) = scrape_at(
        &metrics,
        &[("authorization", "Bearer env-metrics-token-42")],
    );
    assert_eq!(status, 200, "{text}");
    let samples = parse(&text);
    assert_eq!(
        value(
            &samples,
            "agent_vault_open_connections",
            &[("listener", "metrics")]
        ),
        1.0,
        "the scrape's own connection"
    );
    let elsewhere = send_raw(
        &metrics,
        "GET",
        "/v1/status",
        &[("authorization", "Bearer env-metrics-token-42")],
        b"",
    );
    assert_eq!(elsewhere.status, 404);
}

#[test]
fn a_metrics_token_given_twice_or_empty_stops_the_start() {
    let data = crate::support::DataDir::new();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec![
            "server",
            "--port",
            "0",
            "--mitm-port",
            "0",
            "--passwordless",
        ];
        all.extend_from_slice(args);
        let mut command = data.command(&all);
        for (name, value) in env {
            command = command.env(name, value);
        }
        command.run().fails()
    };
    assert!(
        run(
            &["--metrics-token-file", empty.to_str().unwrap()],
            &[("AGENT_VAULT_METRICS_TOKEN", "x")]
        )
        .contains("give the metrics token once: --metrics-token-file or AGENT_VAULT_METRICS_TOKEN"),
    );
    assert!(
        run(&["--metrics-token-file", empty.to_str().unwrap()], &[])
            .contains("the metrics token is empty"),
    );
}

#[test]
fn the_transparent_ingress_counts_its_requests_and_open_tunnels() {
    let t = crate::transparent::Transparent::start();
    let proxy = &t.proxy;
    let mut tls =
        crate::transparent::tunnel(&t, &proxy.token, "api.test.example", "api.test.example")
            .unwrap();
    let host = format!("api.test.example:{}", proxy.upstream.port);
    assert_eq!(crate::transparent::get(&mut tls, &host, "/a").unwrap(), 200);
    assert_eq!(crate::transparent::get(&mut tls, &host, "/b").unwrap(), 200);
    // A blind tunnel to a host no service covers, held open.
    let (_blind, answer) = crate::transparent::connect_open(
        &t,
        "other.test.example",
        proxy.upstream.port,
        Some(&format!("{}:default", proxy.token)),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The tunnel counts from when its upgrade completes, just after the 200 left: wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    let samples = loop {
        let samples = parse(&scrape(proxy));
        let blind = value(&samples, "agent_vault_open_tunnels", &[("kind", "blind")]);
        if blind == 1.0 || Instant::now() > deadline {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let requests = |service: &str| {
        value(
            &samples,
            "agent_vault_proxy_requests_total",
            &[
                ("vault", "default"),
                ("service", service),
                ("ingress", "transparent"),
                ("status", "2xx"),
            ],
        )
    };
    assert_eq!(requests("items"), 2.0, "the requests inside the tunnel");
    assert_eq!(requests(""), 1.0, "the blind tunnel's row");
    let tunnels = |kind: &str| value(&samples, "agent_vault_open_tunnels", &[("kind", kind)]);
    assert_eq!((tunnels("intercepted"), tunnels("blind")), (1.0, 1.0));
    assert!(
        value(
            &samples,
            "agent_vault_open_connections",
            &[("listener", "transparent")]
        ) >= 2.0
    );
    // The log says the same: two requests and one tunnel, all on the transparent ingress.
    let rows = log_rows(proxy, 3);
    assert!(
        rows.iter().all(|row| row["ingress"] == "transparent"),
        "{rows:?}"
    );
}
