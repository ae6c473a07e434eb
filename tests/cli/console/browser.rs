//! The console in headless Chromium (`tests/browser/console.mjs`): a person's walk through
//! the pages, once with JavaScript on and once off, with axe-core failing the walk on any
//! serious or critical accessibility violation. With `UPDATE_SCREENSHOTS=1` the walk with
//! JavaScript on saves each page at 1280 and 390 px wide to `docs/console/` (see
//! `docs/console.md`); otherwise nothing in the repository is written.

use std::process::Command;

use crate::proposals::ONE_BROWSER;
use crate::support::{DataDir, Server, workspace_root};

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
    let data = DataDir::new();
    let server = Server::start(&data);
    let mut command = Command::new("node");
    command
        .arg("console.mjs")
        .current_dir(&dir)
        .env("BASE_URL", server.url())
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
            "ok plugins",
            "ok plugins-dry-run",
            "ok sign-out"
        ]
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
