//! `agent-vault server`: starts on embedded defaults, answers /health, reloads plugins
//! dropped into its plugin directory, and stops cleanly on SIGTERM.

use crate::store_rows::{Cell, Rows};
use crate::support::{Backend, DataDir, Server, built_wasm};

#[test]
fn the_server_starts_on_a_fresh_data_dir_and_answers_health() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let response = server.get("/health");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("{\"status\":\"ok\"}"), "{response}");
    // Every path outside the API is the web console's, which first asks for the owner
    // account.
    let console = server.get("/nope");
    assert!(console.starts_with("HTTP/1.1 303"), "{console}");
    assert!(console.contains("location: /register\r\n"), "{console}");
    let (status, _) = server.call(
        "POST",
        "/v1/auth/register",
        None,
        Some(&serde_json::json!({ "email": "owner@example.com", "password": "owner password" })),
    );
    assert_eq!(status, 201);
    let missing = server.get("/v1/nope");
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
    match data.backend() {
        Backend::Sqlite => assert!(
            !data.path().join("agent-vault.db").exists(),
            "nothing is set up on the way to the error"
        ),
        Backend::Postgres => assert_eq!(
            Rows::open(&data).value(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
                &[]
            ),
            Cell::Int(0),
            "nothing is set up on the way to the error"
        ),
    }
}

/// A server started with `-d`: its pid and address, from what `-d` printed. Dropped, it is
/// killed if the test has not stopped it.
struct Background {
    pid: u32,
    address: String,
}

impl Background {
    fn started(printed: &str) -> Background {
        let (pid, address) = printed
            .strip_prefix("agent-vault is running in the background (pid ")
            .and_then(|rest| rest.split_once("), listening on http://"))
            .unwrap_or_else(|| panic!("unexpected output: {printed}"));
        Background {
            pid: pid.parse().unwrap(),
            address: address.lines().next().unwrap().to_owned(),
        }
    }

    fn health(&self) -> Option<String> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&self.address).ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
    }
}

#[test]
fn dash_d_runs_the_server_in_the_background_until_server_stop() {
    let data = DataDir::new();
    let printed = data
        .run(&[
            "server",
            "-d",
            "--passwordless",
            "--port",
            "0",
            "--mitm-port",
            "0",
        ])
        .ok();
    let server = Background::started(&printed);
    assert!(
        printed.contains("Stop it with: agent-vault server stop"),
        "{printed}"
    );
    let health = server.health().expect("the background server answers");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // One server per data directory: a second start is refused, naming the first.
    let refused = data
        .run(&[
            "server",
            "--passwordless",
            "--port",
            "0",
            "--mitm-port",
            "0",
        ])
        .fails();
    assert!(
        refused.contains(&format!("already running with {}", data.path().display()))
            && refused.contains(&format!("(pid {})", server.pid)),
        "{refused}"
    );

    let stopped = data.run(&["server", "stop"]).ok();
    assert_eq!(
        stopped.trim(),
        format!("Stopped the agent-vault server (pid {}).", server.pid)
    );
    assert!(server.health().is_none(), "stopped means not answering");
    let log = std::fs::read_to_string(data.path().join("server.log")).unwrap();
    assert!(log.contains("shutting down"), "{log}");

    let nothing = data.run(&["server", "stop"]).fails();
    assert!(
        nothing.contains(&format!(
            "no agent-vault server is running with {}",
            data.path().display()
        )),
        "{nothing}"
    );
}

#[test]
fn a_background_server_gets_the_master_password_on_stdin_never_in_its_environment() {
    let data = DataDir::new();
    let password = "correct horse battery staple 42";
    let printed = data
        .command(&["server", "-d", "--port", "0", "--mitm-port", "0"])
        .env("AGENT_VAULT_MASTER_PASSWORD", password)
        .run()
        .ok();
    let server = Background::started(&printed);
    assert!(server.health().unwrap().starts_with("HTTP/1.1 200"));
    // What other processes of the machine can read of it.
    for file in ["environ", "cmdline"] {
        let path = format!("/proc/{}/{file}", server.pid);
        if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(password), "{path}: {text}");
        }
    }
    data.run(&["server", "stop"]).ok();

    // From a file: the background server is not given the file's name, only its content,
    // on its standard input.
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("master-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let file = file.to_str().unwrap();
    let printed = data
        .run(&[
            "server",
            "-d",
            "--port",
            "0",
            "--mitm-port",
            "0",
            "--master-password-file",
            file,
        ])
        .ok();
    let server = Background::started(&printed);
    assert!(server.health().unwrap().starts_with("HTTP/1.1 200"));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.pid)).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains("--password-stdin") && !cmdline.contains("master-password-file"),
        "{cmdline}"
    );
    data.run(&["server", "stop"]).ok();

    // A wrong password is refused in the foreground, before anything starts.
    let refused = data
        .command(&["server", "-d", "--port", "0", "--mitm-port", "0"])
        .env("AGENT_VAULT_MASTER_PASSWORD", "not the password")
        .run()
        .fails();
    assert!(refused.contains("wrong master password"), "{refused}");
}
