//! A local HTTPS "API" at `https://api.echo.example:8443` that answers every request with a
//! JSON echo of what it received (method, path, headers), so you can watch agent-vault attach
//! a credential without calling a real API. It makes its own CA and prints how to start
//! agent-vault so that it trusts that CA and reaches the echo on 127.0.0.1.
//!
//! Run: `cargo run -p echo-upstream` (Ctrl-C to stop). Port: `ECHO_PORT` (default 8443).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const NAME: &str = "api.echo.example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("ECHO_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8443);
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "echo-upstream CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(vec![NAME.to_owned()])?
        .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))?;
    let ca_file = std::env::temp_dir().join("echo-upstream-ca.pem");
    std::fs::write(&ca_file, ca.pem())?;

    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("echo upstream at https://{NAME}:{port} (listening on 127.0.0.1:{port})");
    println!("start agent-vault so that it trusts this upstream and may reach it on loopback:");
    println!(
        "  AGENT_VAULT_NETWORK_ALLOWLIST=127.0.0.1 ./scripts/server --upstream-ca {} --resolve {NAME}:{port}:127.0.0.1",
        ca_file.display()
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(echo);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn echo(
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into(),
            )
        })
        .collect();
    let body = serde_json::json!({
        "method": request.method().as_str(),
        "path": request.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or("/"),
        "headers": headers,
    });
    let mut response = http::Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
