//! The console in headless Chromium (`tests/browser/console.mjs`): a person's walk through
//! the pages, once with JavaScript on and once off, with axe-core failing the walk on any
//! serious or critical accessibility violation. With `UPDATE_SCREENSHOTS=1` the walk with
//! JavaScript on saves each page at 1280 and 390 px wide to `docs/console/` (see
//! `docs/console.md`); otherwise nothing in the repository is written.

use std::process::Command;

use crate::proposals::ONE_BROWSER;
use crate::support::{DataDir, MASTER_PASSWORD, Server, workspace_root};
use crate::upstream::Upstream;

/// The credential value the owner types in the walk; the agent's requests must carry it
/// upstream, and no page may show it.
const SECRET: &str = "sk_test_console_walk_5d1e0b";

/// The names the walk's services cover, all answered by one recording upstream.
const NAMES: [&str; 3] = [
    "api.test.example",
    "uploads.test.example",
    "other.test.example",
];

/// Walk the console on a fresh server; the script's output when it fails.
fn walk(javascript: &str, screenshots: bool) {
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = workspace_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir()
            && dir.join("node_modules/axe-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium, playwright-core and axe-core: run ./scripts/test, \
         which installs them"
    );
    let upstream = Upstream::start(&NAMES);
    let pins: Vec<String> = NAMES
        .iter()
        .map(|name| format!("{name}:{}:127.0.0.1", upstream.port))
        .collect();
    let mut args = vec!["--upstream-ca", upstream.ca_file.to_str().unwrap()];
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    let data = DataDir::new();
    let server = Server::start_with(
        &data,
        &args,
        &[
            ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
            ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
        ],
    );
    let mut command = Command::new("node");
    command
        .arg("console.mjs")
        .current_dir(&dir)
        .env("BASE_URL", server.url())
        .env("UPSTREAM_PORT", upstream.port.to_string())
        .env("SECRET", SECRET)
        .env("EMAIL", "owner@example.com")
        .env("PASSWORD", "correct horse battery staple")
        .env("JAVASCRIPT", javascript);
    if screenshots {
        command.env("SCREENSHOT_DIR", workspace_root().join("docs/console"));
    }
    let output = command.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the walk with JavaScript {javascript} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "ok register",
            "ok home",
            "ok vault-overview",
            "ok credentials",
            "ok service-bearer",
            "ok service-plugin",
            "ok token",
            "ok request-log",
            "ok agent",
            "ok proposal",
            "ok revoke-agent",
            "ok vault-traffic",
            "ok users",
            "ok account",
            "ok instance",
            "ok plugins",
            "ok plugins-dry-run",
            "ok sign-out"
        ]
    );

    // What the upstream got: the typed value as the bearer service's token, a signature
    // from the plugin service, the approved value for the proposed service; and the
    // server's log never held the value.
    // Each service gets its own path in the walk.
    let requests = upstream.received();
    let to = |path: &str| {
        requests
            .iter()
            .find(|request| request.target == path)
            .unwrap_or_else(|| panic!("no request reached {path}"))
    };
    assert_eq!(
        to("/v1/charges").header("authorization"),
        vec![format!("Bearer {SECRET}").as_str()]
    );
    assert_eq!(to("/v2/files").header("x-signature").len(), 1);
    assert_eq!(
        to("/v1/items").header("authorization"),
        vec![format!("Bearer {SECRET}-items").as_str()]
    );
    let log = server.log_so_far().join("\n");
    assert!(
        !log.contains(SECRET),
        "the server's log holds the credential value"
    );
}

#[test]
fn a_person_walks_the_console_with_javascript_on_and_axe_finds_nothing_serious() {
    walk(
        "on",
        std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1"),
    );
}

#[test]
fn every_form_of_the_walk_works_with_javascript_off() {
    walk("off", false);
}
