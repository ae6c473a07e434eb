//! Misbehaving plugins fail closed; limits, isolation and the import check.
//!
//! Every fixture in plugins/fixtures/ has a test here. A failure must refuse the request
//! (never forward it without its credential), discard the instance, and leave other plugins
//! and requests working.

use std::time::Duration;

use agent_vault::plugin::registry::{FileLoadError, load_file};
use agent_vault::plugin::{
    CallError, InvalidDecision, Isolation, LoadError, MAX_CRYPTO_INPUT, MAX_LIFTED_BYTES, Outcome,
    Plugin, PluginConfigError, PluginError, PluginLimits,
};

use crate::support::{
    Attempt, Authorized, block_on, built_wasm, config, engine, request, standard,
};

fn fixture(name: &str) -> Plugin {
    fixture_with(name, PluginLimits::default())
}

fn fixture_with(name: &str, limits: PluginLimits) -> Plugin {
    let crate_name = format!("fixture_{}", name.replace('-', "_"));
    load_file(&engine(), &built_wasm(&crate_name), limits)
        .unwrap_or_else(|error| panic!("fixture {name} loads: {error}"))
}

fn call(plugin: &Plugin, path: &str) -> Authorized {
    Attempt::new(
        plugin,
        request("GET", &format!("https://api.example.com{path}"), &[]),
    )
    .credentials(&[("token", "sk_test_fixture")])
    .run()
}

fn call_error(plugin: &Plugin) -> CallError {
    match call(plugin, "/").outcome {
        Err(PluginError::Call { error, .. }) => error,
        other => panic!("expected the call to fail, got {other:?}"),
    }
}

fn invalid_decision(plugin: &Plugin, path: &str) -> String {
    let sent = call(plugin, path);
    assert!(
        sent.header("authorization").is_empty(),
        "a refused decision must not leave a credential behind in a request that could be forwarded"
    );
    match sent.outcome {
        Err(PluginError::InvalidDecision {
            error: InvalidDecision(message),
            ..
        }) => message,
        other => panic!("expected an invalid decision, got {other:?}"),
    }
}

/// The standard bearer plugin still works: what every failure test checks afterwards.
fn bearer_still_works() {
    let bearer = standard().get("bearer").unwrap();
    let sent = Attempt::new(&bearer, request("GET", "https://api.example.com/", &[]))
        .credentials(&[("token", "t")])
        .run();
    assert_eq!(sent.forwarded().header("authorization"), ["Bearer t"]);
}

#[test]
fn an_infinite_loop_times_out() {
    let looping = fixture_with(
        "infinite-loop",
        PluginLimits {
            timeout: Duration::from_millis(20),
            ..PluginLimits::default()
        },
    );
    assert_eq!(
        call_error(&looping),
        CallError::Timeout(Duration::from_millis(20))
    );
    bearer_still_works();
}

#[test]
fn unbounded_memory_growth_hits_the_memory_limit() {
    // A deadline far off, so that a loaded machine still reaches the memory limit first.
    let hungry = fixture_with(
        "memory-growth",
        PluginLimits {
            timeout: Duration::from_secs(10),
            ..PluginLimits::default()
        },
    );
    assert_eq!(
        call_error(&hungry),
        CallError::MemoryLimit(16 * 1024 * 1024)
    );
    bearer_still_works();
}

#[test]
fn deep_recursion_overflows_without_harming_the_host() {
    let recursing = fixture("deep-recursion");
    // The guest's 64 KiB shadow stack runs out before wasmtime's stack limit: the guest
    // writes below address 0 and traps on the out-of-bounds access.
    assert_eq!(
        call_error(&recursing),
        CallError::Trap(
            "accessed memory out of bounds (a stack overflow, if the plugin recurses)".into()
        )
    );
    bearer_still_works();
}

#[test]
fn a_trap_refuses_the_request() {
    let trapping = fixture("trap");
    assert_eq!(
        call_error(&trapping),
        CallError::Trap("executed `unreachable` (a panic or abort in the plugin)".into())
    );
    bearer_still_works();
}

#[test]
fn a_panic_refuses_the_request() {
    let panicking = fixture("panic");
    assert_eq!(
        call_error(&panicking),
        CallError::Trap("executed `unreachable` (a panic or abort in the plugin)".into())
    );
    bearer_still_works();
}

#[test]
fn an_invalid_decision_is_refused() {
    let invalid = fixture("invalid-decision");
    assert_eq!(
        invalid_decision(&invalid, "/"),
        "\"bad header\" is not a valid header name"
    );
}

#[test]
fn a_plugin_cannot_set_host() {
    let redirecting = fixture("sets-host");
    assert_eq!(
        invalid_decision(&redirecting, "/"),
        "plugins may not edit the \"host\" header"
    );
}

#[test]
fn a_plugin_cannot_inject_headers_with_crlf() {
    let injecting = fixture("crlf-value");
    assert_eq!(
        invalid_decision(&injecting, "/"),
        "the value of header \"x-note\" contains a line break or control character"
    );
}

#[test]
fn a_plugin_cannot_use_a_slot_its_service_does_not_bind() {
    let snooping = fixture("foreign-slot");
    assert_eq!(
        invalid_decision(&snooping, "/"),
        "header \"authorization\" refers to credential slot \"other_service_key\", which this service does not bind"
    );
    // The same through the HMAC import: the host refuses the key, the plugin gets an error.
    match call(&snooping, "/hmac").outcome {
        Err(PluginError::Failed { message, .. }) => {
            assert_eq!(
                message,
                "credential slot \"other_service_key\" is not bound"
            );
        }
        other => panic!("expected the plugin to fail, got {other:?}"),
    }
}

#[test]
fn a_plugin_that_imports_wasi_is_refused_at_load() {
    let error = load_file(
        &engine(),
        &built_wasm("fixture_wasi_import"),
        PluginLimits::default(),
    )
    .expect_err("a WASI-importing plugin must not load");
    match error {
        FileLoadError::Load {
            error: LoadError::ForbiddenImport(import),
            ..
        } => {
            assert!(
                import.starts_with("wasi:"),
                "names the WASI import, got {import}"
            );
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
}

#[test]
fn a_core_module_or_garbage_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0").unwrap();
    let error = load_file(&engine(), &garbage, PluginLimits::default()).unwrap_err();
    assert!(
        error.to_string().contains("core WebAssembly module"),
        "{error}"
    );
    let truncated = dir.path().join("truncated.wasm");
    let bearer = std::fs::read(built_wasm("bearer")).unwrap();
    std::fs::write(&truncated, &bearer[..bearer.len() / 2]).unwrap();
    let error = load_file(&engine(), &truncated, PluginLimits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            FileLoadError::Load {
                error: LoadError::Invalid(_),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn warm_instances_are_reused_within_a_vault_only() {
    let counter = fixture("counter");
    let count = |vault: &str| {
        let sent = Attempt::new(&counter, request("GET", "https://api.example.com/", &[]))
            .vault(vault)
            .run();
        sent.forwarded().header("x-call-count")[0].clone()
    };
    assert_eq!(count("team-a"), "1");
    assert_eq!(count("team-a"), "2");
    assert_eq!(
        count("team-b"),
        "1",
        "another vault never sees the first vault's instance"
    );
    assert_eq!(count("team-a"), "3");
}

#[test]
fn a_trapped_instance_is_discarded() {
    let counter = fixture("counter");
    let count = |path: &str| call(&counter, path);
    assert_eq!(count("/").forwarded().header("x-call-count"), ["1"]);
    assert_eq!(count("/").forwarded().header("x-call-count"), ["2"]);
    assert!(matches!(
        count("/trap").outcome,
        Err(PluginError::Call { .. })
    ));
    assert_eq!(
        count("/").forwarded().header("x-call-count"),
        ["1"],
        "a fresh instance after the trap"
    );
}

#[test]
fn per_request_isolation_gives_every_request_a_fresh_instance() {
    let counter = fixture_with(
        "counter",
        PluginLimits {
            isolation: Isolation::PerRequest,
            ..PluginLimits::default()
        },
    );
    for _ in 0..3 {
        assert_eq!(
            call(&counter, "/").forwarded().header("x-call-count"),
            ["1"]
        );
    }
}

#[test]
fn a_looping_plugin_does_not_hold_up_other_requests() {
    let looping = std::sync::Arc::new(fixture("infinite-loop"));
    let stuck = {
        let looping = looping.clone();
        std::thread::spawn(move || call_error(&looping))
    };
    for _ in 0..20 {
        bearer_still_works();
    }
    assert_eq!(
        stuck.join().unwrap(),
        CallError::Timeout(Duration::from_millis(50))
    );
}

#[test]
fn a_deny_is_passed_on_with_its_status_and_reason() {
    let policy = fixture("deny");
    let sent = Attempt::new(
        &policy,
        request("DELETE", "https://api.example.com/v1/repos/x", &[]),
    )
    .run();
    assert_eq!(
        sent.outcome,
        Ok(Outcome::Deny {
            status: 403,
            reason: "DELETE is not allowed for this service".into()
        })
    );
    let read = Attempt::new(
        &policy,
        request("GET", "https://api.example.com/v1/repos/x", &[]),
    )
    .run();
    assert_eq!(read.outcome, Ok(Outcome::Forward));
}

#[test]
fn a_deny_with_a_non_4xx_status_is_an_invalid_decision() {
    let policy = fixture("deny");
    assert_eq!(
        invalid_decision(&policy, "/status-200"),
        "deny status 200 is not allowed (use a 4xx other than 401 and 407)"
    );
}

#[test]
fn a_decision_bomb_is_refused_after_a_bounded_copy() {
    // 16,384 atoms all pointing at one 8 KiB text: 128 MiB if every atom were copied.
    let bomb = fixture("decision-bomb");
    assert_eq!(
        call_error(&bomb),
        CallError::Unreadable {
            limit: MAX_LIFTED_BYTES
        }
    );
    bearer_still_works();
}

#[test]
fn an_oversized_crypto_input_is_refused_in_one_line() {
    let flooding = fixture("oversized-crypto-input");
    let error = call_error(&flooding);
    assert_eq!(
        error,
        CallError::CryptoInputTooLarge {
            limit: MAX_CRYPTO_INPUT
        }
    );
    assert_eq!(
        error.to_string(),
        "passed more than 1048576 bytes to a crypto import",
        "no guest backtrace in what the agent sees"
    );
    bearer_still_works();
}

#[test]
fn a_slow_plugin_finishes_on_the_plugin_threads() {
    // Milliseconds of work: past its first slice, so the call moves and completes there.
    let slow = fixture_with(
        "slow",
        PluginLimits {
            timeout: Duration::from_secs(10),
            ..PluginLimits::default()
        },
    );
    for _ in 0..3 {
        let sent = Attempt::new(&slow, request("GET", "https://api.example.com/", &[]))
            .credentials(&[("token", "sk_slow")])
            .run();
        assert_eq!(sent.forwarded().header("authorization"), ["Bearer sk_slow"]);
    }
}

#[test]
fn a_slow_plugin_at_its_limit_refuses_the_next_call_at_once() {
    let spinning = std::sync::Arc::new(fixture_with(
        "infinite-loop",
        PluginLimits {
            timeout: Duration::from_secs(2),
            max_slow_calls: 1,
            ..PluginLimits::default()
        },
    ));
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let spinning = spinning.clone();
            std::thread::spawn(move || call_error(&spinning))
        })
        .collect();
    let mut errors: Vec<CallError> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    errors.sort_by_key(ToString::to_string);
    // One call has the plugin's only place on the plugin threads and spins to its deadline;
    // the other is refused as soon as it needs a place, without waiting for it.
    assert_eq!(
        errors,
        [
            CallError::Timeout(Duration::from_secs(2)),
            CallError::Busy { limit: 1 },
        ]
    );
    bearer_still_works();
}

#[test]
fn a_validate_config_that_spins_times_out_on_the_request_path_too() {
    let spinning = fixture("infinite-loop");
    let settings = config(&[("spin-in", "validate-config")]);
    let timeout = |error: PluginConfigError| match error {
        PluginConfigError::Plugin(PluginError::Call { error, .. }) => error,
        other => panic!("expected a failed call, got {other:?}"),
    };
    assert_eq!(
        timeout(block_on(spinning.requirements(&settings)).unwrap_err()),
        CallError::Timeout(Duration::from_millis(50))
    );
    assert_eq!(
        timeout(spinning.validate_config(&settings).unwrap_err()),
        CallError::Timeout(Duration::from_millis(50))
    );
    bearer_still_works();
}
