//! `agent-vault server`: starts on embedded defaults, answers /health, reloads plugins
//! dropped into its plugin directory, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{DataDir, binary, built_wasm};

/// A running server and the lines it logs.
struct Server {
    child: Child,
    address: String,
    log: mpsc::Receiver<String>,
}

impl Server {
    fn start(data: &DataDir) -> Server {
        let mut child = Command::new(binary())
            .args(["server", "--port", "0", "--data-dir"])
            .arg(data.path())
            .env("AGENT_VAULT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (log_sender, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = log_sender.send(line);
            }
        });
        let first_line = stdout
            .lines()
            .next()
            .expect("the server prints its address")
            .unwrap();
        let address = first_line
            .strip_prefix("agent-vault listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
            .to_owned();
        Server {
            child,
            address,
            log,
        }
    }

    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// Wait (bounded) for a log line containing all of `needles`.
    fn wait_for_log(&self, needles: &[&str]) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if needles.iter().all(|needle| line.contains(needle)) => return line,
                Ok(_) => continue,
                Err(_) => panic!("the server never logged {needles:?}"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    server.wait_for_log(&["shutting down"]);
}
