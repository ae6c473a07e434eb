//! A misbehaving HTTPS upstream for the fault scenarios. It writes HTTP/1.1 by hand over
//! TLS, so that it can do what a well-behaved server library never would: stop in the middle
//! of a body and hang up (politely with TLS's `close_notify`, abruptly without it, or with a
//! TCP reset), answer late, or send its answer a trickle at a time. It has a CA of its own
//! (pass [`FaultyUpstream::ca_file`] to `--upstream-ca`), a certificate for the names the test
//! asks for, offers only `http/1.1`, and keeps every request it received.
//!
//! What it answers, by path:
//! - `/bytes/{n}`: `n` bytes of [`pattern`], with a `Content-Length`;
//! - `/chunked/{n}`: the same bytes, chunked 1,000 at a time;
//! - `/echo`: the request's body, with a `Content-Length`;
//! - `/late/{ms}`: waits `ms` milliseconds, then answers as `/bytes/64`;
//! - `/trickle/{n}/{piece}/{ms}`: `n` bytes with a `Content-Length`, `piece` bytes every `ms`
//!   milliseconds;
//! - `/cut/{framing}/{promised}/{sent}/{ending}`: promises `promised` bytes (`length`: in a
//!   `Content-Length`; `chunked`: as one chunk of that size), sends the first `sent` of them
//!   and hangs up as [`Ending`] says (`notify`, `fin` or `reset`); with `?hold` it first waits
//!   for [`FaultyUpstream::release`], so that a test can see the partial answer arrive.
//!
//! Every complete answer says `Connection: close`, so each request has a connection of its
//! own.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The bytes `/bytes/{n}` and friends send: position-dependent, so that a byte lost, doubled
/// or moved shows.
pub fn pattern(length: usize) -> Vec<u8> {
    (0..length)
        .map(|i| ((i % 251) as u8) ^ ((i / 251) as u8).wrapping_mul(31))
        .collect()
}

/// How a cut answer hangs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// TLS `close_notify`, then a FIN: a clean end of the stream, in the middle of a body.
    Notify,
    /// A FIN without `close_notify`: the connection dropped (Toxiproxy's `limit_data`).
    Fin,
    /// A TCP reset (Toxiproxy's `reset_peer`).
    Reset,
}

impl Ending {
    pub const ALL: [Ending; 3] = [Ending::Notify, Ending::Fin, Ending::Reset];

    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Notify => "notify",
            Ending::Fin => "fin",
            Ending::Reset => "reset",
        }
    }

    fn parse(text: &str) -> Option<Ending> {
        Ending::ALL
            .into_iter()
            .find(|ending| ending.as_str() == text)
    }
}

/// One request the upstream read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub body: Vec<u8>,
}

pub struct FaultyUpstream {
    pub port: u16,
    /// PEM of the CA that signed the upstream's certificate.
    pub ca_file: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<tokio::sync::Notify>,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl FaultyUpstream {
    /// Start on 127.0.0.1 with a certificate for `names`.
    pub fn start(names: &[&str]) -> FaultyUpstream {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agent-vault faulty upstream CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
        let ca_file = dir.path().join("faulty-upstream-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let (task_seen, task_release) = (seen.clone(), release.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let (seen, release) = (task_seen.clone(), task_release.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = serve(tls, seen, release).await;
                    }
                });
            }
        });
        FaultyUpstream {
            port,
            ca_file,
            seen,
            release,
            _dir: dir,
            _runtime: runtime,
        }
    }

    /// Every request read so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests for `path` (without the query) arrived.
    pub fn count(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.target.split('?').next() == Some(path))
            .count()
    }

    /// Let a held cut answer (`?hold`) hang up.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

type Connection = BufReader<TlsStream<TcpStream>>;

/// Read one request and answer it.
async fn serve(
    tls: TlsStream<TcpStream>,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<tokio::sync::Notify>,
) -> std::io::Result<()> {
    let mut connection = BufReader::new(tls);
    let request = read_request(&mut connection).await?;
    seen.lock().unwrap().push(request.clone());
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let number = |index: usize| -> usize {
        segments
            .get(index)
            .and_then(|text| text.parse().ok())
            .unwrap_or(0)
    };
    match segments[0] {
        "bytes" => whole(&mut connection, &pattern(number(1))).await,
        "echo" => whole(&mut connection, &request.body).await,
        "late" => {
            tokio::time::sleep(Duration::from_millis(number(1) as u64)).await;
            whole(&mut connection, &pattern(64)).await
        }
        "chunked" => {
            let body = pattern(number(1));
            let mut out = head("transfer-encoding: chunked\r\nconnection: close");
            for chunk in body.chunks(1000) {
                out.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend(chunk);
                out.extend(b"\r\n");
            }
            out.extend(b"0\r\n\r\n");
            write_and_close(connection, &out).await
        }
        "trickle" => {
            let (body, piece, every) = (pattern(number(1)), number(2).max(1), number(3));
            let stream = connection.get_mut();
            stream
                .write_all(&head(&format!(
                    "content-length: {}\r\nconnection: close",
                    body.len()
                )))
                .await?;
            for chunk in body.chunks(piece) {
                stream.flush().await?;
                tokio::time::sleep(Duration::from_millis(every as u64)).await;
                stream.write_all(chunk).await?;
            }
            stream.shutdown().await
        }
        "cut" => {
            let (framing, promised, sent) = (segments[1], number(2), number(3));
            let ending = Ending::parse(segments.get(4).copied().unwrap_or_default())
                .expect("/cut/{framing}/{promised}/{sent}/{notify|fin|reset}");
            let body = pattern(promised);
            let mut out = match framing {
                "length" => head(&format!("content-length: {promised}")),
                "chunked" => {
                    let mut out = head("transfer-encoding: chunked");
                    out.extend(format!("{promised:x}\r\n").as_bytes());
                    out
                }
                other => panic!("unknown framing {other}"),
            };
            out.extend(&body[..sent]);
            let stream = connection.get_mut();
            stream.write_all(&out).await?;
            stream.flush().await?;
            if query == "hold" {
                release.notified().await;
            }
            hang_up(connection, ending).await
        }
        _ => whole(&mut connection, b"{\"ok\":true}").await,
    }
}

/// A 200 head with `headers` (CRLF-separated, no final CRLF).
fn head(headers: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n{headers}\r\n\r\n")
        .into_bytes()
}

async fn whole(connection: &mut Connection, body: &[u8]) -> std::io::Result<()> {
    let mut out = head(&format!(
        "content-length: {}\r\nconnection: close",
        body.len()
    ));
    out.extend(body);
    let stream = connection.get_mut();
    stream.write_all(&out).await?;
    stream.shutdown().await
}

async fn write_and_close(mut connection: Connection, bytes: &[u8]) -> std::io::Result<()> {
    let stream = connection.get_mut();
    stream.write_all(bytes).await?;
    stream.shutdown().await
}

async fn hang_up(connection: Connection, ending: Ending) -> std::io::Result<()> {
    let mut tls = connection.into_inner();
    match ending {
        Ending::Notify => tls.shutdown().await,
        Ending::Fin => {
            tls.flush().await?;
            let (mut tcp, _) = tls.into_inner();
            tcp.shutdown().await
        }
        Ending::Reset => {
            tls.flush().await?;
            let (tcp, _) = tls.into_inner();
            tcp.set_zero_linger()?;
            drop(tcp);
            Ok(())
        }
    }
}

/// The request head and its body (by `Content-Length`, or chunked).
async fn read_request(connection: &mut Connection) -> std::io::Result<Seen> {
    let mut line = String::new();
    connection.read_line(&mut line).await?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default().to_owned();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        if connection.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let (name, value) = (name.to_ascii_lowercase(), value.trim().to_ascii_lowercase());
        if name == "content-length" {
            length = value.parse().unwrap_or(0);
        } else if name == "transfer-encoding" && value.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            connection.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if connection.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            connection.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            connection.read_exact(&mut crlf).await?;
        }
    } else {
        body.resize(length, 0);
        connection.read_exact(&mut body).await?;
    }
    Ok(Seen {
        method,
        target,
        body,
    })
}

impl FaultyUpstream {
    /// What the upstream answers `GET path` when asked directly, as `name`, without the
    /// proxy: the body, its framing undone.
    pub fn fetch_directly(&self, name: &str, path: &str) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_file_iter(&self.ca_file).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let connection = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        use std::io::{Read as _, Write as _};
        write!(tls, "GET {path} HTTP/1.1\r\nhost: {name}\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        // The upstream ends with close_notify: a clean end.
        tls.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let body = &raw[split + 4..];
        if head.contains("transfer-encoding: chunked") {
            let (body, complete) = dechunk(body);
            assert!(complete, "a complete chunked body");
            body
        } else {
            body.to_vec()
        }
    }
}

/// The data of a chunked body as far as it goes, and whether it ended with the last chunk.
pub fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16)
        else {
            return (out, false);
        };
        if size == 0 {
            return (out, raw[end..].starts_with(b"\r\n\r\n"));
        }
        let data = &raw[end + 2..];
        if data.len() < size + 2 {
            out.extend_from_slice(&data[..data.len().min(size)]);
            return (out, false);
        }
        out.extend_from_slice(&data[..size]);
        raw = &data[size + 2..];
    }
    (out, false)
}
