//! Builds the guest plugins (`plugins/`, its own workspace for wasm32-wasip2) so that the
//! standard ones can be embedded in the binary and the test fixtures are ready for the tests.
//!
//! The plugins build into `target/plugins` (not this crate's target directory, whose lock the
//! outer cargo holds), always in release mode: they are small and every profile of the host
//! embeds the same bytes.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The standard plugins: (crate name, plugin name). Their `.wasm` files are embedded.
const STANDARD: [(&str, &str); 8] = [
    ("bearer", "bearer"),
    ("basic", "basic"),
    ("api_key", "api-key"),
    ("custom_headers", "custom-headers"),
    ("passthrough", "passthrough"),
    ("query_param", "query-param"),
    ("hmac", "hmac"),
    ("aws_sigv4", "aws-sigv4"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root");
    let plugins = root.join("plugins");
    let target_dir = root.join("target").join("plugins");

    watch(&root.join("wit"));
    watch(&root.join(".cargo"));
    for entry in std::fs::read_dir(&plugins).expect("reading plugins/") {
        let path = entry.expect("reading plugins/").path();
        if path.file_name().is_some_and(|name| name != "target") {
            watch(&path);
        }
    }

    check_wasm_target();
    build_plugins(&plugins, &target_dir);

    let out_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut code = String::from(
        "/// The standard plugins as (name, component bytes), built from `plugins/`.\n\
         pub const STANDARD_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for (crate_name, plugin_name) in STANDARD {
        let wasm = out_dir.join(format!("{crate_name}.wasm"));
        assert!(
            wasm.exists(),
            "plugin build did not produce {}",
            wasm.display()
        );
        writeln!(
            code,
            "    ({plugin_name:?}, include_bytes!({:?})),",
            wasm.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let generated =
        PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("builtin_plugins.rs");
    std::fs::write(&generated, code).expect("writing builtin_plugins.rs");

    // Tests find the fixtures here.
    println!(
        "cargo:rustc-env=AGENT_VAULT_PLUGIN_BUILD_DIR={}",
        out_dir.display()
    );
}

fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

fn check_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let target = Path::new(&sysroot).join("lib/rustlib/wasm32-wasip2");
    if !target.exists() {
        panic!(
            "\n\nagent-vault embeds WebAssembly plugins built for wasm32-wasip2, and that target \
             is not installed.\nRun `rustup target add wasm32-wasip2` (scripts/server and \
             scripts/test do it for you) and build again.\n\n"
        );
    }
}

fn build_plugins(plugins: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(plugins)
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's settings are for the host, not for the guests.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let outer_only = [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "MFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_PRIMARY_PACKAGE",
        ]
        .contains(&key.as_ref())
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_");
        if outer_only {
            command.env_remove(key.as_ref());
        }
    }
    let status = command.status().expect("running cargo for plugins/");
    assert!(
        status.success(),
        "building the plugins in plugins/ failed (see the errors above)"
    );
}
