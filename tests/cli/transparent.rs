//! The transparent ingress: unmodified clients that honour `HTTPS_PROXY` call an upstream by
//! its own name, and the credential is attached inside the intercepted tunnel; hosts no
//! service covers get a blind tunnel; the proxy's own authentication, the SNI and Host
//! checks and the network guard hold.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use serde_json::json;

use crate::proxy::{Proxy, assert_stopped_cleanly, read_until, send_raw};
use crate::upstream::{client_frame, read_frame};

/// A server with the transparent proxy on, a bearer service for `api.test.example`, and the
/// local CA written to a file.
pub struct Transparent {
    pub proxy: Proxy,
    /// `127.0.0.1:PORT` of the forward proxy.
    pub address: String,
    pub ca_file: PathBuf,
}

impl Transparent {
    pub fn start() -> Transparent {
        Transparent::start_with(&[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Transparent {
        Transparent::around(Proxy::start_with(&["--mitm-port", "auto"], env))
    }

    /// The transparent proxy of `proxy` (started with `--mitm-port`), set up as
    /// [`Transparent::start`] does.
    pub fn around(proxy: Proxy) -> Transparent {
        proxy.credentials(json!({ "ITEMS_KEY": "sk_test_transparent_0007" }));
        proxy.services(json!([
            { "name": "items", "host": "api.test.example", "auth": { "type": "bearer", "token": "ITEMS_KEY" } }
        ]));
        let address = proxy
            .server
            .transparent
            .clone()
            .expect("the transparent proxy is on");
        let ca = send_raw(&proxy.server.address, "GET", "/v1/mitm/ca.pem", &[], b"");
        assert_eq!(ca.status, 200);
        assert_eq!(
            ca.header("x-mitm-port"),
            Some(address.rsplit(':').next().unwrap())
        );
        let ca_file = proxy.data.path().join("mitm-ca.pem");
        std::fs::write(&ca_file, &ca.body).unwrap();
        Transparent {
            proxy,
            address,
            ca_file,
        }
    }

    /// `https://{name}:{port}{path}` of the recording upstream.
    pub fn url(&self, name: &str, path: &str) -> String {
        format!("https://{name}:{}{path}", self.proxy.upstream.port)
    }

    /// curl's arguments to trust the local CA.
    pub fn trust(&self) -> Vec<&str> {
        vec!["--cacert", self.ca_file.to_str().unwrap()]
    }

    /// curl through the proxy with the vault token, ready to run.
    pub fn curl_command(&self, extra: &[&str], url: &str) -> Command {
        let proxy = format!("http://{}", self.address);
        let user = format!("{}:default", self.proxy.token);
        let mut command = Command::new("curl");
        command
            .args([
                "-sS",
                "--max-time",
                "20",
                "--proxy",
                &proxy,
                "--proxy-user",
                &user,
            ])
            .args(extra)
            .arg(url)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
        command
    }

    /// curl through the proxy with the vault token; (exit code, stdout, stderr).
    pub fn curl(&self, extra: &[&str], url: &str) -> (i32, String, String) {
        let output = self.curl_command(extra, url).output().expect("curl runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

#[test]
fn curl_through_https_proxy_gets_the_credential_attached() {
    let t = Transparent::start();
    let ca = t.ca_file.to_str().unwrap();
    let (code, body, stderr) = t.curl(
        &["--cacert", ca, "-w", "\n%{http_code} %{http_version}"],
        &t.url("api.test.example", "/v1/items?limit=2"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(body.ends_with("\n200 2"), "HTTP/2 to the agent: {body}");
    let received = t.proxy.upstream.last();
    assert_eq!(received.target, "/v1/items?limit=2");
    assert_eq!(
        received.header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
    assert!(received.header("proxy-authorization").is_empty());
    assert!(
        received
            .headers
            .iter()
            .all(|(_, value)| !value.contains(&t.proxy.token)),
        "the agent's token reached the upstream"
    );

    // HTTP/1.1 works the same.
    let (code, body, stderr) = t.curl(
        &[
            "--cacert",
            ca,
            "--http1.1",
            "-w",
            "\n%{http_code} %{http_version}",
        ],
        &t.url("api.test.example", "/v1/items"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(body.ends_with("\n200 1.1"), "{body}");

    // The request log names the ingress (rows are written in batches: wait for them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let logs = t.proxy.api("GET", "/v1/vaults/default/logs", json!({}));
        let rows = logs["logs"].as_array().unwrap();
        if rows.len() >= 2 {
            assert!(
                rows.iter().all(|row| row["ingress"] == "transparent"),
                "{logs}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no log rows: {logs}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_host_no_service_covers_gets_a_blind_tunnel() {
    let t = Transparent::start();
    let url = t.url("other.test.example", "/blind");
    // The client sees the upstream's own certificate: our CA does not verify it...
    let (code, _, _) = t.curl(&["--cacert", t.ca_file.to_str().unwrap()], &url);
    assert_ne!(code, 0, "a blind tunnel must not be intercepted");
    // ...the upstream's CA does, and nothing was attached.
    let upstream_ca = t.proxy.upstream.ca_file.to_str().unwrap().to_owned();
    let (code, _, stderr) = t.curl(&["--cacert", &upstream_ca], &url);
    assert_eq!(code, 0, "{stderr}");
    let received = t.proxy.upstream.last();
    assert_eq!(received.target, "/blind");
    assert!(received.header("authorization").is_empty());

    // Under the deny policy the CONNECT is refused with the proposal hint.
    t.proxy.api(
        "PATCH",
        "/v1/vaults/default/settings",
        json!({ "unmatched_host_policy": "deny" }),
    );
    let connect = connect_raw(
        &t,
        "other.test.example",
        t.proxy.upstream.port,
        Some(&t.proxy.token),
    );
    assert!(connect.starts_with("HTTP/1.1 403"), "{connect}");
    assert!(connect.contains("\"proposal_hint\""), "{connect}");
}

#[test]
fn no_tunnel_opens_while_the_request_log_cannot_be_written() {
    // SQLite's write lock: on SQLite whatever the run's backend.
    let t = Transparent::around(Proxy::start_in(
        crate::support::DataDir::sqlite(),
        &["--mitm-port", "auto"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    ));
    // Another program holds the database's write lock longer than the server waits for it.
    let database = rusqlite::Connection::open(t.proxy.data.path().join("agent-vault.db")).unwrap();
    database.execute_batch("BEGIN IMMEDIATE").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let refused = loop {
        // A blind tunnel is logged when it opens; the log fails 5 s after the first.
        let connect = connect_raw(
            &t,
            "other.test.example",
            t.proxy.upstream.port,
            Some(&t.proxy.token),
        );
        if !connect.starts_with("HTTP/1.1 200") {
            break connect;
        }
        assert!(std::time::Instant::now() < deadline, "never refused");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("\"request_log_unavailable\""), "{refused}");
    database.execute_batch("COMMIT").unwrap();
}

/// A raw CONNECT; the proxy's whole answer (head, and body if it refused).
pub fn connect_raw(t: &Transparent, host: &str, port: u16, token: Option<&str>) -> String {
    let userinfo = token.map(|token| format!("{token}:default"));
    connect_open(t, host, port, userinfo.as_deref()).1
}

/// A raw CONNECT with `userinfo` (`token:vault`) as the Basic proxy credentials: the
/// connection, left open, and the proxy's answer.
pub fn connect_open(
    t: &Transparent,
    host: &str,
    port: u16,
    userinfo: Option<&str>,
) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(&t.address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if let Some(userinfo) = userinfo {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(userinfo);
        request.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&answer);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if answer.len() >= end + 4 + length {
                        break;
                    }
                }
            }
        }
    }
    (stream, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn stopping_the_server_lets_an_answer_in_flight_finish_inside_a_tunnel() {
    for version in ["--http2", "--http1.1"] {
        let mut t = Transparent::start();
        // Tunnels that are open but idle must not hold the shutdown up: an intercepted one
        // that has served a request,...
        let mut idle = tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
        assert_eq!(
            get(&mut idle, "api.test.example", "/v1/items").unwrap(),
            200
        );
        // a blind one...
        let (_blind, answer) = connect_open(
            &t,
            "other.test.example",
            t.proxy.upstream.port,
            Some(&format!("{}:default", t.proxy.token)),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // ...and an intercepted one whose agent has not started TLS yet.
        let (_silent, answer) = connect_open(
            &t,
            "api.test.example",
            t.proxy.upstream.port,
            Some(&format!("{}:default", t.proxy.token)),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // An event stream under way through another tunnel is answered to its end.
        let ca = t.ca_file.to_str().unwrap().to_owned();
        let mut curl = t
            .curl_command(
                &["--cacert", &ca, "-N", version],
                &t.url("api.test.example", "/stream"),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("curl runs");
        let mut stdout = curl.stdout.take().unwrap();
        let first = read_until(&mut stdout, "data: 0");
        assert!(!first.contains("data: 2"), "{first}");

        t.proxy.server.terminate();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        curl.stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = curl.wait().unwrap();
        assert!(status.success(), "{version}: {status} {stderr}");
        assert!(
            rest.contains("data: 1") && rest.contains("data: 2"),
            "{version}: {rest}"
        );
        assert_stopped_cleanly(&mut t.proxy.server);
    }
}

#[test]
fn the_proxy_wants_its_own_credentials() {
    let t = Transparent::start();
    let missing = connect_raw(&t, "api.test.example", t.proxy.upstream.port, None);
    assert!(missing.starts_with("HTTP/1.1 407"), "{missing}");
    assert!(
        missing
            .to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"agent-vault\""),
        "{missing}"
    );
    let wrong = connect_raw(
        &t,
        "api.test.example",
        t.proxy.upstream.port,
        Some("av_sess_0000"),
    );
    assert!(wrong.starts_with("HTTP/1.1 407"), "{wrong}");
    // curl sees the 407 too.
    let proxy = format!("http://{}", t.address);
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--proxy",
            &proxy,
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
        ])
        .arg(t.url("api.test.example", "/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "407");
}

#[test]
fn connect_to_a_blocked_address_is_refused() {
    // No allowlist: the upstream's loopback address is off limits.
    let t = Transparent::start_with(&[]);
    let refused = connect_raw(
        &t,
        "api.test.example",
        t.proxy.upstream.port,
        Some(&t.proxy.token),
    );
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains("upstream_blocked"), "{refused}");
    let metadata = connect_raw(&t, "169.254.169.254", 80, Some(&t.proxy.token));
    assert!(metadata.starts_with("HTTP/1.1 403"), "{metadata}");
}

/// A TLS client that trusts exactly `ca_pem`, naming `sni`.
pub fn tls_client(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// An open, intercepted tunnel: CONNECT to `host`, then TLS naming `sni`.
pub fn tunnel(
    t: &Transparent,
    token: &str,
    host: &str,
    sni: &str,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let port = t.proxy.upstream.port;
    let mut stream = TcpStream::connect(&t.address)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{token}:"));
    write!(
        stream,
        "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let ca = std::fs::read(&t.ca_file)?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(tls_client(&ca), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, stream);
    tls.flush()?;
    Ok(tls)
}

/// One HTTP/1.1 request on a kept-alive tunnel; the status.
pub fn get(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    host_header: &str,
    path: &str,
) -> std::io::Result<u16> {
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n")?;
    tls.flush()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = text[9..12].parse().unwrap();
    let lower = text.to_ascii_lowercase();
    if let Some(length) = lower.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .map(|v| v.trim().parse::<usize>().unwrap())
    }) {
        let mut body = vec![0u8; length];
        tls.read_exact(&mut body)?;
    } else {
        assert!(
            !lower.contains("chunked"),
            "a chunked answer in this test: {text}"
        );
    }
    Ok(status)
}

#[test]
fn a_token_revoked_while_the_tunnel_is_open_stops_working() {
    let t = Transparent::start();
    let agent = t.proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "tunnel-bot", "vaults": [{ "vault_name": "default" }] }),
    );
    let token = agent["av_agent_token"].as_str().unwrap();
    let host = format!("api.test.example:{}", t.proxy.upstream.port);
    let mut tls = tunnel(&t, token, "api.test.example", "api.test.example").unwrap();
    assert_eq!(get(&mut tls, &host, "/first").unwrap(), 200);
    assert_eq!(get(&mut tls, &host, "/second").unwrap(), 200);
    t.proxy.api("DELETE", "/v1/agents/tunnel-bot", json!({}));
    assert_eq!(get(&mut tls, &host, "/third").unwrap(), 401);
    let targets: Vec<String> = t
        .proxy
        .upstream
        .received()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert!(!targets.contains(&"/third".to_owned()), "{targets:?}");
}

#[test]
fn the_sni_and_the_host_must_be_the_connect_target() {
    let t = Transparent::start();
    // TLS naming another host than the CONNECT: no certificate, no tunnel.
    let refused = tunnel(&t, &t.proxy.token, "api.test.example", "other.test.example")
        .and_then(|mut tls| get(&mut tls, "other.test.example", "/"));
    assert!(refused.is_err(), "{refused:?}");
    // A Host header naming another host inside a good tunnel: 421.
    let mut tls = tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
    assert_eq!(get(&mut tls, "other.test.example", "/").unwrap(), 421);
    let port = t.proxy.upstream.port;
    assert_eq!(
        get(&mut tls, &format!("api.test.example:{}", port + 1), "/").unwrap(),
        421
    );
    assert_eq!(
        get(&mut tls, &format!("api.test.example:{port}"), "/ok").unwrap(),
        200
    );
}

/// `agent-vault vault run --data-dir {data} -- CMD...` with `token` as the caller's token.
fn vault_run(t: &Transparent, token: &str, command: &[&str]) -> std::process::Output {
    let data = t.proxy.data.path().join("cli");
    let mut args = vec!["vault", "run", "--data-dir", data.to_str().unwrap(), "--"];
    args.extend_from_slice(command);
    let url = t.proxy.server.url();
    Command::new(crate::support::binary())
        .args(&args)
        .env("AGENT_VAULT_TOKEN", token)
        .env("AGENT_VAULT_ADDR", &url)
        .env("NO_PROXY", "internal.example")
        .env_remove("AGENT_VAULT_HOME")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("agent-vault runs")
}

pub fn agent_token(t: &Transparent, name: &str) -> String {
    let agent = t.proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": name, "vaults": [{ "vault_name": "default" }] }),
    );
    agent["av_agent_token"].as_str().unwrap().to_owned()
}

#[test]
fn an_agent_with_several_vaults_names_one_in_its_proxy_credentials() {
    let t = Transparent::start();
    t.proxy.api("POST", "/v1/vaults", json!({ "name": "team" }));
    t.proxy.api(
        "POST",
        "/v1/credentials",
        json!({ "vault": "team", "credentials": { "TEAM_KEY": "sk_test_team_vault_0042" } }),
    );
    t.proxy.api(
        "PUT",
        "/v1/vaults/team/services",
        json!({ "services": [{ "name": "items", "host": "api.test.example",
                               "auth": { "type": "bearer", "token": "TEAM_KEY" } }] }),
    );
    let agent = t.proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "two-vault-bot", "vaults": [{ "vault_name": "default" }, { "vault_name": "team" }] }),
    );
    let token = agent["av_agent_token"].as_str().unwrap();
    let url = t.url("api.test.example", "/v1/items");
    let ca = t.ca_file.to_str().unwrap();
    let through = |user: &str| {
        let output = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--cacert",
                ca,
                "-w",
                "\n%{http_code}",
            ])
            .args([
                "--proxy",
                &format!("http://{}", t.address),
                "--proxy-user",
                user,
            ])
            .arg(&url)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };

    // Without a vault, the proxy cannot tell which of the two is meant: the CONNECT is
    // refused, and the answer says how to name one.
    let port = t.proxy.upstream.port;
    let (_, connect) = connect_open(&t, "api.test.example", port, Some(&format!("{token}:")));
    assert!(connect.starts_with("HTTP/1.1 400"), "{connect}");
    assert!(
        connect.contains("HTTPS_PROXY=http://{token}:{vault}@"),
        "{connect}"
    );
    let refused = through(&format!("{token}:"));
    assert!(!refused.ends_with("\n200"), "{refused}");

    // Naming a vault picks its service and its credential.
    let answer = through(&format!("{token}:team"));
    assert!(answer.ends_with("\n200"), "{answer}");
    assert_eq!(
        t.proxy.upstream.last().header("authorization"),
        ["Bearer sk_test_team_vault_0042"]
    );
}

#[test]
fn curl_runs_unmodified_under_vault_run() {
    let t = Transparent::start();
    let token = agent_token(&t, "curl-bot");
    let url = t.url("api.test.example", "/v1/items");
    let output = vault_run(&t, &token, &["curl", "-sS", "-w", "\n%{http_code}", &url]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.ends_with("\n200"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        t.proxy.upstream.last().header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
}

#[test]
fn vault_run_sets_up_the_environment_and_passes_the_exit_status_on() {
    let t = Transparent::start();
    // A person's login: vault run makes a vault session for the command.
    let script = "printf '%s\\n' \"$AGENT_VAULT_ADDR\" \"$AGENT_VAULT_TOKEN\" \"$AGENT_VAULT_SESSION_TOKEN\" \
                  \"$AGENT_VAULT_VAULT\" \"$HTTPS_PROXY\" \"$NO_PROXY\" \"$NODE_USE_ENV_PROXY\" \
                  \"$SSL_CERT_FILE\" \"$NODE_EXTRA_CA_CERTS\" \"$REQUESTS_CA_BUNDLE\" \"$CURL_CA_BUNDLE\" \
                  \"$GIT_SSL_CAINFO\" \"$DENO_CERT\"";
    let output = vault_run(&t, &t.proxy.owner, &["sh", "-c", script]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], t.proxy.server.url());
    assert!(
        lines[1].starts_with("av_sess_"),
        "a vault session, not the login: {}",
        lines[1]
    );
    assert_ne!(lines[1], t.proxy.owner);
    assert_eq!(lines[2], lines[1]);
    assert_eq!(lines[3], "default");
    assert_eq!(
        lines[4],
        format!("http://{}:default@{}", lines[1], t.address)
    );
    assert_eq!(lines[5], "internal.example,localhost,127.0.0.1,::1");
    assert_eq!(lines[6], "1");
    let bundle = lines[7];
    assert!(lines[8..13].iter().all(|line| *line == bundle), "{stdout}");
    let bundle_text = std::fs::read_to_string(bundle).unwrap();
    let ca = std::fs::read_to_string(&t.ca_file).unwrap();
    assert!(
        bundle_text.ends_with(&ca),
        "the bundle ends with the local CA"
    );
    assert!(
        bundle_text.matches("BEGIN CERTIFICATE").count() > 1,
        "the bundle keeps the system's roots"
    );

    // The exit status and a deadly signal are the command's own.
    let exited = vault_run(&t, &t.proxy.owner, &["sh", "-c", "exit 7"]);
    assert_eq!(exited.status.code(), Some(7));
    let killed = vault_run(&t, &t.proxy.owner, &["sh", "-c", "kill -TERM $$"]);
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(killed.status.signal(), Some(15));
}

/// Read an HTTP head (through the blank line) from a stream.
pub fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn a_websocket_handshake_gets_the_credential_and_then_carries_messages_both_ways() {
    let t = Transparent::start();
    let mut tls = tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        tls,
        "GET /ws-greet HTTP/1.1\r\nHost: api.test.example:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        t.proxy.upstream.port
    )
    .unwrap();
    tls.flush().unwrap();
    let head = read_head(&mut tls);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(
        lower.contains(&format!(
            "sec-websocket-accept: {}",
            crate::upstream::websocket_accept(key.as_bytes()).to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(!lower.contains("set-cookie"), "{head}");
    let handshake = t.proxy.upstream.last();
    assert_eq!(handshake.target, "/ws-greet");
    assert_eq!(
        handshake.header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
    assert_eq!(handshake.header("upgrade"), ["websocket"]);
    // The upstream's messages are searched for the credential: no compression may be agreed.
    assert!(handshake.header("sec-websocket-extensions").is_empty());

    // The upstream greets with the Authorization it got: the agent sees it redacted.
    let (opcode, greeting) = read_frame(&mut tls);
    assert_eq!(opcode, 1);
    let greeting = String::from_utf8(greeting).unwrap();
    assert_eq!(greeting, "hello, Bearer [REDACTED:ITEMS_KEY]");
    t.proxy
        .server
        .wait_for_log(&["credential echo", "websocket message", "service=\"items\""]);

    // Then messages go both ways (the upstream echoes them).
    for (opcode, message) in [(1, &b"first message"[..]), (2, b"\x00binary\xff")] {
        tls.write_all(&client_frame(opcode, message)).unwrap();
        tls.flush().unwrap();
        assert_eq!(read_frame(&mut tls), (opcode, message.to_vec()));
    }
    assert_eq!(
        t.proxy.upstream.websocket_frames(),
        [
            (1, b"first message".to_vec()),
            (2, b"\x00binary\xff".to_vec())
        ]
    );
}

#[test]
fn python_requests_and_node_fetch_run_unmodified_under_vault_run() {
    let t = Transparent::start();
    let token = agent_token(&t, "client-bot");
    let clients = crate::support::workspace_root().join("tests/clients");
    assert!(
        clients.join("node_modules/undici").is_dir(),
        "the Node client needs undici: run ./scripts/test, which installs it"
    );
    for (program, script) in [("python3", "requests_get.py"), ("node", "fetch.mjs")] {
        let path = format!("/v1/from-{program}");
        let url = t.url("api.test.example", &path);
        let script = clients.join(script);
        let output = vault_run(&t, &token, &[program, script.to_str().unwrap(), &url]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.lines().next() == Some("200"),
            "{program}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let received = t.proxy.upstream.last();
        assert_eq!(received.target, path);
        assert_eq!(
            received.header("authorization"),
            ["Bearer sk_test_transparent_0007"],
            "{program}"
        );
    }
}

#[test]
fn a_plain_http_request_carries_a_credential_only_where_the_service_allows_plaintext() {
    // A plain-http upstream that records the head of the one request it gets.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let head = read_head(&mut stream);
            let _ = sender.send(head);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nplain",
            );
        }
    });
    let pin = format!("plain.test.example:{port}:127.0.0.1");
    let proxy = Proxy::start_with(
        &["--mitm-port", "auto", "--resolve", &pin],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "PLAIN_KEY": "sk_test_plain_0008" }));
    let service = |allow_plaintext: bool| {
        json!([{
            "name": "plain", "host": "plain.test.example",
            "auth": { "type": "bearer", "token": "PLAIN_KEY" },
            "allow_plaintext": allow_plaintext,
        }])
    };
    let address = proxy.server.transparent.clone().unwrap();
    let curl = || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--proxy"])
            .arg(format!("http://{address}"))
            .arg("--proxy-user")
            .arg(format!("{}:default", proxy.token))
            .args(["-w", "\n%{http_code}"])
            .arg(format!("http://plain.test.example:{port}/v1/plain?x=1"))
            .output()
            .unwrap()
    };

    // By default the credential never leaves in clear text: refused before any connection.
    proxy.services(service(false));
    let refused = String::from_utf8_lossy(&curl().stdout).into_owned();
    assert!(refused.ends_with("\n403"), "{refused}");
    assert!(
        refused.contains(r#""error":"plaintext_refused""#),
        "{refused}"
    );
    assert!(refused.contains("allow_plaintext"), "{refused}");
    assert!(!refused.contains("sk_test_plain_0008"), "{refused}");
    assert!(received.try_recv().is_err(), "the upstream got a request");

    // A lab upstream without TLS, allowed explicitly.
    proxy.services(service(true));
    let output = curl();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "plain\n200",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let head = received
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(head.starts_with("GET /v1/plain?x=1 HTTP/1.1"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("authorization: bearer sk_test_plain_0008"),
        "{head}"
    );
    assert!(!lower.contains("proxy-authorization"), "{head}");
}

#[test]
fn an_http2_only_client_works_through_the_tunnel() {
    let t = Transparent::start();
    let port = t.proxy.upstream.port;
    let ca = std::fs::read(&t.ca_file).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, alpn) = runtime.block_on(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(&t.address).await.unwrap();
        let credentials = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("{}:default", t.proxy.token))
        };
        tcp.write_all(
            format!(
                "CONNECT api.test.example:{port} HTTP/1.1\r\nHost: api.test.example:{port}\r\n\
                 Proxy-Authorization: Basic {credentials}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 200"));
        // Offer h2 and nothing else.
        let mut config = (*tls_client(&ca)).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = rustls_pki_types::ServerName::try_from("api.test.example").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get(format!("https://api.test.example:{port}/h2-only"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        (response.status().as_u16(), alpn)
    });
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(status, 200);
    let received = t.proxy.upstream.last();
    assert_eq!(received.target, "/h2-only");
    assert_eq!(
        received.header("authorization"),
        ["Bearer sk_test_transparent_0007"]
    );
}

#[test]
fn ca_fetch_saves_the_local_ca() {
    let t = Transparent::start();
    let out = t.proxy.data.path().join("fetched-ca.pem");
    let run = crate::support::agent_vault_with_env(
        &["ca", "fetch", "-o", out.to_str().unwrap()],
        &[("AGENT_VAULT_ADDR", &t.proxy.server.url())],
    );
    assert!(run.0.status.success(), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("Wrote the CA of the transparent proxy (port")
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&t.ca_file).unwrap()
    );
    let printed = crate::support::agent_vault_with_env(
        &["ca", "fetch"],
        &[("AGENT_VAULT_ADDR", &t.proxy.server.url())],
    );
    assert_eq!(
        printed.stdout().as_bytes(),
        std::fs::read(&t.ca_file).unwrap()
    );
}

/// Both doors read a host by one rule (`host/src/authority.rs`): an IPv6 address in brackets
/// is a host at either, and a name whose last label is a number is the IPv4 address a
/// resolver reads in it (`127.1` is 127.0.0.1). Before, the explicit ingress refused `[::1]`
/// and the transparent one passed `127.1` on to the resolver as a name.
#[test]
fn both_doors_read_a_host_by_one_rule() {
    let t = Transparent::start();
    let port = t.proxy.upstream.port;

    let bracketed = t.proxy.call("GET", "[::1]", "/x", &[]);
    assert_eq!(
        bracketed.proxy_error(),
        (403, "forbidden".into()),
        "{}",
        String::from_utf8_lossy(&bracketed.body)
    );
    assert_eq!(
        bracketed.json()["proposal_hint"]["host"],
        format!("[::1]:{port}")
    );
    let shorthand = t.proxy.call("GET", "127.1", "/x", &[]);
    assert_eq!(shorthand.proxy_error(), (403, "forbidden".into()));
    assert_eq!(
        shorthand.json()["proposal_hint"]["host"],
        format!("127.0.0.1:{port}")
    );
    let nothing = t.proxy.call("GET", "1.2.3.4.5", "/x", &[]);
    assert_eq!(nothing.proxy_error().0, 400, "{nothing:?}");

    t.proxy.api(
        "PATCH",
        "/v1/vaults/default/settings",
        json!({ "unmatched_host_policy": "deny" }),
    );
    let connect = connect_raw(&t, "[::1]", port, Some(&t.proxy.token));
    assert!(connect.starts_with("HTTP/1.1 403"), "{connect}");
    assert!(
        connect.contains(&format!("\"host\":\"[::1]:{port}\"")),
        "{connect}"
    );
    let connect = connect_raw(&t, "0x7f.1", port, Some(&t.proxy.token));
    assert!(connect.starts_with("HTTP/1.1 403"), "{connect}");
    assert!(
        connect.contains(&format!("\"host\":\"127.0.0.1:{port}\"")),
        "{connect}"
    );
    let connect = connect_raw(&t, "1.2.3.4.5", port, Some(&t.proxy.token));
    assert!(connect.starts_with("HTTP/1.1 400"), "{connect}");

    // An absolute-form URL with credentials before the host: refused, not dropped.
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:default", t.proxy.token));
    let mut stream = TcpStream::connect(&t.address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET http://user:pw@other.test.example:{port}/x HTTP/1.1\r\n\
         Host: other.test.example:{port}\r\nProxy-Authorization: Basic {basic}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid target URL"), "{answer}");
}
