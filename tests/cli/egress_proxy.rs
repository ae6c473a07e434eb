//! Egress through an outbound proxy (`--egress-proxy`): with a real forward proxy, Debian's
//! `tinyproxy` with basic auth, started by the test on 127.0.0.2 (a loopback address the
//! network allowlist does not hold, so the proxy's own address is allowed only because it is
//! the egress proxy). Every upstream connection of both ingresses is a CONNECT through it, seen
//! in its log; the network guard still refuses what it refused; a refusal by the proxy is a 502
//! naming it and never its password; a proxy that sends the tunnel elsewhere cannot make the
//! upstream's TLS pass.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::proxy::Proxy;
use crate::support::DataDir;
use crate::transparent::{Transparent, read_head};
use crate::upstream::{Upstream, client_frame, read_frame};

const PROXY_USER: &str = "agent-vault";
const PROXY_PASSWORD: &str = "pr0xy-Pa55word-8812";
/// Where tinyproxy listens: loopback, but not the upstream's 127.0.0.1.
const PROXY_HOST: &str = "127.0.0.2";

/// A tinyproxy with basic auth, in a temporary directory, stopped when dropped.
struct Tinyproxy {
    port: u16,
    log_file: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start() -> Tinyproxy {
        let program = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .expect(
                "tinyproxy is not installed: scripts/test installs it (Debian's `tinyproxy` \
                 package)",
            );
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let listener = TcpListener::bind((PROXY_HOST, 0)).unwrap();
            listener.local_addr().unwrap().port()
        };
        let log_file = dir.path().join("tinyproxy.log");
        let config = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen {PROXY_HOST}\nTimeout 30\nMaxClients 50\n\
                 LogFile \"{}\"\nLogLevel Info\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\n",
                log_file.display()
            ),
        )
        .unwrap();
        let child = Command::new(program)
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((PROXY_HOST, port)).is_err() {
            assert!(Instant::now() < deadline, "tinyproxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tinyproxy {
            port,
            log_file,
            child,
            _dir: dir,
        }
    }

    /// `http://user:password@127.0.0.2:PORT`.
    fn url(&self, password: &str) -> String {
        format!("http://{PROXY_USER}:{password}@{PROXY_HOST}:{}", self.port)
    }

    /// The targets of the CONNECTs tinyproxy received, in order.
    fn connects(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        log.lines()
            .filter_map(|line| line.split_once("): CONNECT "))
            .map(|(_, rest)| rest.trim_end_matches(" HTTP/1.1").to_owned())
            .collect()
    }

    /// The tunnels tinyproxy opened: each a connection it established to its target.
    fn established(&self) -> usize {
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        log.lines()
            .filter(|line| line.contains("Established connection to host"))
            .count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server whose upstream connections go through `egress` (the URL, given by the
/// environment as the docs say), with the transparent proxy on and the upstream's 127.0.0.1
/// open to the network guard.
fn start(egress: &str, more_args: &[&str]) -> Transparent {
    let mut args = vec!["--mitm-port", "auto"];
    args.extend(more_args);
    let proxy = Proxy::start_with(
        &args,
        &[
            ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
            ("AGENT_VAULT_EGRESS_PROXY", egress),
        ],
    );
    Transparent::around(proxy)
}

/// The CONNECT target tinyproxy sees for the test upstream: its checked address.
fn upstream_target(t: &Transparent) -> String {
    format!("127.0.0.1:{}", t.proxy.upstream.port)
}

#[test]
fn every_upstream_connection_of_both_ingresses_goes_through_the_egress_proxy() {
    let tinyproxy = Tinyproxy::start();
    let t = start(&tinyproxy.url(PROXY_PASSWORD), &[]);
    t.proxy.services(json!([
        { "name": "items", "host": "api.test.example", "auth": { "type": "bearer", "token": "ITEMS_KEY" } },
        { "name": "uploads", "host": "uploads.test.example", "auth": { "type": "bearer", "token": "ITEMS_KEY" } }
    ]));
    let target = upstream_target(&t);

    // The explicit ingress: the credential is attached, and the connection was a tunnel.
    let answer = t.proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = t.proxy.upstream.last();
    assert_eq!(received.target, "/v1/items");
    assert_eq!(
        received.header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
    assert!(received.header("proxy-authorization").is_empty());
    assert_eq!(tinyproxy.connects(), std::slice::from_ref(&target));

    // The transparent ingress, to another host (so not the explicit request's pooled
    // connection): a second tunnel.
    let (code, body, stderr) = t.curl(
        &t.trust(),
        &t.url("uploads.test.example", "/v1/uploads?limit=1"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(body, r#"{"ok":true}"#);
    let received = t.proxy.upstream.last();
    assert_eq!(received.target, "/v1/uploads?limit=1");
    assert_eq!(
        received.header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
    assert_eq!(tinyproxy.connects(), [target.clone(), target.clone()]);

    // A blind tunnel (no service covers the host): the client's own TLS, through both proxies.
    let upstream_ca = t.proxy.upstream.ca_file.to_str().unwrap().to_owned();
    let (code, body, stderr) = t.curl(
        &["--cacert", &upstream_ca],
        &t.url("other.test.example", "/blind"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(body, r#"{"ok":true}"#);
    assert_eq!(t.proxy.upstream.last().target, "/blind");
    assert!(t.proxy.upstream.last().header("authorization").is_empty());
    assert_eq!(tinyproxy.connects(), vec![target.clone(); 3]);

    // A WebSocket handshake (its own connection) and messages both ways.
    let mut agent = TcpStream::connect(&t.proxy.server.address).unwrap();
    agent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        agent,
        "GET /proxy/api.test.example:{}/ws HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        t.proxy.upstream.port, t.proxy.server.address, t.proxy.token
    )
    .unwrap();
    let head = read_head(&mut agent);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    agent
        .write_all(&client_frame(1, b"through the tunnel"))
        .unwrap();
    assert_eq!(read_frame(&mut agent), (1, b"through the tunnel".to_vec()));
    let handshake = t.proxy.upstream.last();
    assert_eq!(handshake.target, "/ws");
    assert_eq!(
        handshake.header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
    assert_eq!(tinyproxy.connects(), vec![target; 4]);
    assert_eq!(tinyproxy.established(), 4);
}

#[test]
fn hosts_in_no_egress_proxy_are_reached_directly() {
    let tinyproxy = Tinyproxy::start();
    let t = start(
        &tinyproxy.url(PROXY_PASSWORD),
        &[
            "--no-egress-proxy",
            "internal.example, .test.example, 10.0.0.0/8",
        ],
    );
    let answer = t.proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        t.proxy.upstream.last().header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
    let upstream_ca = t.proxy.upstream.ca_file.to_str().unwrap().to_owned();
    let (code, _, stderr) = t.curl(
        &["--cacert", &upstream_ca],
        &t.url("other.test.example", "/blind"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tinyproxy.connects(), Vec::<String>::new());

    // A host the list does not name still goes through the proxy: 127.0.0.1, by address
    // (a blind tunnel).
    let connect = crate::transparent::connect_raw(
        &t,
        "127.0.0.1",
        t.proxy.upstream.port,
        Some(&t.proxy.token),
    );
    assert!(connect.starts_with("HTTP/1.1 200"), "{connect}");
    assert_eq!(tinyproxy.connects(), [upstream_target(&t)]);
}

#[test]
fn a_wrong_proxy_password_is_a_502_naming_the_egress_proxy_and_never_the_password() {
    let tinyproxy = Tinyproxy::start();
    let wrong = "wr0ng-Pa55word-4471";
    let t = start(&tinyproxy.url(wrong), &[]);

    let answer = t.proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(
        answer.proxy_error(),
        (502, "egress_proxy_error".to_owned()),
        "{answer:?}"
    );
    let expected = format!(
        "the egress proxy http://{PROXY_HOST}:{} could not open a tunnel to api.test.example: \
         the proxy refused its credentials (401 Unauthorized); check the user and password of \
         the egress proxy URL",
        tinyproxy.port
    );
    assert_eq!(answer.json()["message"], expected, "{answer:?}");
    // tinyproxy got the CONNECT (with the wrong password) and opened nothing.
    assert_eq!(tinyproxy.connects(), [upstream_target(&t)]);
    assert_eq!(tinyproxy.established(), 0);
    assert!(t.proxy.upstream.received().is_empty());

    // A blind tunnel through the transparent ingress is refused the same way.
    let connect = crate::transparent::connect_raw(
        &t,
        "other.test.example",
        t.proxy.upstream.port,
        Some(&t.proxy.token),
    );
    assert!(connect.starts_with("HTTP/1.1 502"), "{connect}");
    assert!(connect.contains("egress_proxy_error"), "{connect}");

    // The request log says why (for the request: a blind tunnel that did not open is not
    // logged), and nothing of the password; nor does /discover.
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = t.proxy.api("GET", "/v1/vaults/default/logs", json!({}));
        if !logs["logs"].as_array().unwrap().is_empty() {
            break logs;
        }
        assert!(Instant::now() < deadline, "no log rows: {logs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        logs["logs"][0]["error_code"], "egress_proxy_error",
        "{logs}"
    );
    assert_eq!(logs["logs"][0]["status"], 502, "{logs}");
    let discover = t.proxy.send(
        "GET",
        "/discover",
        &[("authorization", &format!("Bearer {}", t.proxy.token))],
        b"",
    );
    for text in [
        String::from_utf8_lossy(&answer.body).into_owned(),
        connect,
        logs.to_string(),
        String::from_utf8_lossy(&discover.body).into_owned(),
    ] {
        assert!(!text.contains(wrong), "{text}");
    }
    // Nor the server's command line (what ps shows), nor its log.
    let command_line =
        std::fs::read(format!("/proc/{}/cmdline", t.proxy.server.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&command_line).contains(wrong));
    t.proxy.server.terminate();
    let log = t.proxy.server.rest_of_log().join("\n");
    assert!(
        log.contains(&format!(
            "upstream connections go through the egress proxy http://{PROXY_HOST}:{}",
            tinyproxy.port
        )),
        "{log}"
    );
    assert!(!log.contains(wrong), "{log}");
}

#[test]
fn a_password_on_the_command_line_is_refused_and_a_file_is_read() {
    let tinyproxy = Tinyproxy::start();
    let data = DataDir::new();
    let url = tinyproxy.url(PROXY_PASSWORD);
    let run = data
        .command(&[
            "server",
            "--port",
            "0",
            "--mitm-port",
            "0",
            "--egress-proxy",
            &url,
        ])
        .env(
            "AGENT_VAULT_MASTER_PASSWORD",
            crate::support::MASTER_PASSWORD,
        )
        .run();
    let stderr = run.fails();
    assert!(
        stderr.contains(
            "the egress proxy URL holds a password, and on the command line every user can read \
             it (ps): give the URL in AGENT_VAULT_EGRESS_PROXY or in a file named by \
             --egress-proxy-file instead"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(PROXY_PASSWORD), "{stderr}");

    // An https:// proxy is refused at start, without repeating the URL.
    let run = data
        .command(&["server", "--port", "0", "--mitm-port", "0"])
        .env(
            "AGENT_VAULT_MASTER_PASSWORD",
            crate::support::MASTER_PASSWORD,
        )
        .env(
            "AGENT_VAULT_EGRESS_PROXY",
            &format!("https://{PROXY_USER}:{PROXY_PASSWORD}@{PROXY_HOST}:3128"),
        )
        .run();
    let stderr = run.fails();
    assert!(
        stderr.contains(
            "invalid egress proxy URL: https:// (TLS to the proxy itself) is not supported"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(PROXY_PASSWORD), "{stderr}");

    // From a file, the same URL works.
    let file = data.path().join("egress-proxy.url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let proxy = Proxy::start_in(
        data,
        &["--egress-proxy-file", file.to_str().unwrap()],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": "sk_from_file_0042" }));
    proxy.services(json!([
        { "name": "items", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } }
    ]));
    let answer = proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        proxy.upstream.last().header("authorization"),
        ["Bearer sk_from_file_0042"]
    );
    assert_eq!(
        tinyproxy.connects(),
        [format!("127.0.0.1:{}", proxy.upstream.port)]
    );
}

#[test]
fn the_network_guard_still_refuses_private_targets_before_the_egress_proxy_sees_them() {
    let tinyproxy = Tinyproxy::start();
    // No allowlist: the upstream's 127.0.0.1 is refused; the proxy's own 127.0.0.2 is not.
    let proxy = Proxy::start_with(
        &["--mitm-port", "auto"],
        &[("AGENT_VAULT_EGRESS_PROXY", &tinyproxy.url(PROXY_PASSWORD))],
    );
    let t = Transparent::around(proxy);

    let answer = t.proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(
        answer.proxy_error(),
        (403, "upstream_blocked".to_owned()),
        "{answer:?}"
    );
    // Through the transparent ingress: intercepted, and a blind tunnel, by name and by
    // address (the metadata address too).
    for (host, port) in [
        ("api.test.example", t.proxy.upstream.port),
        ("other.test.example", t.proxy.upstream.port),
        ("127.0.0.1", t.proxy.upstream.port),
        ("10.0.0.7", 443),
        ("169.254.169.254", 80),
    ] {
        let connect = crate::transparent::connect_raw(&t, host, port, Some(&t.proxy.token));
        assert!(connect.starts_with("HTTP/1.1 403"), "{host}: {connect}");
        assert!(connect.contains("upstream_blocked"), "{host}: {connect}");
    }
    assert_eq!(tinyproxy.connects(), Vec::<String>::new());
    assert!(t.proxy.upstream.received().is_empty());
}

#[test]
fn a_proxy_that_sends_the_tunnel_elsewhere_fails_tls_and_never_gets_the_credential() {
    // A server with a certificate for another name, from a CA agent-vault does not trust.
    let impostor = Upstream::start(&["impostor.test.example"]);
    let malicious = MaliciousProxy::start(impostor.port);
    let t = start(&format!("http://127.0.0.1:{}", malicious.port), &[]);

    let answer = t.proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(
        answer.proxy_error(),
        (502, "upstream_error".to_owned()),
        "{answer:?}"
    );
    let message = answer.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(
            "the TLS handshake with api.test.example failed: invalid peer certificate"
        ),
        "{message}"
    );
    assert_eq!(
        malicious.connects(),
        [format!(
            "CONNECT 127.0.0.1:{} HTTP/1.1",
            t.proxy.upstream.port
        )]
    );
    assert!(impostor.received().is_empty());
    assert!(t.proxy.upstream.received().is_empty());
    let relayed = malicious.relayed.lock().unwrap().clone();
    assert!(!relayed.is_empty(), "the handshake went through the proxy");
    assert!(
        !relayed
            .windows(b"sk_test_transparent_0007".len())
            .any(|window| window == b"sk_test_transparent_0007"),
        "the credential went through the proxy"
    );
}

/// A forward proxy that answers every CONNECT with 200 and then joins the tunnel to a server
/// of its own choosing; it keeps the request lines and every byte it relayed from agent-vault.
struct MaliciousProxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    relayed: Arc<Mutex<Vec<u8>>>,
}

impl MaliciousProxy {
    fn start(to_port: u16) -> MaliciousProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let relayed = Arc::new(Mutex::new(Vec::new()));
        let (seen, sent) = (requests.clone(), relayed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (seen, sent) = (seen.clone(), sent.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    seen.lock().unwrap().push(line.trim_end().to_owned());
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                            break;
                        }
                    }
                    let mut answer = client.try_clone().unwrap();
                    answer
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .unwrap();
                    let server = TcpStream::connect(("127.0.0.1", to_port)).unwrap();
                    let mut from_server = server.try_clone().unwrap();
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from_server, &mut answer);
                    });
                    let mut to_server = server;
                    let mut chunk = [0u8; 4096];
                    loop {
                        match reader.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(read) => {
                                sent.lock().unwrap().extend_from_slice(&chunk[..read]);
                                if to_server.write_all(&chunk[..read]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        MaliciousProxy {
            port,
            requests,
            relayed,
        }
    }

    fn connects(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}
