//! What a client that has not authenticated can make the server hold, and what other
//! processes of the machine can read of it: request heads within the header timeout on both
//! listeners and inside intercepted tunnels, a slowloris crowd, oversized heads, the caps on
//! open connections and their clean refusals, a server short of file descriptors, the master
//! password out of reach of other processes, and a private data directory.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::proxy::Proxy;
use crate::support::{DataDir, MASTER_PASSWORD, Server, try_call};
use crate::transparent::{Transparent, tunnel};

/// How long a test waits for the server to close a connection it should close (after a
/// header timeout of 1 to 3 s) before calling it still open.
const CLOSE_DEADLINE: Duration = Duration::from_secs(60);

fn with_password(env: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD)];
    all.extend_from_slice(env);
    all
}

/// A connection to `address` that has sent `bytes` and nothing more.
fn open_with(address: &str, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

/// Read until the server closes `stream`: what it sent before closing, or `Err` if the
/// connection is still open after [`CLOSE_DEADLINE`].
fn until_closed(
    stream: &mut impl Read,
    set_timeout: impl FnOnce(Duration),
) -> Result<Vec<u8>, String> {
    set_timeout(CLOSE_DEADLINE);
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(received),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "still open after {} s, having sent {:?}",
                    CLOSE_DEADLINE.as_secs(),
                    String::from_utf8_lossy(&received)
                ));
            }
            // A reset, or a TLS stream cut without close_notify: closed either way.
            Err(_) => return Ok(received),
        }
    }
}

fn closed(mut stream: TcpStream) -> Result<Vec<u8>, String> {
    let timeout_of = stream.try_clone().unwrap();
    until_closed(&mut stream, |timeout| {
        timeout_of.set_read_timeout(Some(timeout)).unwrap()
    })
}

/// The status of the first response on `stream` (read to its end).
fn status_of(mut stream: TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn connections_that_never_finish_a_request_head_are_closed_at_the_header_timeout() {
    let data = DataDir::new();
    let server = Server::start_with(
        &data,
        &["--mitm-port", "auto"],
        &with_password(&[("AGENT_VAULT_HEADER_TIMEOUT", "1")]),
    );
    let control = server.address.as_str();
    let transparent = server.transparent.clone().unwrap();
    // A kept-alive connection, idle after its answer.
    let mut kept_alive = open_with(control, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = [0u8; 12];
    kept_alive.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let cases: Vec<(&str, TcpStream)> = vec![
        ("control plane, nothing sent", open_with(control, b"")),
        (
            "control plane, half a request head",
            open_with(control, b"GET /health HTTP/1.1\r\nHost: x\r\n"),
        ),
        (
            "control plane, part of the HTTP/2 preface",
            open_with(control, b"PRI * HTTP/2.0\r\n"),
        ),
        ("control plane, kept alive and idle", kept_alive),
        (
            "transparent proxy, nothing sent",
            open_with(&transparent, b""),
        ),
        (
            "transparent proxy, half a CONNECT",
            open_with(&transparent, b"CONNECT api.example.com:443 HTTP/1.1\r\n"),
        ),
    ];
    for (case, stream) in cases {
        let sent = closed(stream).unwrap_or_else(|error| panic!("{case}: {error}"));
        // (The kept-alive one still had the rest of its answer to read.)
        if !case.contains("kept alive") {
            assert_eq!(
                String::from_utf8_lossy(&sent),
                "",
                "{case}: no answer, a close"
            );
        }
    }
    // The server is still there for a client that finishes its request.
    assert!(server.get("/health").starts_with("HTTP/1.1 200"));
}

#[test]
fn inside_a_tunnel_the_handshake_and_each_request_head_have_the_header_timeout() {
    let t = Transparent::start_with(&[
        ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
        ("AGENT_VAULT_HEADER_TIMEOUT", "1"),
    ]);
    let token = t.proxy.token.clone();
    let host = "api.test.example";

    // After the 200, no TLS at all.
    let port = t.proxy.upstream.port;
    let mut connect = open_with(
        &t.address,
        format!(
            "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut answer = [0u8; 12];
    connect.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let sent = closed(connect).unwrap_or_else(|error| panic!("no TLS: {error}"));
    assert!(
        String::from_utf8_lossy(&sent).ends_with("\r\n\r\n"),
        "{sent:?}"
    );

    // TLS, then nothing; TLS, then half a request; TLS, one request, then idle.
    let mut silent = tunnel(&t, &token, host, host).unwrap();
    let mut half = tunnel(&t, &token, host, host).unwrap();
    write!(half, "GET /v1/items HTTP/1.1\r\nHost: {host}\r\n").unwrap();
    half.flush().unwrap();
    let mut idle = tunnel(&t, &token, host, host).unwrap();
    write!(idle, "GET /v1/items HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    idle.flush().unwrap();
    let mut status = [0u8; 12];
    idle.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    for (case, stream) in [
        ("silent", &mut silent),
        ("half a head", &mut half),
        ("idle", &mut idle),
    ] {
        let socket = stream.sock.try_clone().unwrap();
        let sent = until_closed(stream, |timeout| {
            socket.set_read_timeout(Some(timeout)).unwrap()
        })
        .unwrap_or_else(|error| panic!("{case}: {error}"));
        if case != "idle" {
            assert!(
                sent.is_empty(),
                "{case}: {:?}",
                String::from_utf8_lossy(&sent)
            );
        }
    }
}

/// Connections that each trickle one more header byte every quarter second, forever: none
/// ever finishes its head. Dropped, the trickling stops.
struct Slowloris {
    stop: Arc<AtomicBool>,
    /// How many of the connections the server has closed.
    closed: Arc<Mutex<usize>>,
    count: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Slowloris {
    fn start(connections: Vec<TcpStream>) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(Mutex::new(0));
        let count = connections.len();
        let (stop_in, closed_in) = (stop.clone(), closed.clone());
        let thread = std::thread::spawn(move || {
            let mut open: Vec<TcpStream> = connections;
            while !stop_in.load(Ordering::SeqCst) && !open.is_empty() {
                // A write fails once the server has closed the connection (the first may
                // still succeed and draw the reset).
                open.retain_mut(|stream| stream.write_all(b"a").is_ok());
                *closed_in.lock().unwrap() = count - open.len();
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Slowloris {
            stop,
            closed,
            count,
            thread: Some(thread),
        }
    }

    /// Wait (bounded) until the server has closed every connection; how many it closed.
    fn wait_until_all_closed(&self) -> usize {
        let deadline = Instant::now() + CLOSE_DEADLINE;
        loop {
            let closed = *self.closed.lock().unwrap();
            if closed == self.count || Instant::now() > deadline {
                return closed;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Run by the adversarial suite (`tests/cli/adversarial/`) under its case name.
pub fn a_slowloris_crowd_on_both_listeners_is_closed_while_agents_are_served() {
    let t = Transparent::start_with(&[
        ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
        ("AGENT_VAULT_HEADER_TIMEOUT", "3"),
        ("AGENT_VAULT_MAX_CONNECTIONS", "250"),
    ]);
    let control = t.proxy.server.address.clone();
    let mut crowd = Vec::new();
    for _ in 0..200 {
        crowd.push(open_with(&control, b"GET /health HTTP/1.1\r\nX-Slow: "));
        crowd.push(open_with(
            &t.address,
            b"CONNECT api.test.example:443 HTTP/1.1\r\nX-Slow: ",
        ));
    }
    let slowloris = Slowloris::start(crowd);

    // An agent on each ingress is answered meanwhile, with its credential attached.
    let explicit = t.proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(explicit.status, 200, "{explicit:?}");
    assert_eq!(
        t.proxy.upstream.last().header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
    let (code, body, stderr) = t.curl(
        &t.trust(),
        &t.url("api.test.example", "/v1/items?through=tunnel"),
    );
    assert_eq!((code, body.as_str()), (0, "{\"ok\":true}"), "{stderr}");
    assert_eq!(t.proxy.upstream.last().target, "/v1/items?through=tunnel");

    // Each slow connection is closed at the header timeout, though it keeps sending.
    assert_eq!(slowloris.wait_until_all_closed(), 400);
    drop(slowloris);

    // Every place they held is free again: the control plane admits exactly its cap.
    let idle: Vec<TcpStream> = (0..250).map(|_| open_with(&control, b"")).collect();
    assert_eq!(
        status_of(open_with(&control, b"")),
        "HTTP/1.1 503 Service Unavailable"
    );
    for mut stream in idle {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        assert!(
            matches!(&read, Err(error) if error.kind() == ErrorKind::WouldBlock),
            "an admitted connection waits for its request: {read:?}"
        );
    }
}

/// The oversized request heads of the adversarial cases: (what it is, the head).
fn oversized_heads() -> Vec<(&'static str, Vec<u8>)> {
    let one_big_header = {
        let mut head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        head.extend_from_slice(b"\r\n\r\n");
        head
    };
    let many_headers = {
        let mut head = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
        for n in 0..10_000 {
            head.extend_from_slice(format!("X-{n}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    };
    let long_line = {
        let mut head = b"GET /".to_vec();
        head.extend(std::iter::repeat_n(b'a', 64 * 1024));
        head.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        head
    };
    vec![
        ("a 1 MiB header", one_big_header),
        ("10,000 headers", many_headers),
        ("a 64 KiB request line", long_line),
    ]
}

/// Send `head` on a new connection to `address` and read the answer's status line. The
/// server answers before it has read it all, and closes: the rest may not go.
fn status_after(address: &str, head: Vec<u8>) -> String {
    let stream = TcpStream::connect(address).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&head);
    });
    let status = status_of(stream);
    writing.join().unwrap();
    status
}

/// The same inside an intercepted tunnel. Once the server has closed, a write fails and
/// leaves records unsent, which rustls's own `read` would try to send first: the answer is
/// read from the socket through the connection directly.
fn status_in_tunnel(
    mut tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    head: &[u8],
) -> String {
    let _ = tls.write_all(head).and_then(|()| tls.flush());
    let mut answer = Vec::new();
    while let Ok(1..) = tls.conn.read_tls(&mut tls.sock) {
        if tls.conn.process_new_packets().is_err() {
            break;
        }
        // All the plaintext there is so far (then `WouldBlock`).
        let _ = tls.conn.reader().read_to_end(&mut answer);
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Run by the adversarial suite (`tests/cli/adversarial/`) under its case name.
pub fn oversized_request_heads_are_refused_on_both_listeners_and_inside_a_tunnel() {
    let t = Transparent::start();
    let too_large = "HTTP/1.1 431 Request Header Fields Too Large";
    let control = t.proxy.server.address.clone();
    // A request line over the limit is refused as the head it is part of (431), or, when
    // the whole head was read before the limit was checked, as too long a target (414).
    let refused = |case: &str, status: String, place: &str| {
        let expected: &[&str] = if case.contains("request line") {
            &[too_large, "HTTP/1.1 414 URI Too Long"]
        } else {
            &[too_large]
        };
        assert!(
            expected.contains(&status.as_str()),
            "{place}: {case}: {status}"
        );
    };
    for (case, head) in oversized_heads() {
        refused(case, status_after(&control, head.clone()), "control plane");
        refused(
            case,
            status_after(&t.address, head.clone()),
            "transparent proxy",
        );
        let tls = tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
        refused(case, status_in_tunnel(tls, &head), "inside a tunnel");
    }

    // What rejected heads cost the server: 50 at once, each held open until its answer.
    let pid = t.proxy.server.child.id();
    let before = rss_kib(pid);
    let (_, one_big_header) = oversized_heads().remove(0);
    let senders: Vec<_> = (0..50)
        .map(|_| {
            let (control, head) = (control.clone(), one_big_header.clone());
            std::thread::spawn(move || status_after(&control, head))
        })
        .collect();
    for sender in senders {
        assert_eq!(sender.join().unwrap(), too_large);
    }
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 50 * 1024,
        "RSS grew by {grown} KiB over 50 rejected heads"
    );
}

#[test]
fn a_listener_at_its_cap_answers_503_and_frees_places_as_connections_close() {
    let data = DataDir::new();
    let server = Server::start_with(
        &data,
        &[
            "--mitm-port",
            "auto",
            "--max-connections",
            "4",
            "--max-connections-per-address",
            "0",
        ],
        &with_password(&[]),
    );
    let transparent = server.transparent.clone().unwrap();
    for address in [server.address.as_str(), transparent.as_str()] {
        let mut held: Vec<TcpStream> = (0..4).map(|_| open_with(address, b"")).collect();
        let refused = open_with(address, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = {
            let mut refused = refused;
            refused
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut answer = String::new();
            let _ = refused.read_to_string(&mut answer);
            answer
        };
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains("\r\nretry-after: 1"), "{head}");
        assert!(
            head.contains("\r\nx-agent-vault-proxy-error: true"),
            "{head}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            json!({
                "error": "server_busy",
                "message": "The server has 4 connections open, its limit; retry later"
            })
        );
        // More refusals, and a place frees as soon as a connection closes.
        for _ in 0..30 {
            assert_eq!(
                status_of(open_with(address, b"")),
                "HTTP/1.1 503 Service Unavailable"
            );
        }
        held.pop();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stream = open_with(
                address,
                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let status = status_of(stream);
            if status != "HTTP/1.1 503 Service Unavailable" {
                // The transparent proxy answers a request for itself with 400.
                assert!(
                    status == "HTTP/1.1 200 OK" || status == "HTTP/1.1 400 Bad Request",
                    "{status}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the freed place was never given out"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // 62 or more refusals, one log line per listener (at most one more per 10 s).
    std::thread::sleep(Duration::from_millis(200));
    let lines: Vec<String> = server
        .log_so_far()
        .into_iter()
        .filter(|line| line.contains("refused new connections"))
        .collect();
    assert!((2..=4).contains(&lines.len()), "{lines:#?}");
    assert!(
        lines[0].contains("the listener is at its cap of 4 open connections (--max-connections)")
            && lines[0].contains("refused=1"),
        "{lines:#?}"
    );
}

#[test]
fn an_address_at_its_cap_gets_429_unless_it_is_a_trusted_proxy() {
    let data = DataDir::new();
    let server = Server::start_with(
        &data,
        &["--max-connections-per-address", "2"],
        &with_password(&[]),
    );
    let _held: Vec<TcpStream> = (0..2).map(|_| open_with(&server.address, b"")).collect();
    let refused = try_call(&server.address, "GET", "/health", None, None);
    assert_eq!(
        refused,
        Some((
            429,
            json!({
                "error": "too_many_connections",
                "message": "Your address has 2 connections open to this server, its limit; close some or retry later"
            })
        ))
    );
    drop(server);

    // A reverse proxy in front speaks for many clients: it is not capped per address.
    let server = Server::start_with(
        &data,
        &[
            "--max-connections-per-address",
            "2",
            "--trusted-proxies",
            "127.0.0.1",
        ],
        &with_password(&[]),
    );
    let _held: Vec<TcpStream> = (0..2).map(|_| open_with(&server.address, b"")).collect();
    assert!(server.get("/health").starts_with("HTTP/1.1 200"));
}

/// Raise this test process's own file-descriptor limit to its hard limit (a test that holds
/// a thousand sockets needs more than the usual 1,024).
fn raise_own_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
}

#[test]
fn running_out_of_file_descriptors_pauses_accepting_without_flooding_the_log() {
    let data = DataDir::new();
    let server = Server::start(&data);
    assert!(server.get("/health").starts_with("HTTP/1.1 200"));
    // The server now runs out of descriptors after a few dozen connections.
    let pid = server.child.id().to_string();
    let prlimit = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=64:64"])
        .status()
        .unwrap();
    assert!(prlimit.success());
    let crowd: Vec<TcpStream> = (0..150)
        .map(|_| open_with(&server.address, b"GET /health HTTP/1.1\r\n"))
        .collect();
    let first = server.wait_for_log(&["Too many open files"]);
    assert!(
        first.contains("accepting connections failed") && first.contains("failures=1"),
        "{first}"
    );
    // A while out of descriptors (a spinning accept loop logged millions of lines here).
    std::thread::sleep(Duration::from_secs(2));

    // The crowd leaves: accepting resumes by itself, and new clients are served.
    drop(crowd);
    let deadline = Instant::now() + CLOSE_DEADLINE;
    while try_call(&server.address, "GET", "/health", None, None)
        .is_none_or(|(status, _)| status != 200)
    {
        assert!(Instant::now() < deadline, "the server never answered again");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let lines = server.log_so_far();
    let failures: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("Too many open files"))
        .collect();
    // One line per 10 s at most, whatever the number of failures (the first, read above,
    // and perhaps one more).
    assert!(
        failures.len() <= 1,
        "{} more lines: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("accepting connections again")),
        "{lines:#?}"
    );
}

/// Run by the adversarial suite (`tests/cli/adversarial/`) under its case name.
pub fn a_server_short_of_file_descriptors_sheds_a_thousand_connects_with_503_and_recovers() {
    raise_own_fd_limit();
    let proxy = Proxy::start_under(
        &["prlimit", "--nofile=256:256"],
        DataDir::new(),
        &["--mitm-port", "auto"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    let mut t = Transparent::around(proxy);
    // A thousand agents at once, each opening a blind tunnel (two descriptors each).
    let port = t.proxy.upstream.port;
    let connect = format!(
        "CONNECT other.test.example:{port} HTTP/1.1\r\nHost: other.test.example:{port}\r\nProxy-Authorization: Bearer {}\r\n\r\n",
        t.proxy.token
    );
    // Connecting, as reading the answers, must not wait on a server that stopped
    // accepting (its queue full, a connect waits for minutes).
    let deadline = Instant::now() + CLOSE_DEADLINE;
    let address: std::net::SocketAddr = t.address.parse().unwrap();
    let agents: Vec<TcpStream> = (0..1000)
        .map(|n| {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut agent =
                TcpStream::connect_timeout(&address, left.max(Duration::from_millis(1)))
                    .unwrap_or_else(|error| panic!("agent {n} could not connect: {error}"));
            agent.write_all(connect.as_bytes()).unwrap();
            agent
        })
        .collect();
    let mut tunnels = Vec::new();
    let mut refused = 0;
    for mut agent in agents {
        let left = deadline.saturating_duration_since(Instant::now());
        agent
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut status = [0u8; 12];
        agent
            .read_exact(&mut status)
            .expect("every agent gets an answer");
        match &status {
            b"HTTP/1.1 200" => tunnels.push(agent),
            b"HTTP/1.1 503" => refused += 1,
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
    }
    // As many as the server's cap, fitted to its descriptors at start, and it said so.
    let warning = t
        .proxy
        .server
        .wait_for_log(&["connections per listener, to stay within the file-descriptor limit"]);
    let cap: usize = warning
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("{warning}"));
    assert_eq!(tunnels.len(), cap, "{warning}");
    assert_eq!(refused, 1000 - cap);

    // Load drops: new agents are served again.
    drop(tunnels);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body, _) = t.curl(&t.trust(), &t.url("api.test.example", "/v1/items"));
        if code == 0 && body == "{\"ok\":true}" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never served again: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        t.proxy.server.child.try_wait().unwrap().is_none(),
        "the server is still running"
    );
}

/// `command` run as the unprivileged user the server runs as in
/// [`the_master_password_cannot_be_read_from_the_serving_process`].
fn as_server_user(program: &str, args: &[&str]) -> std::process::Output {
    let mut command = if running_as_root() {
        let mut command = Command::new("setpriv");
        command.args(SERVER_USER).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.args(args).output().unwrap()
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// As root, the server and the process trying to read it run as `nobody`: root may read any
/// process's memory, so the test takes the place of an agent of the same, ordinary user.
const SERVER_USER: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

#[test]
fn the_master_password_cannot_be_read_from_the_serving_process() {
    let data = DataDir::new();
    let password = "a master password that must stay inside";
    let wrapper: &[&str] = if running_as_root() {
        std::os::unix::fs::chown(data.path(), Some(65534), Some(65534)).unwrap();
        &["setpriv", SERVER_USER[0], SERVER_USER[1], SERVER_USER[2]]
    } else {
        &[]
    };
    let server = Server::start_under(
        wrapper,
        &data,
        &[],
        &[("AGENT_VAULT_MASTER_PASSWORD", password)],
    );
    assert!(server.get("/health").starts_with("HTTP/1.1 200"));
    let pid = server.child.id();

    // Not in the environment the process runs with (root can read it; nobody else can).
    if running_as_root() {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(!environ.contains(password), "{environ}");
        assert!(
            !environ.contains("AGENT_VAULT_MASTER_PASSWORD="),
            "{environ}"
        );
    }
    // Another process of the same user reads neither its environment nor its memory.
    for file in ["environ", "mem"] {
        let path = format!("/proc/{pid}/{file}");
        let read = as_server_user("head", &["-c", "1", &path]);
        assert!(!read.status.success(), "{path} was readable");
        let error = String::from_utf8_lossy(&read.stderr);
        assert!(error.contains("Permission denied"), "{path}: {error}");
    }
    // Its arguments name no password either.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(password));
}

#[test]
fn the_master_password_can_come_from_a_file() {
    let data = DataDir::new();
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("master-password");
    std::fs::write(&file, format!("{MASTER_PASSWORD}\n")).unwrap();
    let file = file.to_str().unwrap();
    // First start sets the instance up with it; the second unlocks with it.
    for _ in 0..2 {
        let server = Server::start_with(&data, &[], &[("AGENT_VAULT_MASTER_PASSWORD_FILE", file)]);
        assert!(server.get("/health").starts_with("HTTP/1.1 200"));
    }
    // The same file named by the flag (systemd: `--master-password-file
    // ${CREDENTIALS_DIRECTORY}/master-password`), and the password from the environment.
    let server = Server::start_with(&data, &["--master-password-file", file], &[]);
    assert!(server.get("/health").starts_with("HTTP/1.1 200"));
    drop(server);
    let server = Server::start(&data);
    assert!(server.get("/health").starts_with("HTTP/1.1 200"));
    drop(server);
    // The file variable set but empty is the same as unset, as the password variable is.
    let server = Server::start_with(
        &data,
        &[],
        &[
            ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
            ("AGENT_VAULT_MASTER_PASSWORD_FILE", ""),
        ],
    );
    assert!(server.get("/health").starts_with("HTTP/1.1 200"));
    drop(server);

    std::fs::write(secrets.path().join("wrong"), "not the password\n").unwrap();
    let wrong = secrets.path().join("wrong");
    let refused = data
        .command(&["server", "--port", "0", "--mitm-port", "0"])
        .env("AGENT_VAULT_MASTER_PASSWORD_FILE", wrong.to_str().unwrap())
        .run()
        .fails();
    assert!(refused.contains("wrong master password"), "{refused}");
    let missing = data
        .command(&["server", "--port", "0", "--mitm-port", "0"])
        .env(
            "AGENT_VAULT_MASTER_PASSWORD_FILE",
            "/nonexistent/master-password",
        )
        .run()
        .fails();
    assert!(
        missing.contains("reading the master password file /nonexistent/master-password"),
        "{missing}"
    );
    std::fs::write(secrets.path().join("empty"), "\n").unwrap();
    let empty = secrets.path().join("empty");
    let empty = empty.to_str().unwrap();
    let refused = data
        .command(&[
            "server",
            "--port",
            "0",
            "--mitm-port",
            "0",
            "--master-password-file",
            empty,
        ])
        .run()
        .fails();
    assert_eq!(
        refused,
        format!("error: the master password file {empty} is empty\n")
    );
}

#[test]
fn a_fresh_data_directory_is_private() {
    let scratch = tempfile::tempdir().unwrap();
    let fresh = scratch.path().join("new").join("agent-vault");
    let data_dir = fresh.to_str().unwrap();
    let mut server = std::process::Command::new(crate::support::binary())
        .args([
            "server",
            "--port",
            "0",
            "--mitm-port",
            "0",
            "--data-dir",
            data_dir,
        ])
        .env("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        first_line.starts_with("agent-vault listening on"),
        "{first_line}"
    );
    for dir in [&fresh, &scratch.path().join("new")] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}
