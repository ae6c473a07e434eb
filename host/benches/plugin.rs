//! Per-request cost of a plugin: get an instance, call `authorize`, check and apply the
//! decision (credentials rendered, SigV4 signed), for `bearer` and `aws-sigv4`, with warm
//! instance reuse (the default) and with a fresh instance per request.
//!
//! The call is polled once, as a connection worker polls it: a plugin this fast finishes in
//! its first slice and never reaches the plugin threads (a call that did would be finished
//! on a runtime, and cost more).
//!
//! Run: `cargo bench --bench plugin` (or `bench/plugin` for a table of medians).
//! Targets on the 2-core reference machine: reuse at most 5 µs (bearer) and 15 µs
//! (aws-sigv4), medians.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use agent_vault::plugin::registry::{Registry, RegistrySettings, load_file};
use agent_vault::plugin::{
    Call, EngineSettings, Isolation, Outcome, PLUGIN_BUILD_DIR, Plugin, PluginConfig, PluginEngine,
    PluginLimits,
};
use agent_vault::request::RequestHead;
use agent_vault::vault::{Credentials, Secret};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Method};

/// A request shaped like what an agent's SDK sends.
fn agent_request(url: &str) -> RequestHead {
    let mut head = RequestHead::from_url(Method::GET, url).unwrap();
    for (name, value) in [
        ("user-agent", "openai-python/1.54.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate"),
        ("content-type", "application/json"),
        ("x-request-id", "5f2b7c1e-9a0d-4a41-8d0e-3f1c2b4a6e77"),
        ("x-stainless-lang", "python"),
    ] {
        head.headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    head
}

struct Case {
    name: &'static str,
    request: RequestHead,
    config: PluginConfig,
    credentials: Credentials,
    body_sha256: Option<[u8; 32]>,
}

fn cases() -> Vec<Case> {
    let pairs = |pairs: &[(&str, &str)]| {
        PluginConfig::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    };
    let credentials = |pairs: &[(&str, &str)]| {
        Credentials::new(pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))))
    };
    vec![
        Case {
            name: "bearer",
            request: agent_request("https://api.openai.com/v1/models?limit=3"),
            config: pairs(&[]),
            credentials: credentials(&[("token", "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz")]),
            body_sha256: None,
        },
        Case {
            name: "aws-sigv4",
            request: agent_request(
                "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            ),
            config: pairs(&[("region", "us-east-1"), ("service", "sts")]),
            credentials: credentials(&[
                ("access_key_id", "AKIDEXAMPLE"),
                (
                    "secret_access_key",
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                ),
            ]),
            // SHA-256 of the empty body.
            body_sha256: Some(sha256_of_empty()),
        },
    ]
}

fn sha256_of_empty() -> [u8; 32] {
    let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
    }
    out
}

fn run_once(
    runtime: &tokio::runtime::Runtime,
    plugin: &Plugin,
    case: &Case,
    mut request: RequestHead,
) -> RequestHead {
    let call = Call {
        service: case.name,
        vault: "default",
        config: &case.config,
        credentials: &case.credentials,
        now: SystemTime::now(),
        body_sha256: case.body_sha256.as_ref(),
        placeholders: None,
    };
    let outcome = {
        let mut call = std::pin::pin!(plugin.authorize(&mut request, &call));
        match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => runtime.block_on(call),
        }
    };
    assert_eq!(outcome.unwrap(), Outcome::Forward);
    request
}

fn bench(c: &mut Criterion) {
    let engine = PluginEngine::new(&EngineSettings::default()).unwrap();
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-plugin-cache");
    let registry = Registry::new(
        engine.clone(),
        RegistrySettings {
            cache_dir: Some(cache),
            ..Default::default()
        },
    )
    .unwrap();
    let fresh = |crate_name: &str| {
        let path = PathBuf::from(PLUGIN_BUILD_DIR).join(format!("{crate_name}.wasm"));
        let limits = PluginLimits {
            isolation: Isolation::PerRequest,
            ..PluginLimits::default()
        };
        Arc::new(load_file(&engine, &path, limits).unwrap())
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("plugin");
    for case in cases() {
        let reused = registry.get(case.name).unwrap();
        let per_request = fresh(&case.name.replace('-', "_"));
        for (mode, plugin) in [("reuse", &reused), ("fresh", &per_request)] {
            group.bench_function(format!("{}/{mode}", case.name), |b| {
                b.iter_batched(
                    || case.request.clone(),
                    |request| black_box(run_once(&runtime, plugin, &case, request)),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
