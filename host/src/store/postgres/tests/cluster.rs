//! A throwaway PostgreSQL cluster for the tests of this process: `initdb` into a temporary
//! directory, `postgres` listening on a Unix socket in that directory (and, for the TLS
//! tests, on a loopback port with a certificate for `localhost` from a CA made here), a new
//! database for every test that asks (so tests run in parallel), and the cluster stopped and
//! its directory removed when the test process ends, however it ends.
//!
//! The server runs under a small shell that holds a pipe from this process: when the process
//! exits (or dies, Ctrl-C included), the pipe closes, and the shell stops the server (fast
//! shutdown) and removes the directory. PostgreSQL refuses to run as root; as root, the cluster runs as the
//! `postgres` user, which Debian's `postgresql` package creates.
//!
//! Without the PostgreSQL server binaries the tests fail, with a message saying how to
//! install them: `./scripts/test` installs Debian's `postgresql` when they are missing.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

/// Runs the server until its standard input closes, then stops it and removes the cluster.
const SUPERVISOR: &str = r#"
# Ctrl-C reaches the whole process group: the server stops on it by itself, and this shell
# (and its cat) must live on to remove the directory once the test process is gone.
trap '' INT TERM HUP
postgres="$1"; dir="$2"; port="$3"
"$postgres" -D "$dir/data" -k "$dir" -p "$port" -c listen_addresses=127.0.0.1 \
    -c ssl=on -c ssl_cert_file="$dir/server.crt" -c ssl_key_file="$dir/server.key" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 \
    >"$dir/server.log" 2>&1 &
server=$!
cat >/dev/null
kill -INT "$server"
wait "$server"
rm -rf "$dir"
"#;

const MISSING: &str = "the PostgreSQL server binaries (initdb, postgres) are not installed: \
    the store's tests run against a throwaway PostgreSQL cluster. Install Debian's \
    `postgresql` package (`apt-get install postgresql`; `./scripts/test` does it for you) \
    or put a PostgreSQL bin directory on PATH";

/// The cluster of this test process.
pub(crate) struct Cluster {
    dir: PathBuf,
    /// The loopback port, which also names the Unix socket's file.
    port: u16,
    databases: AtomicU32,
    /// Held open for the life of the process: its end stops the server.
    _supervisor: Mutex<(Child, ChildStdin)>,
}

/// The cluster, started by the first test that needs it.
pub(crate) fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

impl Cluster {
    fn start() -> Cluster {
        let bin = server_binaries().unwrap_or_else(|| panic!("{MISSING}"));
        let owner = if rustix::process::geteuid().is_root() {
            Some(postgres_user())
        } else {
            None
        };
        // In /tmp rather than $TMPDIR: a Unix socket's path has at most 107 bytes, and as
        // root the postgres user must be able to reach the directory.
        let dir = tempfile::Builder::new()
            .prefix("agent-vault-pg-")
            .tempdir_in("/tmp")
            .expect("create the cluster's directory in /tmp")
            .keep();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .expect("give the cluster's directory to the postgres user");
        }
        let as_owner = |command: &mut Command| {
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
            // Somewhere the postgres user may enter, and one locale whatever the host's.
            command.current_dir(&dir).env("LC_ALL", "C");
        };

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]);
        as_owner(&mut initdb);
        let output = initdb.output().expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        write_certificates(&dir, owner);
        // A free port now; the server takes it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free loopback port")
            .port();

        let mut supervisor = Command::new("sh");
        supervisor
            .args(["-c", SUPERVISOR, "sh"])
            .arg(bin.join("postgres"))
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_owner(&mut supervisor);
        let mut child = supervisor.spawn().expect("start the PostgreSQL server");
        let stdin = child.stdin.take().expect("the supervisor's stdin");
        let cluster = Cluster {
            dir,
            port,
            databases: AtomicU32::new(0),
            _supervisor: Mutex::new((child, stdin)),
        };
        cluster.wait_until_ready();
        cluster
    }

    /// Wait for the server to accept connections (it starts in about a second).
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.admin_client() {
                Ok(_) => return,
                Err(error) if Instant::now() > deadline => panic!(
                    "the test PostgreSQL server did not start: {error}\n{}",
                    fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn admin_client(&self) -> Result<Client, postgres::Error> {
        Client::connect(&self.url("postgres"), NoTls)
    }

    /// The URL of database `name` in this cluster, over its Unix socket.
    pub(crate) fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@/{name}?host={}&port={}",
            self.dir.display(),
            self.port
        )
    }

    /// The URL of database `name` over TCP to `localhost`, with `query` appended.
    pub(crate) fn tcp_url(&self, name: &str, query: &str) -> String {
        format!("postgres://postgres@localhost:{}/{name}?{query}", self.port)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A new, empty database; its URL.
    pub(crate) fn new_database(&self) -> String {
        self.url(&self.create_database())
    }

    /// A new, empty database; its name.
    pub(crate) fn create_database(&self) -> String {
        let name = format!("test_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        let mut admin = self.admin_client().expect("connect to the test cluster");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        name
    }
}

/// The server's certificate for `localhost` and its key (mode 0600, the server's own, as
/// PostgreSQL requires), and the CA that signed it, in `dir`.
fn write_certificates(dir: &Path, owner: Option<(u32, u32)>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    fs::write(dir.join("server.crt"), server.pem()).unwrap();
    let key_file = dir.join("server.key");
    fs::write(&key_file, server_key.serialize_pem()).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    if let Some((uid, gid)) = owner {
        for file in ["ca.pem", "server.crt", "server.key"] {
            std::os::unix::fs::chown(dir.join(file), Some(uid), Some(gid)).unwrap();
        }
    }
}

/// The directory with `initdb` and `postgres`: from PATH, or Debian's newest
/// `/usr/lib/postgresql/<version>/bin`.
fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|dir| has_both(dir)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .unwrap_or_else(|| {
            panic!(
                "the tests run as root, and PostgreSQL refuses to: they start it as the \
                 `postgres` user, which does not exist here. Install Debian's `postgresql` \
                 package, which creates it"
            )
        })
}
