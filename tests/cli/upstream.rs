//! A recording HTTPS upstream for the proxy tests: a test CA of its own, a certificate for
//! any names the test asks for, HTTP/1.1 and HTTP/2, and every request it receives kept for
//! the test to look at.
//!
//! Paths with a meaning: `/ws` is a WebSocket echo server, sending each message back as it
//! came (`/ws-greet` first greets with the `Authorization` it was sent, as a service quoting
//! the handshake would; `/ws-bad-accept` answers its 101 with the wrong
//! `Sec-WebSocket-Accept`), `/set-cookie` answers with `Set-Cookie` and `X-Upstream`,
//! `/redirect` with a 302, `/hang` never answers, `/stream` sends three chunks a little apart,
//! `/big` sends 64 KiB, `/endless` never stops sending, `/gzip-bomb` sends 10 MB of zeros
//! gzipped (about 10 KB, labelled `Content-Encoding: gzip`), `/redirect-307?to=URL` redirects
//! there (307); a path with an `echo` segment answers with the request (httpbin style: method, target,
//! headers and body as JSON, the query in a `Location` header and the `Authorization` in
//! `WWW-Authenticate` and `X-Echo-Authorization`), `echo-stream` the same in small chunks
//! without a length, `echo-gzip` the same labelled `Content-Encoding: gzip`, `echo-encoded` the
//! `Authorization` in hex (both cases), percent-encoded and base64 (both alphabets),
//! `echo-ascii` the same as `echo` with non-ASCII as `\u` escapes (Python's `json.dumps`,
//! which httpbin uses), `echo-headers` the same with each query pair also a response header
//! (httpbin's `/response-headers`); anything else
//! answers 200 `{"ok":true}`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query as they arrived.
    pub target: String,
    /// Header names lower case, in arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub struct Upstream {
    pub port: u16,
    /// PEM of the CA that signed the upstream's certificate.
    pub ca_file: PathBuf,
    received: Arc<Mutex<Vec<Received>>>,
    messages: WebSocketFrames,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Upstream {
    /// Start on 127.0.0.1 with a certificate for `names`.
    pub fn start(names: &[&str]) -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agent-vault test upstream CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let ca_file = dir.path().join("upstream-ca.pem");
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
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let record = Recorder {
            requests: received.clone(),
            messages: messages.clone(),
        };
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |request| answer(request, record.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Upstream {
            port,
            ca_file,
            received,
            messages,
            _dir: dir,
            _runtime: runtime,
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The WebSocket frames received so far, over every connection: (opcode, unmasked
    /// payload).
    pub fn websocket_frames(&self) -> Vec<(u8, Vec<u8>)> {
        self.messages.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Received {
        self.received()
            .pop()
            .expect("the upstream received a request")
    }
}

type AnswerBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The WebSocket frames received: (opcode, unmasked payload).
type WebSocketFrames = Arc<Mutex<Vec<(u8, Vec<u8>)>>>;

/// Where the upstream keeps what it received.
#[derive(Clone)]
struct Recorder {
    requests: Arc<Mutex<Vec<Received>>>,
    messages: WebSocketFrames,
}

async fn answer(
    mut request: Request<Incoming>,
    record: Recorder,
) -> Result<Response<AnswerBody>, Infallible> {
    // `/ws`: a WebSocket handshake, then every frame echoed back.
    let websocket = matches!(request.uri().path(), "/ws" | "/ws-greet" | "/ws-bad-accept")
        .then(|| {
            let key = request
                .headers()
                .get("sec-websocket-key")?
                .as_bytes()
                .to_vec();
            Some((key, hyper::upgrade::on(&mut request)))
        })
        .flatten();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.to_string())
        .unwrap_or_default();
    let mut headers = Vec::new();
    for (name, value) in &parts.headers {
        headers.push((
            name.as_str().to_owned(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    if parts.version == http::Version::HTTP_2 && !parts.headers.contains_key(http::header::HOST) {
        // HTTP/2 may carry the host only in the :authority pseudo-header.
        if let Some(authority) = parts.uri.authority() {
            headers.insert(0, ("host".to_owned(), authority.to_string()));
        }
    }
    let echoed = parts
        .uri
        .path()
        .split('/')
        .find_map(|segment| segment.strip_prefix("echo"))
        .map(|mode| echo(mode, &parts, &headers, &body, &target));
    let authorization = headers
        .iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    record.requests.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        target: target.clone(),
        headers,
        body,
        version: format!("{:?}", parts.version),
    });
    if let Some(response) = echoed {
        return Ok(response);
    }
    let full = |text: &'static str| Full::new(Bytes::from_static(text.as_bytes())).boxed();
    if let Some((key, upgrade)) = websocket {
        let accept = if target == "/ws-bad-accept" {
            websocket_accept(b"another key")
        } else {
            websocket_accept(&key)
        };
        let greeting = (target == "/ws-greet").then(|| format!("hello, {authorization}"));
        let messages = record.messages.clone();
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let _ = echo_frames(TokioIo::new(upgraded), greeting, messages).await;
            }
        });
        return Ok(Response::builder()
            .status(101)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .header("set-cookie", "ws=upstream-secret")
            .body(full(""))
            .unwrap());
    }
    let response = match parts.uri.path() {
        "/set-cookie" => Response::builder()
            .header("set-cookie", "session=upstream-secret; HttpOnly")
            .header("x-upstream", "yes")
            .body(full("{\"ok\":true}")),
        "/redirect" => Response::builder()
            .status(302)
            .header("location", "https://elsewhere.example/landing")
            .body(full("")),
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::builder().body(full(""))
        }
        "/stream" => {
            let (sender, receiver) =
                tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                for n in 0..3 {
                    let _ = sender
                        .send(Ok(Frame::data(Bytes::from(format!("data: {n}\n\n")))))
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            let stream = tokio_stream_from(receiver);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(stream).boxed())
        }
        "/big" => Response::builder().body(Full::new(Bytes::from(vec![b'x'; 64 * 1024])).boxed()),
        "/redirect-307" => Response::builder()
            .status(307)
            .header(
                "location",
                parts
                    .uri
                    .query()
                    .and_then(|query| query.strip_prefix("to="))
                    .unwrap_or("https://attacker.test.example/steal"),
            )
            .body(full("")),
        "/endless" => {
            let (sender, receiver) =
                tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
                while sender.send(Ok(Frame::data(chunk.clone()))).await.is_ok() {}
            });
            Response::builder().body(StreamBody::new(tokio_stream_from(receiver)).boxed())
        }
        "/gzip-bomb" => Response::builder()
            .header("content-encoding", "gzip")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(gzip_bomb().to_vec())).boxed()),
        _ => Response::builder()
            .header("content-type", "application/json")
            .body(full("{\"ok\":true}")),
    };
    Ok(response.unwrap())
}

/// The request, echoed back in the body and in headers, as APIs that quote what they got do.
fn echo(
    mode: &str,
    parts: &http::request::Parts,
    headers: &[(String, String)],
    body: &[u8],
    target: &str,
) -> Response<AnswerBody> {
    let mut quoted = serde_json::Map::new();
    for (name, value) in headers {
        quoted.insert(name.clone(), serde_json::Value::String(value.clone()));
    }
    let text = serde_json::json!({
        "method": parts.method.as_str(),
        "target": target,
        "headers": quoted,
        "body": String::from_utf8_lossy(body),
    })
    .to_string();
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .cloned()
        .unwrap_or(http::HeaderValue::from_static("none"));
    let mut response = Response::builder()
        .header("content-type", "application/json")
        .header(
            "location",
            format!(
                "https://elsewhere.example/next?{}",
                parts.uri.query().unwrap_or_default()
            ),
        )
        .header(
            "www-authenticate",
            format!(
                "Bearer error=\"invalid_token\", token=\"{}\"",
                String::from_utf8_lossy(authorization.as_bytes())
            ),
        )
        .header("x-echo-authorization", authorization.clone());
    let body = match mode {
        "-stream" => {
            let (sender, receiver) =
                tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
            let bytes = text.into_bytes();
            tokio::spawn(async move {
                for piece in bytes.chunks(7) {
                    let _ = sender
                        .send(Ok(Frame::data(Bytes::copy_from_slice(piece))))
                        .await;
                    tokio::task::yield_now().await;
                }
            });
            StreamBody::new(tokio_stream_from(receiver)).boxed()
        }
        "-gzip" => {
            response = response.header("content-encoding", "gzip");
            Full::new(Bytes::from(text)).boxed()
        }
        "-encoded" => {
            // The Authorization value in every encoding a sloppy API might quote it in.
            use base64::Engine as _;
            let value = authorization.as_bytes();
            let engines = [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            let mut forms = vec![
                hex::encode(value),
                hex::encode_upper(value),
                crate::adversarial::percent_encoded(value),
            ];
            forms.extend(engines.iter().map(|engine| engine.encode(value)));
            Full::new(Bytes::from(
                serde_json::json!({ "forms": forms }).to_string(),
            ))
            .boxed()
        }
        "-headers" => {
            for (name, value) in parts
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|pair| pair.split_once('='))
            {
                response = response.header(name, value);
            }
            Full::new(Bytes::from(text)).boxed()
        }
        "-ascii" => {
            let mut ascii = String::with_capacity(text.len());
            for character in text.chars() {
                if character.is_ascii() {
                    ascii.push(character);
                } else {
                    for unit in character.encode_utf16(&mut [0; 2]) {
                        ascii.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
            Full::new(Bytes::from(ascii)).boxed()
        }
        _ => Full::new(Bytes::from(text)).boxed(),
    };
    response.body(body).unwrap()
}

/// Ten million zero bytes, gzipped (about 10 KB): what a decompressing proxy would blow up.
fn gzip_bomb() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let output = std::process::Command::new("python3")
            .args([
                "-c",
                "import gzip, sys; sys.stdout.buffer.write(gzip.compress(bytes(10_000_000), mtime=0))",
            ])
            .output()
            .expect("python3 runs");
        assert!(output.status.success());
        output.stdout
    })
}

/// A WebSocket echo server's side of an upgraded connection: an optional greeting, then each
/// frame received (masked, as clients send them) sent back unmasked, as servers send them,
/// until the client closes.
async fn echo_frames(
    mut connection: TokioIo<hyper::upgrade::Upgraded>,
    greeting: Option<String>,
    messages: WebSocketFrames,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    if let Some(greeting) = greeting {
        connection
            .write_all(&server_frame(0x1, greeting.as_bytes()))
            .await?;
    }
    loop {
        let (opcode, payload) = read_frame_async(&mut connection).await?;
        messages.lock().unwrap().push((opcode, payload.clone()));
        connection
            .write_all(&server_frame(opcode, &payload))
            .await?;
        if opcode == 0x8 {
            return connection.shutdown().await;
        }
    }
}

async fn read_frame_async(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt as _;
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    let mut length = u64::from(head[1] & 0x7f);
    if length == 126 {
        let mut bytes = [0u8; 2];
        stream.read_exact(&mut bytes).await?;
        length = u64::from(u16::from_be_bytes(bytes));
    } else if length == 127 {
        let mut bytes = [0u8; 8];
        stream.read_exact(&mut bytes).await?;
        length = u64::from_be_bytes(bytes);
    }
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        stream.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; length as usize];
    stream.read_exact(&mut payload).await?;
    unmask(&mut payload, mask);
    Ok((head[0] & 0x0f, payload))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

fn encode_frame(opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// A whole (final) frame as a WebSocket client sends it: masked.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(opcode, Some([0x37, 0xfa, 0x21, 0x3d]), payload)
}

/// A whole (final) frame as a WebSocket server sends it: unmasked.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(opcode, None, payload)
}

/// One frame as a WebSocket client reads it: (opcode, unmasked payload).
pub fn read_frame(stream: &mut impl std::io::Read) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    let mut length = u64::from(head[1] & 0x7f);
    if length == 126 {
        let mut bytes = [0u8; 2];
        stream.read_exact(&mut bytes).unwrap();
        length = u64::from(u16::from_be_bytes(bytes));
    } else if length == 127 {
        let mut bytes = [0u8; 8];
        stream.read_exact(&mut bytes).unwrap();
        length = u64::from_be_bytes(bytes);
    }
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        stream.read_exact(&mut mask).unwrap();
    }
    let mut payload = vec![0u8; length as usize];
    stream.read_exact(&mut payload).unwrap();
    unmask(&mut payload, mask);
    (head[0] & 0x0f, payload)
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455).
pub fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(key);
    hasher.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// An mpsc receiver as a `Stream`.
fn tokio_stream_from<T>(receiver: tokio::sync::mpsc::Receiver<T>) -> ReceiverStream<T> {
    ReceiverStream(receiver)
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
