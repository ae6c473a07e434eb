//! The example in examples/ledger-plugin, built as its README says, dropped into the plugin
//! directory, and tried with `plugin test`.

use std::process::Command;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::{DataDir, workspace_root};

fn build_example() -> std::path::PathBuf {
    let root = workspace_root();
    let target_dir = root.join("target").join("plugins");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root.join("examples/ledger-plugin"))
        .args(["build", "--release", "--target-dir"])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "building examples/ledger-plugin failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join("wasm32-wasip2/release/ledger_signature.wasm")
}

#[test]
fn the_example_plugin_loads_from_the_plugin_directory_and_signs_requests() {
    let data = DataDir::new();
    let wasm = build_example();
    std::fs::copy(&wasm, data.plugin_dir().join("ledger-signature.wasm")).unwrap();

    let listing = data.run(&["plugin", "list"]).ok();
    let line = listing
        .lines()
        .find(|l| l.starts_with("ledger-signature "))
        .expect(&listing);
    assert!(
        line.contains("ledger-signature.wasm") && line.ends_with("active"),
        "{line}"
    );

    let shown = data
        .run(&[
            "plugin",
            "test",
            "ledger-signature",
            "--url",
            "https://api.ledger.example/v1/accounts",
            "--now",
            "2026-01-01T00:00:00Z",
            "-C",
            "key_id=lk_live_1",
            "-C",
            "secret=shh",
        ])
        .ok();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"shh").unwrap();
    mac.update(b"1767225600:GET:/v1/accounts");
    let signature = hex::encode(mac.finalize().into_bytes());
    assert_eq!(
        shown,
        format!(
            "GET https://api.ledger.example/v1/accounts\nhost: api.ledger.example\n\
             x-ledger-key: ****\nx-ledger-timestamp: 1767225600\nx-ledger-signature: {signature}\n"
        )
    );

    let denied = data.run(&[
        "plugin",
        "test",
        "ledger-signature",
        "--method",
        "DELETE",
        "--url",
        "https://api.ledger.example/v1/accounts/7",
        "-C",
        "key_id=lk_live_1",
        "-C",
        "secret=shh",
    ]);
    assert_eq!(
        denied.stdout(),
        "denied: 403 this service is read-only (allow-writes is off)\n"
    );
    assert!(!denied.0.status.success());
}

#[test]
fn the_example_plugin_stays_under_sixty_lines() {
    let source =
        std::fs::read_to_string(workspace_root().join("examples/ledger-plugin/src/lib.rs"))
            .unwrap();
    assert!(
        source.lines().count() < 60,
        "the example is meant to show how little a plugin takes"
    );
}
