//! Adversarial cases 27-28: isolation between vaults (a session of one vault reaching for
//! another's credential, a ciphertext moved between rows by someone with the database file),
//! and upstreams whose TLS cannot be trusted.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::Canary;
use crate::proxy::Proxy;

#[test]
fn case_27_a_vault_never_reaches_another_vaults_credential() {
    let a = Canary::new("vault_a");
    let b = Canary::new("vault_b");
    let proxy = Proxy::start();
    proxy.credentials(json!({ "A_TOKEN": a.value }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "A_TOKEN" } },
    ]));
    proxy.api("POST", "/v1/vaults", json!({ "name": "other" }));
    proxy.api(
        "POST",
        "/v1/credentials",
        json!({ "vault": "other", "credentials": { "B_TOKEN": b.value } }),
    );
    proxy.api(
        "PUT",
        "/v1/vaults/other/services",
        json!({ "services": [
            { "name": "uploads", "host": "uploads.test.example", "auth": { "type": "bearer", "token": "B_TOKEN" } },
        ] }),
    );
    // A session of the default vault asks for the other vault's host.
    let answer = proxy.call("GET", "uploads.test.example", "/x", &[]);
    assert_eq!(answer.proxy_error(), (403, "forbidden".into()));
    b.assert_absent(&answer.body, "the agent");
    assert!(proxy.upstream.received().is_empty());

    // Someone with the database file moves vault A's sealed value into vault B's row: it
    // does not open there (the vault and key are bound into the ciphertext), and nothing goes
    // out without it.
    crate::store_rows::Rows::open(&proxy.data).execute(
        "UPDATE credentials SET
            nonce = (SELECT nonce FROM credentials WHERE key = 'A_TOKEN'),
            ciphertext = (SELECT ciphertext FROM credentials WHERE key = 'A_TOKEN')
         WHERE key = 'B_TOKEN'",
        &[],
    );
    // A write through the API drops the proxy's cache of the vault.
    proxy.api(
        "POST",
        "/v1/credentials",
        json!({ "vault": "other", "credentials": { "NUDGE": "nudge" } }),
    );
    let (_, session) = proxy.server.call(
        "POST",
        "/v1/sessions",
        Some(&proxy.owner),
        Some(&json!({ "vault": "other" })),
    );
    let other = session["token"].as_str().unwrap();
    let answer = proxy.send(
        "GET",
        &proxy.target("uploads.test.example", "/x"),
        &[("authorization", &format!("Bearer {other}"))],
        b"",
    );
    assert_eq!(answer.proxy_error(), (502, "credential_unreadable".into()));
    a.assert_absent(&answer.body, "the agent");
    assert!(
        proxy.upstream.received().is_empty(),
        "a request went out without its credential"
    );
    // The integrity alert: an error in the server's log naming the key, never a value.
    let alert = proxy
        .server
        .wait_for_log(&["ERROR", "B_TOKEN", "cannot be decrypted"]);
    a.assert_absent(alert.as_bytes(), "the server log");
}

/// A TLS server on 127.0.0.1 that counts the bytes of application data it ever reads (a
/// request that got through).
struct TlsWitness {
    port: u16,
    read: Arc<AtomicUsize>,
}

impl TlsWitness {
    fn start(
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: &rcgen::KeyPair,
    ) -> TlsWitness {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            chain,
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let read = Arc::new(AtomicUsize::new(0));
        let counter = read.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut buffer = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            }
        });
        TlsWitness { port, read }
    }
}

/// A TLS 1.0/1.1-only server (Python's ssl module), printing each byte count it reads.
fn old_tls_server(cert: &std::path::Path, key: &std::path::Path) -> (u16, std::process::Child) {
    let script = r#"
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.minimum_version = ssl.TLSVersion.TLSv1
context.maximum_version = ssl.TLSVersion.TLSv1_1
context.set_ciphers("DEFAULT:@SECLEVEL=0")
context.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    connection, _ = listener.accept()
    try:
        with context.wrap_socket(connection, server_side=True) as tls:
            data = tls.recv(65536)
            print("read", len(data), flush=True)
    except (ssl.SSLError, OSError) as error:
        print("handshake failed", error, flush=True)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-W", "ignore", "-c", script])
        .arg(cert)
        .arg(key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let port = line.trim().parse().unwrap();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        assert!(
            !rest.contains("read"),
            "the TLS 1.1 server read a request: {rest}"
        );
    });
    (port, child)
}

#[test]
fn case_28_an_upstream_whose_tls_cannot_be_trusted_gets_no_request() {
    let canary = Canary::new("tls");
    let dir = tempfile::tempdir().unwrap();
    // A CA the proxy trusts (with --upstream-ca), and what it signs.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: &[&str], expired: bool| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        (params.signed_by(&key, &issuer).unwrap(), key)
    };
    let self_key = rcgen::KeyPair::generate().unwrap();
    let self_signed = rcgen::CertificateParams::new(vec!["selfsigned.test.example".to_owned()])
        .unwrap()
        .self_signed(&self_key)
        .unwrap();
    let (wrong, wrong_key) = leaf(&["somebody-else.test.example"], false);
    let (expired, expired_key) = leaf(&["expired.test.example"], true);
    let (old, old_key) = leaf(&["oldtls.test.example"], false);
    let witnesses = [
        (
            "selfsigned.test.example",
            TlsWitness::start(vec![self_signed.der().clone()], &self_key),
        ),
        (
            "wrongname.test.example",
            TlsWitness::start(vec![wrong.der().clone()], &wrong_key),
        ),
        (
            "expired.test.example",
            TlsWitness::start(vec![expired.der().clone()], &expired_key),
        ),
    ];
    let (old_cert, old_key_file) = (dir.path().join("old.pem"), dir.path().join("old.key"));
    std::fs::write(&old_cert, old.pem()).unwrap();
    std::fs::write(&old_key_file, old_key.serialize_pem()).unwrap();
    let (old_port, mut old_server) = old_tls_server(&old_cert, &old_key_file);

    let ports: Vec<u16> = witnesses
        .iter()
        .map(|(_, witness)| witness.port)
        .chain([old_port])
        .collect();
    let pins: Vec<String> = witnesses
        .iter()
        .map(|(name, _)| *name)
        .chain(["oldtls.test.example"])
        .zip(&ports)
        .map(|(name, port)| format!("{name}:{port}:127.0.0.1"))
        .collect();
    let mut args = vec!["--upstream-ca", ca_file.to_str().unwrap()];
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    let proxy = Proxy::start_with(&args, &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")]);
    proxy.credentials(json!({ "TLS_KEY": canary.value }));
    let names = ["selfsigned", "wrongname", "expired", "oldtls"];
    let services: Vec<_> = names
        .iter()
        .map(|name| json!({ "name": name, "host": format!("{name}.test.example"), "auth": { "type": "bearer", "token": "TLS_KEY" } }))
        .collect();
    proxy.services(json!(services));
    let auth = format!("Bearer {}", proxy.token);
    for (name, port) in names.iter().zip(&ports) {
        let answer = proxy.send(
            "GET",
            &format!("/proxy/{name}.test.example:{port}/x"),
            &[("authorization", &auth)],
            b"",
        );
        assert_eq!(
            answer.proxy_error(),
            (502, "upstream_error".into()),
            "{name}"
        );
        let message = answer.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("TLS handshake"), "{name}: {message}");
        canary.assert_absent(&answer.body, "the agent");
    }
    for (name, witness) in &witnesses {
        assert_eq!(
            witness.read.load(Ordering::SeqCst),
            0,
            "{name} read request bytes"
        );
    }
    let _ = old_server.kill();
}
