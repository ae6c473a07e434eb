//! Running the server on a machine the test shapes: inside a user and mount namespace of its
//! own (`unshare --user --map-root-user --mount`, which needs no root where unprivileged user
//! namespaces are allowed), where the test can put the data directory on a small tmpfs (a
//! disk that fills up) and have host names looked up in `/etc/hosts` only (a name that does
//! not exist then fails at once, as NXDOMAIN does, without a DNS query leaving the machine).
//! The server shares the test's network, so it is reached on 127.0.0.1 as usual; the test
//! reaches its files through `/proc/PID/root`, which shows them as the server sees them.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::proxy::{Answer, send_raw};

/// What the server's namespace changes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Confinement {
    /// Mount a tmpfs of this many KiB over the data directory.
    pub tmpfs_kib: Option<u64>,
    /// Look host names up in `/etc/hosts` only (`hosts: files` in `nsswitch.conf`).
    pub hosts_file_only: bool,
    /// Mount a tmpfs of this many KiB over the request log's journal directory (a disk that
    /// fills up under the journal only).
    pub journal_tmpfs_kib: Option<u64>,
}

/// `env` with, when `data` is on PostgreSQL, its `DATABASE_URL`: a confined server on the
/// run's backend. (A server whose data directory is a tmpfs that fills up is about the SQLite
/// file, and keeps to SQLite.)
pub fn with_database<'a>(
    data: &'a crate::support::DataDir,
    env: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = env.to_vec();
    env.extend(data.database_url().map(|url| ("DATABASE_URL", url)));
    env
}

/// The shell that sets the namespace up, then becomes the server (`exec`), so that the
/// server's pid is the child's.
const SETUP: &str = r#"
if [ -n "$TMPFS_KIB" ]; then mount -t tmpfs -o "size=${TMPFS_KIB}k,mode=0700" tmpfs "$DATA_DIR"; fi
if [ -n "$JOURNAL_TMPFS_KIB" ]; then
  mkdir -p "$DATA_DIR/request-log-journal"
  mount -t tmpfs -o "size=${JOURNAL_TMPFS_KIB}k,mode=0700" tmpfs "$DATA_DIR/request-log-journal"
fi
if [ -n "$NSSWITCH" ]; then mount --bind "$NSSWITCH" /etc/nsswitch.conf; fi
exec "$@"
"#;

/// A running `agent-vault server` in its own namespace.
pub struct ConfinedServer {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The data directory, as the server names it.
    pub data_dir: PathBuf,
    log: mpsc::Receiver<String>,
    _scratch: tempfile::TempDir,
}

impl ConfinedServer {
    /// Start `agent-vault server ARGS...` on `data_dir` inside a namespace shaped by
    /// `confinement`, with the environment variables `env`.
    pub fn start(
        data_dir: &Path,
        confinement: Confinement,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ConfinedServer {
        assert_namespaces_work();
        let scratch = tempfile::tempdir().unwrap();
        let mut command = Command::new("unshare");
        command
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "sh",
                "-ec",
                SETUP,
                "sh",
            ])
            .arg(crate::support::binary())
            .args(["server", "--port", "0", "--mitm-port", "0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("DATA_DIR", data_dir)
            .env("AGENT_VAULT_LOG", "info")
            .env_remove("AGENT_VAULT_MASTER_PASSWORD")
            .env_remove("AGENT_VAULT_HOME")
            .env_remove("AGENT_VAULT_LOG_LEVEL")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(kib) = confinement.tmpfs_kib {
            command.env("TMPFS_KIB", kib.to_string());
        }
        if let Some(kib) = confinement.journal_tmpfs_kib {
            command.env("JOURNAL_TMPFS_KIB", kib.to_string());
        }
        if confinement.hosts_file_only {
            let nsswitch = scratch.path().join("nsswitch.conf");
            std::fs::write(&nsswitch, "hosts: files\n").unwrap();
            command.env("NSSWITCH", nsswitch);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (sender, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let first_line = match stdout.next() {
            Some(Ok(line)) => line,
            _ => {
                let logged: Vec<String> = log.try_iter().collect();
                panic!("the confined server did not start:\n{}", logged.join("\n"));
            }
        };
        let address = first_line
            .strip_prefix("agent-vault listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
            .to_owned();
        ConfinedServer {
            child,
            address,
            data_dir: data_dir.to_owned(),
            log,
            _scratch: scratch,
        }
    }

    /// `path` of the data directory as the server sees it (on its tmpfs, if it has one).
    pub fn inside(&self, path: &str) -> PathBuf {
        let relative = self.data_dir.strip_prefix("/").unwrap();
        Path::new(&format!("/proc/{}/root", self.child.id()))
            .join(relative)
            .join(path)
    }

    /// A JSON API call; the status and the JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer));
        }
        let body = body.to_string();
        let answer = send_raw(&self.address, method, path, &headers, body.as_bytes());
        (answer.status, answer.json())
    }

    /// A request as an agent sends it, with `token`.
    pub fn send(&self, method: &str, target: &str, token: &str, body: &[u8]) -> Answer {
        let bearer = format!("Bearer {token}");
        send_raw(
            &self.address,
            method,
            target,
            &[("authorization", &bearer)],
            body,
        )
    }

    /// Wait (bounded) for a log line containing all of `needles`.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if needles.iter().all(|needle| line.contains(needle)) => return line,
                Ok(_) => continue,
                Err(_) => panic!("the server never logged {needles:?}"),
            }
        }
    }

    /// Stop with SIGTERM; every line logged up to the exit.
    pub fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap();
        let mut lines = Vec::new();
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(20)) {
            lines.push(line);
        }
        lines
    }
}

impl Drop for ConfinedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fail with the reason if this machine does not let an unprivileged user make namespaces.
fn assert_namespaces_work() {
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output();
    let works = output.as_ref().is_ok_and(|output| output.status.success());
    assert!(
        works,
        "this test runs the server in a user and mount namespace (`unshare --user \
         --map-root-user --mount`), which this machine does not allow: {output:?}"
    );
}
