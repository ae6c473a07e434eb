//! Running `agent-vault` like a user: a scratch data directory, a command line, its output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use serde_json::Value;

/// The master password of every test server.
pub const MASTER_PASSWORD: &str = "test master password";

/// The workspace root (this crate is `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `agent-vault` binary of the same build as this test (`cargo test --workspace` builds
/// it, because the host package has integration tests of its own).
pub fn binary() -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe.parent().and_then(Path::parent).unwrap();
    let binary = profile_dir.join(format!("agent-vault{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or build it with `cargo build -p agent-vault`)",
        binary.display()
    );
    binary
}

/// Where built plugins and fixtures are (host/build.rs builds them there).
pub fn built_wasm(crate_name: &str) -> PathBuf {
    workspace_root()
        .join("target/plugins/wasm32-wasip2/release")
        .join(format!("{crate_name}.wasm"))
}

/// Where the servers of the black-box tests keep their state: SQLite, the default, or, with
/// `AGENT_VAULT_TEST_BACKEND=postgres`, PostgreSQL: every data directory then gets a database
/// of its own in the throwaway cluster (`crate::pg_cluster`), which its servers and the
/// commands that open the store offline (`server`, `master-password change`) are given as
/// `DATABASE_URL`. A test about the SQLite file itself pins SQLite ([`DataDir::sqlite`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend this run was asked for.
    pub fn of_this_run() -> Backend {
        static BACKEND: OnceLock<Backend> = OnceLock::new();
        *BACKEND.get_or_init(|| {
            match std::env::var("AGENT_VAULT_TEST_BACKEND").as_deref() {
                Err(std::env::VarError::NotPresent) | Ok("" | "sqlite") => Backend::Sqlite,
                Ok("postgres") => Backend::Postgres,
                other => panic!(
                    "AGENT_VAULT_TEST_BACKEND is {other:?}: it is `sqlite` (the default) or `postgres`"
                ),
            }
        })
    }
}

/// The commands that open the store themselves, and so read `DATABASE_URL`.
const STORE_COMMANDS: [&str; 2] = ["server", "master-password"];

/// A scratch `--data-dir` for one test.
pub struct DataDir {
    dir: tempfile::TempDir,
    backend: Backend,
    /// On PostgreSQL, the URL of this directory's database, created when first asked for.
    database: OnceLock<String>,
}

impl DataDir {
    /// On the backend of this run.
    pub fn new() -> Self {
        DataDir::on(Backend::of_this_run())
    }

    /// On SQLite whatever the run's backend: for the tests about the SQLite file itself.
    pub fn sqlite() -> Self {
        DataDir::on(Backend::Sqlite)
    }

    fn on(backend: Backend) -> Self {
        DataDir {
            dir: tempfile::tempdir().unwrap(),
            backend,
            database: OnceLock::new(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The PostgreSQL database that servers on this directory use, when the directory is
    /// on PostgreSQL (a new database of the throwaway cluster, the same one every time).
    pub fn database_url(&self) -> Option<&str> {
        match self.backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                self.database
                    .get_or_init(|| crate::pg_cluster::cluster().new_database()),
            ),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn plugin_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `agent-vault ARGS... --data-dir DIR`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).run()
    }

    /// `agent-vault ARGS... --data-dir DIR`, to add environment variables or standard input
    /// before running it.
    pub fn command(&self, args: &[&str]) -> Invocation {
        let data_dir = self.path().to_str().unwrap();
        let mut with_dir = args.to_vec();
        with_dir.extend(["--data-dir", data_dir]);
        let invocation = Invocation::new(&with_dir);
        let opens_store = args
            .first()
            .is_some_and(|verb| STORE_COMMANDS.contains(verb))
            && !args.contains(&"--database-url");
        match self.database_url() {
            Some(url) if opens_store => invocation.env("DATABASE_URL", url),
            _ => invocation,
        }
    }
}

impl DataDir {
    /// `agent-vault plugin test PLUGIN --url URL MORE... --data-dir DIR`.
    pub fn plugin_test(&self, plugin: &str, url: &str, more: &[&str]) -> Run {
        let mut args = vec!["plugin", "test", plugin, "--url", url];
        args.extend_from_slice(more);
        self.run(&args)
    }
}

/// `agent-vault ARGS...` with none of our environment variables set.
pub fn agent_vault(args: &[&str]) -> Run {
    Invocation::new(args).run()
}

/// The environment variables `agent-vault` reads, none of which a test inherits.
const OUR_ENVIRONMENT: [&str; 14] = [
    "AGENT_VAULT_HOME",
    "AGENT_VAULT_LOG",
    "AGENT_VAULT_LOG_LEVEL",
    "AGENT_VAULT_TRUSTED_PROXIES",
    "AGENT_VAULT_ALLOW_PRIVATE_RANGES",
    "AGENT_VAULT_TOKEN",
    "AGENT_VAULT_ADDR",
    "AGENT_VAULT_VAULT",
    "AGENT_VAULT_MASTER_PASSWORD",
    "AGENT_VAULT_DEV_MODE",
    "AGENT_VAULT_EGRESS_PROXY",
    "AGENT_VAULT_EGRESS_PROXY_FILE",
    "AGENT_VAULT_NO_EGRESS_PROXY",
    "DATABASE_URL",
];

/// How long a command may run before the test gives up on it.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// A command line about to run: `agent-vault ARGS...`, with the environment variables and
/// standard input a test gives it (standard input is empty otherwise, never a terminal).
pub struct Invocation {
    command: Command,
    stdin: Vec<u8>,
}

impl Invocation {
    pub fn new(args: &[&str]) -> Self {
        let mut command = Command::new(binary());
        command.args(args);
        for name in OUR_ENVIRONMENT {
            command.env_remove(name);
        }
        Invocation {
            command,
            stdin: Vec::new(),
        }
    }

    /// Set an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.command.env(name, value);
        self
    }

    /// Feed `text` to standard input.
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = text.as_bytes().to_vec();
        self
    }

    /// Run to completion (killed, and the test failed, if it takes minutes).
    pub fn run(mut self) -> Run {
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = std::mem::take(&mut self.stdin);
        // The child may exit without reading; a broken pipe is its business.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let reader = |mut stream: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = stream.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = reader(Box::new(child.stdout.take().unwrap()));
        let stderr = reader(Box::new(child.stderr.take().unwrap()));
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > COMMAND_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{:?} did not finish", self.command);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        writer.join().unwrap();
        Run(Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        })
    }
}

/// What a finished command printed.
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8(self.0.stdout.clone()).unwrap()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8(self.0.stderr.clone()).unwrap()
    }

    /// Assert success and return stdout.
    pub fn ok(&self) -> String {
        assert!(
            self.0.status.success(),
            "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.0.status,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Assert failure and return stderr.
    pub fn fails(&self) -> String {
        assert!(
            !self.0.status.success(),
            "command succeeded:\n{}",
            self.stdout()
        );
        self.stderr()
    }
}

/// A running `agent-vault server` on a free port, and the lines it logs.
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The transparent proxy's `127.0.0.1:PORT`, when a test turned it on (`--mitm-port`).
    pub transparent: Option<String>,
    /// The metrics listener's `127.0.0.1:PORT`, when a test gave `--metrics-addr`.
    pub metrics: Option<String>,
    log: mpsc::Receiver<String>,
}

impl Server {
    /// Start on `data` with the test master password.
    pub fn start(data: &DataDir) -> Server {
        Server::start_with(
            data,
            &[],
            &[("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD)],
        )
    }

    /// Start with extra arguments and environment variables. The transparent proxy is off
    /// unless the arguments give `--mitm-port` (tests use `auto`).
    pub fn start_with(data: &DataDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_under(&[], data, args, env)
    }

    /// Start as [`Server::start_with`] does, under a `wrapper` command that execs it (for
    /// example `prlimit --nofile=256:256`, or `setpriv` to run as another user).
    pub fn start_under(
        wrapper: &[&str],
        data: &DataDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(binary());
                command
            }
            None => Command::new(binary()),
        };
        let transparent = args.contains(&"--mitm-port");
        command
            .args(["server", "--port", "0", "--data-dir"])
            .arg(data.path());
        if !transparent {
            command.args(["--mitm-port", "0"]);
        }
        command
            .args(args)
            .env_remove("AGENT_VAULT_MASTER_PASSWORD")
            .env_remove("AGENT_VAULT_HOME")
            .env_remove("AGENT_VAULT_LOG_LEVEL")
            .env_remove("AGENT_VAULT_BASE_PATH")
            .env_remove("AGENT_VAULT_EGRESS_PROXY")
            .env_remove("AGENT_VAULT_EGRESS_PROXY_FILE")
            .env_remove("AGENT_VAULT_NO_EGRESS_PROXY")
            .env_remove("DATABASE_URL");
        let own_database =
            args.contains(&"--database-url") || env.iter().any(|(name, _)| *name == "DATABASE_URL");
        if !own_database && let Some(url) = data.database_url() {
            command.env("DATABASE_URL", url);
        }
        // At info unless the test chose a level.
        if !args.contains(&"--log-level") {
            command.env("AGENT_VAULT_LOG", "info");
        } else {
            command.env_remove("AGENT_VAULT_LOG");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (log_sender, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = log_sender.send(line);
            }
        });
        let first_line = match stdout.next() {
            Some(Ok(line)) => line,
            _ => {
                let logged: Vec<String> = log.try_iter().collect();
                panic!("the server did not start:\n{}", logged.join("\n"));
            }
        };
        let address = first_line
            .strip_prefix("agent-vault listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
            .to_owned();
        let transparent = transparent.then(|| {
            let line = stdout.next().and_then(Result::ok).unwrap_or_default();
            line.strip_prefix("agent-vault transparent proxy listening on http://")
                .unwrap_or_else(|| panic!("the transparent proxy did not start: {line:?}"))
                .to_owned()
        });
        let metrics = args.contains(&"--metrics-addr").then(|| {
            let line = stdout.next().and_then(Result::ok).unwrap_or_default();
            line.strip_prefix("agent-vault metrics listening on http://")
                .unwrap_or_else(|| panic!("the metrics listener did not start: {line:?}"))
                .to_owned()
        });
        if data.backend() == Backend::Postgres {
            assert!(
                !data.path().join("agent-vault.db").exists(),
                "a server of a PostgreSQL run wrote a SQLite file"
            );
        }
        Server {
            child,
            address,
            transparent,
            metrics,
            log,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A raw HTTP/1.1 GET; the whole response as text.
    pub fn get(&self, path: &str) -> String {
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

    /// A JSON API call; the status and the JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(&self.address).unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.address
        );
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status: u16 = response[9..12].parse().unwrap();
        let (_, json) = response.split_once("\r\n\r\n").unwrap();
        let json = decode_chunked(json);
        (status, serde_json::from_str(&json).unwrap_or(Value::Null))
    }

    /// Send SIGTERM, as a service manager stopping the server does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The log lines not read yet, up to the end (call once the server has exited).
    pub fn rest_of_log(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(20)) {
            lines.push(line);
        }
        lines
    }

    /// The log lines written so far and not read yet, without waiting for more.
    pub fn log_so_far(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Wait (bounded) for a log line containing all of `needles`.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
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

/// The body of a response that may be chunked (hyper chunks when it does not know the
/// length; our JSON responses carry a Content-Length, so this is usually the identity).
fn decode_chunked(body: &str) -> String {
    if body.trim_start().starts_with(['{', '[']) || body.is_empty() {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// `agent-vault ARGS...` with extra environment variables (and stdin closed).
pub fn agent_vault_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("AGENT_VAULT_HOME")
        .env_remove("AGENT_VAULT_LOG")
        .env_remove("AGENT_VAULT_MASTER_PASSWORD")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    Run(command.output().unwrap())
}

/// A JSON API call that may fail to connect or be cut off (a server being killed): `None`
/// unless a whole response arrived.
pub fn try_call(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status: u16 = response.get(9..12)?.parse().ok()?;
    let (_, json) = response.split_once("\r\n\r\n")?;
    Some((status, serde_json::from_str(&decode_chunked(json)).ok()?))
}

/// The token `auth` kept in a CLI data directory.
pub fn session_token(cli: &DataDir) -> String {
    let text = std::fs::read_to_string(cli.path().join("session.json")).unwrap();
    let session: Value = serde_json::from_str(&text).unwrap();
    session["token"].as_str().unwrap().to_owned()
}
