//! The adversarial suite: the thirty attacks of the security checklist (cases 1-30) and its
//! ten fault scenarios, each a test named after its case, run against a real server the way
//! an attacker on the same machine would run them: a prompt-injected agent with a valid
//! session, another local process, a malicious upstream, a malicious plugin.
//!
//! Conventions (as the checklist states them): the *canary* is a unique credential value
//! for the test; "zero canary bytes" means neither the canary nor its base64, URL-encoded,
//! hex or JSON-escaped forms appear where the test looks (what the upstream received, what
//! the agent got back, the logs). A case that cannot apply here says why in one line, next
//! to the test that covers what can be covered.
//!
//! Files by section: `destination.rs` (cases 1-10), `paths.rs` (11-12), `framing.rs`
//! (13-19), `resources.rs` (20-22), `leakage.rs` (23-26), `isolation.rs` (27-28),
//! `plugins.rs` (29-30), `faults.rs` (the ten fault scenarios).

pub mod confined;
mod destination;
pub mod faults;
mod faulty_upstream;
mod framing;
mod isolation;
mod leakage;
mod paths;
mod plugins;
mod relay;
mod resources;

use base64::Engine as _;

/// A credential value no other test uses, and the forms it could come back in.
pub struct Canary {
    pub value: String,
}

impl Canary {
    pub fn new(label: &str) -> Canary {
        let random: [u8; 8] = rand_bytes();
        Canary {
            value: format!("sk_canary_{label}_{}", hex::encode(random)),
        }
    }

    /// Every spelling of the canary an upstream or a log could carry.
    pub fn forms(&self) -> Vec<String> {
        let raw = self.value.as_bytes();
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let mut forms = vec![
            self.value.clone(),
            hex::encode(raw),
            hex::encode_upper(raw),
            percent_encoded(raw),
            serde_json::to_string(&self.value)
                .unwrap()
                .trim_matches('"')
                .to_owned(),
        ];
        forms.extend(engines.iter().map(|engine| engine.encode(raw)));
        forms
    }

    /// Panics, naming the form and `what`, if any spelling of the canary is in `bytes`.
    pub fn assert_absent(&self, bytes: &[u8], what: &str) {
        let text = String::from_utf8_lossy(bytes);
        for form in self.forms() {
            assert!(
                !text.contains(&form),
                "the canary ({form}) reached {what}: {text}"
            );
        }
    }
}

/// Percent-encoding of every byte but `A-Z a-z 0-9 - . _ ~`, as URLs and the plugin
/// contract's `percent` encoding write it.
pub fn percent_encoded(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        let bytes = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    out
}

/// A TCP listener that accepts nothing itself and counts the connections that reached it:
/// the witness that a refused destination was never dialled.
pub struct Witness {
    listener: std::net::TcpListener,
    pub port: u16,
}

impl Witness {
    /// On `ip` (any loopback address), port 0 or `port`.
    pub fn on(ip: &str, port: u16) -> Witness {
        let listener = std::net::TcpListener::bind((ip, port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        Witness { listener, port }
    }

    /// How many connections reached the listener so far.
    pub fn connections(&self) -> usize {
        let mut count = 0;
        while self.listener.accept().is_ok() {
            count += 1;
        }
        count
    }
}

/// A raw `CONNECT target` to the transparent proxy at `address` with the vault token as its
/// Basic proxy credentials; the proxy's answer (head and body) as text.
pub fn connect(address: &str, token: &str, target: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{token}:default"));
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
    )
    .unwrap();
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
    String::from_utf8_lossy(&answer).into_owned()
}

/// The transparent proxy's address of a server started with `--mitm-port auto`.
pub fn transparent_address(proxy: &crate::proxy::Proxy) -> String {
    proxy
        .server
        .transparent
        .clone()
        .expect("the transparent proxy is on")
}

/// One HTTP/2 request inside an intercepted tunnel to `api.test.example` (TLS with ALPN
/// `h2` only): the status and body the agent gets.
pub fn h2_in_tunnel(
    t: &crate::transparent::Transparent,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let port = t.proxy.upstream.port;
    let ca = std::fs::read(&t.ca_file).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tcp = tokio::net::TcpStream::connect(&t.address).await.unwrap();
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:default", t.proxy.token));
        tcp.write_all(
            format!(
                "CONNECT api.test.example:{port} HTTP/1.1\r\nHost: api.test.example:{port}\r\n\
                 Proxy-Authorization: Basic {basic}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let mut config = (*crate::transparent::tls_client(&ca)).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = rustls_pki_types::ServerName::try_from("api.test.example").unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|collected| collected.to_bytes().to_vec())
            .unwrap_or_default();
        (status, body)
    })
}

/// A plain-http upstream on 127.0.0.1 that hands each request head it receives to the test
/// and answers `200 ok`.
pub struct PlainUpstream {
    pub port: u16,
    heads: std::sync::mpsc::Receiver<String>,
}

impl PlainUpstream {
    pub fn start() -> PlainUpstream {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, heads) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let head = crate::transparent::read_head(&mut stream);
                let _ = sender.send(head);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        PlainUpstream { port, heads }
    }

    /// The next request head the upstream received.
    pub fn next_head(&self) -> String {
        self.heads
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the upstream received a request")
    }
}

/// An open intercepted tunnel to `api.test.example` (HTTP/1.1 over TLS).
pub type Tunnel = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// Write `raw` (a whole HTTP/1.1 request, head and body) into a tunnel; the status of the
/// answer and its body (read by `Content-Length`; none otherwise).
pub fn exchange_in_tunnel(tls: &mut Tunnel, raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    tls.write_all(raw)?;
    tls.flush()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status: u16 = text[9..12].parse().unwrap();
    let length = text
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body)?;
    Ok((status, body))
}
