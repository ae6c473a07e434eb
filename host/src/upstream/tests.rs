//! Tests of the forward step: the request sent upstream and its answer back (upstream/mod.rs).

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Body, Frame};
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::PrivateKeyDer;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::request::Scheme;

const NAME: &str = "api.test.example";
const MIB: usize = 1024 * 1024;

/// A test CA, and a certificate for `api.test.example` it signed.
struct TestPki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key_der: Vec<u8>,
    leaf_key_pem: String,
}

fn test_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "forward test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![NAME.to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    TestPki {
        ca: ca.der().clone(),
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        leaf_key_der: leaf_key.serialize_der(),
        leaf_key_pem: leaf_key.serialize_pem(),
    }
}

/// What the test upstream saw of one request.
#[derive(Debug)]
struct Seen {
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// How the test upstream treats requests.
#[derive(Clone)]
enum Behaviour {
    /// Read the body, reporting how many bytes have arrived so far, then answer 200.
    Answer(Option<mpsc::UnboundedSender<usize>>),
    /// Take the request and never answer.
    Hang,
}

struct TestUpstream {
    port: u16,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl TestUpstream {
    /// An HTTPS upstream on 127.0.0.1 with the `api.test.example` certificate, offering
    /// the ALPN protocols `alpn`.
    async fn https(pki: &TestPki, alpn: &[&[u8]], behaviour: Behaviour) -> TestUpstream {
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.leaf.clone()],
            PrivateKeyDer::Pkcs8(pki.leaf_key_der.clone().into()),
        )
        .unwrap();
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TestUpstream::start(Some(TlsAcceptor::from(Arc::new(tls))), behaviour).await
    }

    /// A plain-HTTP upstream on 127.0.0.1.
    async fn http(behaviour: Behaviour) -> TestUpstream {
        TestUpstream::start(None, behaviour).await
    }

    async fn start(tls: Option<TlsAcceptor>, behaviour: Behaviour) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (record, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (tls, behaviour, record) = (tls.clone(), behaviour.clone(), record.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        answer(request, behaviour.clone(), record.clone())
                    });
                    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            server.serve_connection(TokioIo::new(stream), service).await
                        }
                        None => server.serve_connection(TokioIo::new(stream), service).await,
                    };
                });
            }
        });
        TestUpstream { port, seen }
    }
}

async fn answer(
    request: Request<Incoming>,
    behaviour: Behaviour,
    record: mpsc::UnboundedSender<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Behaviour::Answer(progress) = behaviour else {
        return std::future::pending().await;
    };
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes.extend_from_slice(&data);
            if let Some(progress) = &progress {
                let _ = progress.send(bytes.len());
            }
        }
    }
    let _ = record.send(Seen {
        version: parts.version,
        uri: parts.uri,
        headers: parts.headers,
        body: bytes,
    });
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// Trust the test CA, pin `api.test.example:PORT` to 127.0.0.1 and allow 127.0.0.1.
fn pinned_settings(pki: &TestPki, port: u16) -> UpstreamSettings {
    UpstreamSettings {
        extra_roots: vec![pki.ca.clone()],
        resolve: vec![format!("{NAME}:{port}:127.0.0.1").parse().unwrap()],
        allowlist: vec!["127.0.0.1/32".parse().unwrap()],
        ..UpstreamSettings::default()
    }
}

fn request_to(url: &str) -> RequestHead {
    RequestHead::from_url(Method::GET, url).unwrap()
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn full(bytes: &'static [u8]) -> ProxyBody {
    Full::new(Bytes::from_static(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body the test feeds piece by piece, as an agent's upload arrives.
struct Upload(mpsc::Receiver<Result<Bytes, BoxError>>);

impl Body for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|piece| piece.map(Frame::data)))
    }
}

fn upload() -> (mpsc::Sender<Result<Bytes, BoxError>>, ProxyBody) {
    let (sender, receiver) = mpsc::channel(1);
    (sender, Upload(receiver).boxed_unsync())
}

fn header_map(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    headers
}

#[tokio::test]
async fn a_request_reaches_the_pinned_upstream_over_tls_with_only_end_to_end_headers() {
    let pki = test_pki();
    let mut server = TestUpstream::https(&pki, &[b"http/1.1"], Behaviour::Answer(None)).await;
    let upstream = Upstream::new(pinned_settings(&pki, server.port)).unwrap();

    let mut head = request_to(&format!(
        "https://{NAME}:{}/v1/items/a%2Fb?x=1&y=%20z&x=2",
        server.port
    ));
    head.method = Method::POST;
    head.headers = header_map(&[
        ("host", b"evil.example"),
        ("connection", b"keep-alive, X-Hop"),
        ("x-hop", b"named in Connection"),
        ("keep-alive", b"timeout=5"),
        ("proxy-connection", b"keep-alive"),
        ("proxy-authorization", b"Basic YWdlbnQ6dG9rZW4="),
        ("te", b"trailers, deflate;q=0.5"),
        ("trailer", b"x-checksum"),
        ("upgrade", b"websocket"),
        ("authorization", b"AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"),
        ("x-amz-date", b"20240101T000000Z"),
        ("accept", b"text/plain"),
        ("accept", b"application/json"),
        ("x-opaque", b"caf\xe9  \"quoted\"\t end"),
        ("content-length", b"5"),
    ]);

    let response = upstream.send(head, full(b"hello")).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_11);
    let seen = server.seen.recv().await.unwrap();
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.uri, "/v1/items/a%2Fb?x=1&y=%20z&x=2");
    assert_eq!(seen.body, b"hello");
    let expected = header_map(&[
        ("te", b"trailers"),
        ("authorization", b"AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"),
        ("x-amz-date", b"20240101T000000Z"),
        ("accept", b"text/plain"),
        ("accept", b"application/json"),
        ("x-opaque", b"caf\xe9  \"quoted\"\t end"),
        ("content-length", b"5"),
        ("host", format!("{NAME}:{}", server.port).as_bytes()),
    ]);
    assert_eq!(seen.headers, expected);
}

#[tokio::test]
async fn without_the_allowlist_a_name_pinned_to_loopback_is_blocked() {
    let pki = test_pki();
    let mut server = TestUpstream::https(&pki, &[b"http/1.1"], Behaviour::Answer(None)).await;
    let settings = UpstreamSettings {
        allowlist: Vec::new(),
        ..pinned_settings(&pki, server.port)
    };
    let upstream = Upstream::new(settings).unwrap();

    let url = format!("https://{NAME}:{}/", server.port);
    let error = upstream.send(request_to(&url), empty()).await.unwrap_err();

    let UpstreamError::Blocked { host, addr, reason } = &error else {
        panic!("expected Blocked, got {error:?}");
    };
    assert_eq!(host, NAME);
    assert_eq!(*addr, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(
        *reason,
        netguard::Blocked {
            range: netguard::Range::Loopback,
            embedded: None
        }
    );
    assert_eq!(error.code(), "upstream_blocked");
    assert_eq!(
        error.to_string(),
        "api.test.example resolves to 127.0.0.1, a loopback address; the proxy does not \
         connect there unless AGENT_VAULT_NETWORK_ALLOWLIST holds it"
    );
    assert!(
        server.seen.try_recv().is_err(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn one_blocked_address_among_several_blocks_the_host() {
    let pki = test_pki();
    let mut server = TestUpstream::https(&pki, &[b"http/1.1"], Behaviour::Answer(None)).await;
    let mut settings = pinned_settings(&pki, server.port);
    let second = format!("{NAME}:{}:10.0.0.1", server.port);
    settings.resolve.push(second.parse().unwrap());
    let upstream = Upstream::new(settings).unwrap();

    let url = format!("https://{NAME}:{}/", server.port);
    let error = upstream.send(request_to(&url), empty()).await.unwrap_err();

    let UpstreamError::Blocked { addr, reason, .. } = &error else {
        panic!("expected Blocked, got {error:?}");
    };
    assert_eq!(*addr, IpAddr::from([10, 0, 0, 1]));
    assert_eq!(reason.range, netguard::Range::Private);
    assert!(
        server.seen.try_recv().is_err(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn names_resolved_by_dns_are_checked_too() {
    let upstream = Upstream::new(UpstreamSettings::default()).unwrap();

    let error = upstream
        .send(request_to("http://localhost:9/"), empty())
        .await
        .unwrap_err();

    let UpstreamError::Blocked { host, reason, .. } = &error else {
        panic!("expected Blocked, got {error:?}");
    };
    assert_eq!(host, "localhost");
    assert_eq!(reason.range, netguard::Range::Loopback);
}

#[tokio::test]
async fn ip_literals_are_checked_without_dns() {
    let upstream = Upstream::new(UpstreamSettings::default()).unwrap();

    let url = "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/";
    let error = upstream.send(request_to(url), empty()).await.unwrap_err();

    assert_eq!(
        error.to_string(),
        "64:ff9b::a9fe:a9fe is a NAT64 address for 169.254.169.254, a cloud metadata \
         address (never allowed)"
    );
    assert_eq!(error.code(), "upstream_blocked");
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_fails_the_tls_handshake() {
    let pki = test_pki();
    let mut server = TestUpstream::https(&pki, &[b"http/1.1"], Behaviour::Answer(None)).await;
    let settings = UpstreamSettings {
        extra_roots: Vec::new(),
        ..pinned_settings(&pki, server.port)
    };
    let upstream = Upstream::new(settings).unwrap();

    let url = format!("https://{NAME}:{}/", server.port);
    let error = upstream.send(request_to(&url), empty()).await.unwrap_err();

    let UpstreamError::Tls { host, reason } = &error else {
        panic!("expected Tls, got {error:?}");
    };
    assert_eq!(host, NAME);
    assert_eq!(
        reason,
        "invalid peer certificate: UnknownIssuer; if the upstream uses a private CA, \
         trust it with --upstream-ca"
    );
    assert_eq!(error.code(), "upstream_error");
    assert!(
        server.seen.try_recv().is_err(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn an_upstream_that_never_answers_hits_the_response_header_timeout() {
    let pki = test_pki();
    let server = TestUpstream::https(&pki, &[b"http/1.1"], Behaviour::Hang).await;
    let settings = UpstreamSettings {
        response_header_timeout: Duration::from_millis(300),
        ..pinned_settings(&pki, server.port)
    };
    let upstream = Upstream::new(settings).unwrap();

    let url = format!("https://{NAME}:{}/", server.port);
    let error = upstream.send(request_to(&url), empty()).await.unwrap_err();

    let UpstreamError::Timeout { host, phase } = &error else {
        panic!("expected Timeout, got {error:?}");
    };
    assert_eq!((host.as_str(), *phase), (NAME, "response headers"));
    assert_eq!(error.code(), "upstream_timeout");
}

#[tokio::test]
async fn http2_is_used_when_the_upstream_offers_it() {
    let pki = test_pki();
    let mut server =
        TestUpstream::https(&pki, &[b"h2", b"http/1.1"], Behaviour::Answer(None)).await;
    let upstream = Upstream::new(pinned_settings(&pki, server.port)).unwrap();

    let mut head = request_to(&format!("https://{NAME}:{}/v1/things?a=1", server.port));
    head.headers = header_map(&[
        ("x-api-key", b"k"),
        ("connection", b"x-hop"),
        ("x-hop", b"1"),
    ]);
    let response = upstream.send(head, empty()).await.unwrap();

    assert_eq!(response.version(), Version::HTTP_2);
    let seen = server.seen.recv().await.unwrap();
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(
        seen.uri.to_string(),
        format!("https://{NAME}:{}/v1/things?a=1", server.port)
    );
    // On HTTP/2 the authority travels as `:authority` (the URI above), never also as a
    // `Host` header, which some servers refuse as a duplicate.
    let expected = header_map(&[("x-api-key", b"k")]);
    assert_eq!(seen.headers, expected);
}

#[tokio::test]
async fn a_body_of_several_mib_streams_through_intact() {
    let pki = test_pki();
    let (progress, mut arrived) = mpsc::unbounded_channel();
    let mut server =
        TestUpstream::https(&pki, &[b"http/1.1"], Behaviour::Answer(Some(progress))).await;
    let upstream = Upstream::new(pinned_settings(&pki, server.port)).unwrap();
    let (agent, body) = upload();
    let mut head = request_to(&format!("https://{NAME}:{}/upload", server.port));
    head.method = Method::PUT;
    let exchange = tokio::spawn(async move { upstream.send(head, body).await });

    // The first MiB reaches the upstream before the agent has sent the rest: nothing
    // waits for the whole body.
    let piece = |index: usize| Bytes::from(vec![(index % 251) as u8; 64 * 1024]);
    let mut sent = Sha256::new();
    for index in 0..16 {
        sent.update(piece(index));
        agent.send(Ok(piece(index))).await.unwrap();
    }
    let first_mib = async { while arrived.recv().await.unwrap() < MIB {} };
    tokio::time::timeout(Duration::from_secs(30), first_mib)
        .await
        .expect("the upstream received the first MiB while the upload was still open");
    for index in 16..64 {
        sent.update(piece(index));
        agent.send(Ok(piece(index))).await.unwrap();
    }
    drop(agent);

    let response = exchange.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = server.seen.recv().await.unwrap();
    assert_eq!(seen.body.len(), 4 * MIB);
    assert_eq!(Sha256::digest(&seen.body), sent.finalize());
    assert_eq!(seen.headers["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn waiting_for_a_slow_upload_is_not_an_upstream_timeout() {
    let pki = test_pki();
    let mut server = TestUpstream::https(&pki, &[b"http/1.1"], Behaviour::Answer(None)).await;
    let settings = UpstreamSettings {
        response_header_timeout: Duration::from_secs(1),
        ..pinned_settings(&pki, server.port)
    };
    let upstream = Upstream::new(settings).unwrap();
    let (agent, body) = upload();
    let mut head = request_to(&format!("https://{NAME}:{}/upload", server.port));
    head.method = Method::PUT;
    let exchange = tokio::spawn(async move { upstream.send(head, body).await });

    agent.send(Ok(Bytes::from_static(b"slow "))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.send(Ok(Bytes::from_static(b"agent"))).await.unwrap();
    drop(agent);

    let response = exchange.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.seen.recv().await.unwrap().body, b"slow agent");
}

#[derive(Debug, thiserror::Error)]
#[error("the agent's body is over its limit")]
struct OverLimit;

#[tokio::test]
async fn a_failing_request_body_is_the_body_s_error_not_the_upstream_s() {
    let pki = test_pki();
    let server = TestUpstream::https(&pki, &[b"http/1.1"], Behaviour::Answer(None)).await;
    let upstream = Upstream::new(pinned_settings(&pki, server.port)).unwrap();
    let (agent, body) = upload();
    let mut head = request_to(&format!("https://{NAME}:{}/upload", server.port));
    head.method = Method::PUT;
    let exchange = tokio::spawn(async move { upstream.send(head, body).await });

    agent.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
    agent.send(Err(Box::new(OverLimit))).await.unwrap();

    let error = exchange.await.unwrap().unwrap_err();
    let UpstreamError::RequestBody { host, cause } = &error else {
        panic!("expected RequestBody, got {error:?}");
    };
    assert_eq!(host, NAME);
    assert!(cause.downcast_ref::<OverLimit>().is_some(), "{cause:?}");
    assert_eq!(error.code(), "request_body_error");
    assert_eq!(
        error.to_string(),
        "the request body failed while it was sent to api.test.example: \
         the agent's body is over its limit"
    );
}

#[tokio::test]
async fn plain_http_upstreams_are_reached_too() {
    let mut server = TestUpstream::http(Behaviour::Answer(None)).await;
    let upstream = Upstream::new(UpstreamSettings {
        allowlist: vec!["127.0.0.0/8".parse().unwrap()],
        ..UpstreamSettings::default()
    })
    .unwrap();

    let head = request_to(&format!("http://127.0.0.1:{}/plain", server.port));
    assert_eq!(head.scheme, Scheme::Http);
    let response = upstream.send(head, empty()).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
    let seen = server.seen.recv().await.unwrap();
    assert_eq!(seen.uri, "/plain");
    assert_eq!(seen.headers["host"], format!("127.0.0.1:{}", server.port));
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let upstream = Upstream::new(UpstreamSettings {
        allowlist: vec!["127.0.0.1/32".parse().unwrap()],
        ..UpstreamSettings::default()
    })
    .unwrap();

    let url = format!("http://127.0.0.1:{port}/");
    let error = upstream.send(request_to(&url), empty()).await.unwrap_err();

    let UpstreamError::Connect { host, reason } = &error else {
        panic!("expected Connect, got {error:?}");
    };
    assert_eq!(host, "127.0.0.1");
    assert_eq!(
        reason,
        &format!("127.0.0.1:{port}: Connection refused (os error 111)")
    );
    assert_eq!(error.code(), "upstream_error");
}

#[test]
fn clean_response_headers_drops_cookies_and_hop_by_hop_headers() {
    let mut headers = header_map(&[
        ("content-type", b"application/json"),
        ("set-cookie", b"session=1; HttpOnly"),
        ("set-cookie", b"other=2"),
        ("connection", b"keep-alive, X-Internal-Route"),
        ("x-internal-route", b"pod-7"),
        ("keep-alive", b"timeout=5"),
        ("proxy-connection", b"keep-alive"),
        ("proxy-authenticate", b"Basic realm=\"upstream\""),
        ("transfer-encoding", b"chunked"),
        ("trailer", b"x-checksum"),
        ("te", b"trailers"),
        ("upgrade", b"h2c"),
        ("content-length", b"12"),
        ("x-request-id", b"abc"),
        ("cache-control", b"no-store"),
    ]);

    clean_response_headers(&mut headers);

    let expected = header_map(&[
        ("content-type", b"application/json"),
        ("content-length", b"12"),
        ("x-request-id", b"abc"),
        ("cache-control", b"no-store"),
    ]);
    assert_eq!(headers, expected);
}

#[test]
fn only_te_trailers_survives_request_cleaning() {
    for (te, kept) in [
        (&b"trailers"[..], Some("trailers")),
        (b"gzip, Trailers", Some("trailers")),
        (b"deflate;q=0.5, trailers;q=1", Some("trailers")),
        (b"gzip", None),
        (b"trailersx", None),
    ] {
        let mut headers = header_map(&[("te", te)]);
        clean_request_headers(&mut headers);
        let value = headers.get("te").map(|v| v.to_str().unwrap());
        assert_eq!(value, kept, "{}", String::from_utf8_lossy(te));
    }
}

#[test]
fn resolve_pins_parse_like_curl() {
    let pin = |text: &str| text.parse::<ResolvePin>();
    assert_eq!(
        pin("API.Example.com:443:127.0.0.1"),
        Ok(ResolvePin {
            host: "api.example.com".into(),
            port: 443,
            addr: IpAddr::from([127, 0, 0, 1]),
        })
    );
    assert_eq!(
        pin("api.example.com:8443:[::1]"),
        Ok(ResolvePin {
            host: "api.example.com".into(),
            port: 8443,
            addr: "::1".parse().unwrap(),
        })
    );
    assert_eq!(
        pin("api.example.com:8443:fd00::7").unwrap().addr,
        "fd00::7".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        pin("api.example.com:8443:[::1]").unwrap().to_string(),
        "api.example.com:8443:[::1]"
    );
    assert_eq!(
        pin("api.example.com:443:10.1.2.3").unwrap().to_string(),
        "api.example.com:443:10.1.2.3"
    );
}

#[test]
fn bad_resolve_pins_say_what_is_wrong() {
    let error = |text: &str| text.parse::<ResolvePin>().unwrap_err().to_string();
    assert_eq!(
        error("api.example.com"),
        "invalid --resolve \"api.example.com\": expected HOST:PORT:ADDR, like \
         api.example.com:443:127.0.0.1"
    );
    assert_eq!(
        error("api.example.com:443"),
        "invalid --resolve \"api.example.com:443\": expected HOST:PORT:ADDR, like \
         api.example.com:443:127.0.0.1"
    );
    assert_eq!(
        error(":443:127.0.0.1"),
        "invalid --resolve \":443:127.0.0.1\": the host is empty"
    );
    assert_eq!(
        error("api/x:443:127.0.0.1"),
        "invalid --resolve \"api/x:443:127.0.0.1\": the host must be a DNS name \
         (letters, digits, '-', '_' and '.')"
    );
    for port in ["0", "65536", "+443", "https", ""] {
        assert_eq!(
            error(&format!("api.example.com:{port}:127.0.0.1")),
            format!(
                "invalid --resolve \"api.example.com:{port}:127.0.0.1\": the port must be \
                 a number from 1 to 65535"
            )
        );
    }
    for addr in ["localhost", "127.0.0.1,127.0.0.2", "[127.0.0.1", "", "::1]"] {
        assert_eq!(
            error(&format!("api.example.com:443:{addr}")),
            format!(
                "invalid --resolve \"api.example.com:443:{addr}\": the address must be one \
                 IP address, an IPv6 one in brackets like [::1]"
            )
        );
    }
}

#[test]
fn a_ca_file_may_hold_several_certificates() {
    let (first, second) = (test_pki(), test_pki());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cas.pem");
    let text = format!("{}{}{}", first.ca_pem, first.leaf_key_pem, second.ca_pem);
    std::fs::write(&path, text).unwrap();

    let roots = load_ca_file(&path).unwrap();

    assert_eq!(roots, vec![first.ca, second.ca]);
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    std::fs::write(&path, pki.leaf_key_pem).unwrap();

    let error = load_ca_file(&path).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "the CA file {} holds no certificate; it must be PEM with \
             -----BEGIN CERTIFICATE----- blocks",
            path.display()
        )
    );
}

#[test]
fn a_missing_ca_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.pem");

    let error = load_ca_file(&path).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "cannot read the CA file {}: No such file or directory (os error 2)",
            path.display()
        )
    );
}

/// A fake egress proxy on 127.0.0.1: it reads each CONNECT head, keeps it, and answers
/// with `answer(head)`, then holds the connection until the client closes it.
async fn fake_egress_proxy(
    answer: fn(&str) -> &'static str,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                let reply = answer(&head);
                seen.lock().unwrap().push(head);
                stream.write_all(reply.as_bytes()).await.unwrap();
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            });
        }
    });
    (port, heads)
}

fn through_egress_proxy(proxy_port: u16, lookup: Option<Resolver>) -> Upstream {
    let proxy = EgressProxy::parse(&format!("http://user:secret@127.0.0.1:{proxy_port}")).unwrap();
    Upstream::new(UpstreamSettings {
        allowlist: vec!["127.0.0.0/8".parse().unwrap()],
        resolver: lookup,
        egress_proxy: Some(proxy),
        ..UpstreamSettings::default()
    })
    .unwrap()
}

#[tokio::test]
async fn an_egress_proxy_gets_connect_to_the_checked_address_with_its_credentials() {
    let (port, heads) = fake_egress_proxy(|head| {
        if head.starts_with("CONNECT 127.0.0.1:") {
            "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n"
        } else {
            "HTTP/1.1 200 Connection established\r\n\r\n"
        }
    })
    .await;
    // Two addresses: the proxy cannot reach the first (502), so the second is asked for.
    let lookup: Box<LookupFn> = Box::new(|_, _| {
        Ok(vec![
            "127.0.0.1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
        ])
    });
    let upstream = through_egress_proxy(port, Some(Resolver(lookup.into())));

    upstream
        .connect_tcp("two.test.example", 8443)
        .await
        .unwrap();

    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for (head, address) in heads.iter().zip(["127.0.0.1", "127.0.0.2"]) {
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.starts_with(&format!("connect {address}:8443 http/1.1\r\n")),
            "{head}"
        );
        assert!(
            lower.contains(&format!("host: {address}:8443\r\n")),
            "{head}"
        );
        // base64("user:secret")
        assert!(
            lower.contains("proxy-authorization: basic dxnlcjpzzwnyzxq=\r\n"),
            "{head}"
        );
    }
}

#[tokio::test]
async fn an_egress_proxy_that_speaks_for_the_upstream_is_refused() {
    let (port, _) = fake_egress_proxy(|_| {
        "HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    })
    .await;
    let upstream = through_egress_proxy(port, None);

    let error = upstream.connect_tcp("127.0.0.1", 8443).await.unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "the egress proxy http://127.0.0.1:{port} could not open a tunnel to 127.0.0.1: the \
             proxy sent data after its answer to CONNECT, before the upstream could speak"
        )
    );
    assert_eq!(error.code(), "egress_proxy_error");
}

#[tokio::test]
async fn a_refused_password_is_not_tried_on_the_next_address() {
    let (port, heads) = fake_egress_proxy(
        |_| "HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    let lookup: Box<LookupFn> = Box::new(|_, _| {
        Ok(vec![
            "127.0.0.1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
        ])
    });
    let upstream = through_egress_proxy(port, Some(Resolver(lookup.into())));

    let error = upstream
        .connect_tcp("two.test.example", 8443)
        .await
        .unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "the egress proxy http://127.0.0.1:{port} could not open a tunnel to \
             two.test.example: the proxy refused its credentials (407 Proxy Authentication \
             Required); check the user and password of the egress proxy URL"
        )
    );
    assert!(!format!("{error:?}").contains("secret"));
    assert_eq!(heads.lock().unwrap().len(), 1);
}
