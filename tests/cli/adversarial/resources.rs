//! Adversarial cases 20-22: resource abuse. Case 20 runs the slowloris crowd of
//! `tests/cli/hardening.rs`, next to the listener limits it exercises. Bodies larger than the limits, in both
//! directions, and compressed answers built to explode. (Memory figures — RSS flat while 10
//! GiB stream through — are measured by `bench/`, not asserted here: tests check behaviour.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use super::Canary;
use crate::proxy::Proxy;

/// `POST` `total` bytes to `target` in 64 KiB chunks from a thread (the server may stop
/// reading), returning the raw answer.
fn chunked_upload(proxy: &Proxy, target: &str, headers: &str, total: usize) -> String {
    let mut stream = TcpStream::connect(&proxy.server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {}\r\n{headers}\
         Transfer-Encoding: chunked\r\n\r\n",
        proxy.token
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if writer.write_all(&frame).is_err() {
                return;
            }
            sent += chunk.len();
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    drop(stream);
    let _ = sending.join();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn case_20_slowloris_connections_are_closed_while_agents_are_served() {
    crate::hardening::a_slowloris_crowd_on_both_listeners_is_closed_while_agents_are_served();
}

#[test]
fn case_21_an_oversized_upload_is_refused_and_never_arrives_whole() {
    let canary = Canary::new("upload");
    let proxy = Proxy::start_with(
        &["--max-request-bytes", "1048576"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": canary.value }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
        { "name": "subst", "host": "uploads.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" },
          "substitutions": [{ "key": "API_TOKEN", "placeholder": "__api_token__", "in": ["body"] }] },
    ]));
    let eight_mib = 8 * 1024 * 1024;
    // A declared length over the cap: refused before anything is sent.
    let mut stream = TcpStream::connect(&proxy.server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {} HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {}\r\nContent-Length: {eight_mib}\r\n\r\n",
        proxy.target("api.test.example", "/upload"),
        proxy.token
    )
    .unwrap();
    let mut declared = [0u8; 512];
    let n = stream.read(&mut declared).unwrap();
    let declared = String::from_utf8_lossy(&declared[..n]);
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(declared.contains("request_too_large"), "{declared}");
    // A chunked upload that crosses the cap, with and without body substitution.
    for name in ["api.test.example", "uploads.test.example"] {
        let answer = chunked_upload(
            &proxy,
            &proxy.target(name, "/upload"),
            "Content-Type: text/plain\r\n",
            eight_mib,
        );
        assert!(answer.starts_with("HTTP/1.1 413"), "{name}: {answer}");
        assert!(answer.contains("request_too_large"), "{name}: {answer}");
    }
    // Whatever the upstream got was cut short, never a body presented as complete.
    for received in proxy.upstream.received() {
        assert!(
            received.body.is_empty() || received.body.len() == eight_mib,
            "a truncated body of {} bytes arrived as a whole request",
            received.body.len()
        );
        assert_ne!(received.body.len(), eight_mib, "the upload went through");
    }
}

#[test]
fn case_22_response_bombs_are_cut_off_or_passed_unread() {
    let canary = Canary::new("bomb");
    let proxy = Proxy::start_with(
        &["--max-response-bytes", "1048576"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "API_TOKEN": canary.value }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
        { "name": "packed", "host": "uploads.test.example", "compressed_responses": "pass",
          "auth": { "type": "bearer", "token": "API_TOKEN" } },
    ]));
    // An endless answer: the agent gets at most the cap and an aborted body, never a clean end.
    let mut stream = TcpStream::connect(&proxy.server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {}\r\n\r\n",
        proxy.target("api.test.example", "/endless"),
        proxy.token
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        raw.len() < 1024 * 1024 + 256 * 1024,
        "{} bytes relayed",
        raw.len()
    );
    assert!(
        !raw.ends_with(b"0\r\n\r\n"),
        "the cut-off body ended cleanly"
    );
    // A gzip bomb: refused unread by default, passed on unread (never inflated) on request.
    let refused = proxy.call("GET", "api.test.example", "/gzip-bomb", &[]);
    assert_eq!(refused.proxy_error(), (502, "compressed_response".into()));
    let passed = proxy.call("GET", "uploads.test.example", "/gzip-bomb", &[]);
    assert_eq!(passed.status, 200);
    assert_eq!(passed.header("content-encoding"), Some("gzip"));
    assert!(passed.body.starts_with(&[0x1f, 0x8b]), "still gzip");
    assert!(
        passed.body.len() < 100_000,
        "{} bytes: inflated?",
        passed.body.len()
    );
}
