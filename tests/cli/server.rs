//! `agent-vault server`: starts on embedded defaults, answers /health, reloads plugins
//! dropped into its plugin directory, and stops cleanly on SIGTERM.

use crate::support::{DataDir, Server, built_wasm};

#[test]
fn the_server_starts_on_a_fresh_data_dir_and_answers_health() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let response = server.get("/health");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("{\"status\":\"ok\"}"), "{response}");
    let missing = server.get("/nope");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(data.path().join("plugins").is_dir());
}

#[test]
fn the_server_loads_a_plugin_dropped_in_while_it_runs() {
    let data = DataDir::new();
    let server = Server::start(&data);
    server.wait_for_log(&["agent-vault started"]);
    std::fs::copy(
        built_wasm("fixture_counter"),
        data.plugin_dir().join("fixture-counter.wasm"),
    )
    .unwrap();
    server.wait_for_log(&["plugin loaded", "fixture-counter"]);
    let bytes = std::fs::read(built_wasm("fixture_counter")).unwrap();
    std::fs::write(
        data.plugin_dir().join("fixture-counter.wasm"),
        &bytes[..100],
    )
    .unwrap();
    let line = server.wait_for_log(&["previous version keeps serving"]);
    assert!(line.contains("fixture-counter.wasm"), "{line}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let data = DataDir::new();
    let mut server = Server::start(&data);
    server.terminate();
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    server.wait_for_log(&["shutting down"]);
}

#[test]
fn a_bad_address_list_stops_the_server_before_it_starts_and_names_the_entry() {
    let data = DataDir::new();
    let error = data
        .command(&[
            "server",
            "--passwordless",
            "--port",
            "0",
            "--mitm-port",
            "0",
            "--trusted-proxies",
            "10.0.0.0/8, proxy.internal",
        ])
        .run()
        .fails();
    assert!(
        error.contains("--trusted-proxies: \"proxy.internal\" is not a CIDR or an IP address"),
        "{error}"
    );
    assert!(
        !data.path().join("agent-vault.db").exists(),
        "nothing is set up on the way to the error"
    );
}
