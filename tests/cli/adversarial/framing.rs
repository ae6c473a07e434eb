//! Adversarial cases 13-19: HTTP framing and headers. The agent writes raw bytes: framing
//! that two parsers could read differently, header tricks that would strip or replace the
//! credential, and its own session material in places other than `Authorization`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use super::{Canary, Tunnel, exchange_in_tunnel};
use crate::proxy::Proxy;
use crate::transparent::{Transparent, tunnel};

/// Write `raw` on a fresh connection to `address` and read until the server closes it (or
/// stops answering for 5 s): every status line it sent, and whether it closed.
fn raw_exchange(address: &str, raw: &[u8]) -> (Vec<u16>, bool) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (statuses(&answer), closed)
}

fn statuses(answer: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(answer)
        .split("\r\n")
        .filter_map(|line| line.strip_prefix("HTTP/1.1 "))
        .filter_map(|rest| rest.get(..3)?.parse().ok())
        .collect()
}

/// A server with a bearer service for `api.test.example` whose credential is the canary.
fn bearer(canary: &Canary) -> Proxy {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": canary.value }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
    ]));
    proxy
}

/// The transfer-encoding tricks of case 13, each a block of header lines.
const TRANSFER_ENCODINGS: [&str; 5] = [
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: chunked, identity\r\n",
    "Transfer-Encoding : chunked\r\n",
    "Transfer-encoding: xchunked\r\n",
    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
];

#[test]
fn case_13_content_length_with_transfer_encoding_smuggles_nothing() {
    let canary = Canary::new("smuggle");
    let proxy = bearer(&canary);
    let port = proxy.upstream.port;
    let auth = format!("Authorization: Bearer {}\r\n", proxy.token);
    for encoding in TRANSFER_ENCODINGS {
        let smuggled = format!(
            "POST /proxy/api.test.example:{port}/x HTTP/1.1\r\nHost: p\r\n{auth}\
             Content-Length: 4\r\n{encoding}\r\n0\r\n\r\n\
             GET /proxy/api.test.example:{port}/admin HTTP/1.1\r\nHost: p\r\n{auth}\r\n"
        );
        let (answers, closed) = raw_exchange(&proxy.server.address, smuggled.as_bytes());
        assert!(closed, "{encoding:?}: the connection stayed open");
        // Refused outright, or the first request alone, re-framed (hyper reads the body by
        // Transfer-Encoding and closes the connection after it).
        assert!(
            answers == [400] || answers == [200],
            "{encoding:?}: {answers:?}"
        );
    }
    // Inside a tunnel, where the smuggled request would go straight upstream.
    let t = Transparent::start();
    t.proxy.credentials(json!({ "ITEMS_KEY": canary.value }));
    let host = format!("Host: api.test.example:{}\r\n", t.proxy.upstream.port);
    for encoding in TRANSFER_ENCODINGS {
        let mut tls: Tunnel =
            tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
        let smuggled = format!(
            "POST /x HTTP/1.1\r\n{host}Content-Length: 4\r\n{encoding}\r\n0\r\n\r\n\
             GET /admin HTTP/1.1\r\n{host}\r\n"
        );
        let first = exchange_in_tunnel(&mut tls, smuggled.as_bytes());
        assert!(
            matches!(first, Ok((400 | 200, _)) | Err(_)),
            "{encoding:?}: {first:?}"
        );
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest);
        assert_eq!(
            statuses(&rest),
            Vec::<u16>::new(),
            "{encoding:?}: a second answer"
        );
    }
    for upstream in [&proxy.upstream, &t.proxy.upstream] {
        for received in upstream.received() {
            assert!(
                !received.target.contains("admin"),
                "smuggled: {}",
                received.target
            );
            assert_eq!(received.method, "POST");
            assert!(
                received.body.is_empty(),
                "re-framed with its real, empty body"
            );
        }
    }
}

#[test]
fn case_14_content_length_games_are_refused_and_leftovers_are_not_a_request() {
    let canary = Canary::new("length");
    let proxy = bearer(&canary);
    let port = proxy.upstream.port;
    let auth = format!("Authorization: Bearer {}\r\n", proxy.token);
    for lengths in [
        "Content-Length: 4\r\nContent-Length: 40\r\n",
        "Content-Length: +4\r\n",
        "Content-Length: 4 4\r\n",
        "Content-Length: 0x4\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 4, 40\r\n",
    ] {
        let request = format!(
            "POST /proxy/api.test.example:{port}/x HTTP/1.1\r\nHost: p\r\n{auth}{lengths}\r\nbody"
        );
        let (answers, closed) = raw_exchange(&proxy.server.address, request.as_bytes());
        assert_eq!(answers, [400], "{lengths:?}");
        assert!(closed, "{lengths:?}: the connection stayed open");
    }
    // `Content-Length: 0` with bytes after it: those bytes are the next request on the
    // connection, judged on their own; here they are not one, so the connection closes.
    let request = format!(
        "POST /proxy/api.test.example:{port}/x HTTP/1.1\r\nHost: p\r\n{auth}Content-Length: 0\r\n\r\n\
         XYZ not a request\r\n\r\n"
    );
    let (answers, closed) = raw_exchange(&proxy.server.address, request.as_bytes());
    assert!(answers == [200] || answers == [200, 400], "{answers:?}");
    assert!(closed);
    let received = proxy.upstream.received();
    assert_eq!(received.len(), 1, "only the well-framed request went out");
    assert!(received[0].body.is_empty());
}

#[test]
fn case_15_raw_injection_in_header_values_is_refused() {
    // A CR LF inside a value cannot be written in HTTP/1.1 (it ends the field) and HTTP/2
    // clients refuse to send one; what can be written is a bare LF, an obs-fold or a NUL.
    let canary = Canary::new("inject");
    let proxy = bearer(&canary);
    let port = proxy.upstream.port;
    let auth = format!("Authorization: Bearer {}\r\n", proxy.token);
    for injected in [
        "X-A: a\nAuthorization: Bearer attacker\r\n",
        "X-A: a\r\n b-folded\r\n",
        "X-A: a\0b\r\n",
        "X-A\n: a\r\n",
    ] {
        let request = format!(
            "GET /proxy/api.test.example:{port}/x HTTP/1.1\r\nHost: p\r\n{auth}{injected}\r\n"
        );
        let (answers, _) = raw_exchange(&proxy.server.address, request.as_bytes());
        assert_eq!(answers, [400], "{injected:?}");
    }
    assert!(
        proxy.upstream.received().is_empty(),
        "an injected request went out"
    );
}

#[test]
fn case_16_the_agents_own_credential_header_never_reaches_the_upstream() {
    let canary = Canary::new("agentheader");
    let t = Transparent::start();
    t.proxy.credentials(json!({ "ITEMS_KEY": canary.value }));
    let host = format!("Host: api.test.example:{}\r\n", t.proxy.upstream.port);
    let injected = format!("Bearer {}", canary.value);
    // Bearer: the agent's own Authorization, in both cases and twice.
    for headers in [
        "Authorization: Bearer attacker\r\n",
        "AUTHORIZATION: Bearer attacker\r\nauthorization: Bearer attacker-2\r\n",
    ] {
        let mut tls = tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
        let raw = format!("GET /x HTTP/1.1\r\n{host}{headers}\r\n");
        assert_eq!(exchange_in_tunnel(&mut tls, raw.as_bytes()).unwrap().0, 200);
        assert_eq!(
            t.proxy.upstream.last().header("authorization"),
            [injected.as_str()]
        );
    }
    // The same over HTTP/2.
    let request = http::Request::get(format!(
        "https://api.test.example:{}/h2",
        t.proxy.upstream.port
    ))
    .header("authorization", "Bearer attacker")
    .header("authorization", "Bearer attacker-2")
    .body(Default::default())
    .unwrap();
    assert_eq!(super::h2_in_tunnel(&t, request).0, 200);
    assert_eq!(
        t.proxy.upstream.last().header("authorization"),
        [injected.as_str()]
    );
    // An api-key service: the agent's X-Api-Key, twice.
    t.proxy.services(json!([{
        "name": "items", "host": "api.test.example",
        "auth": { "type": "api-key", "key": "ITEMS_KEY", "header": "X-Api-Key" },
    }]));
    let mut tls = tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
    let raw =
        format!("GET /x HTTP/1.1\r\n{host}X-Api-Key: attacker\r\nx-api-key: attacker-2\r\n\r\n");
    assert_eq!(exchange_in_tunnel(&mut tls, raw.as_bytes()).unwrap().0, 200);
    assert_eq!(
        t.proxy.upstream.last().header("x-api-key"),
        [canary.value.as_str()]
    );
}

#[test]
fn case_17_headers_named_in_connection_are_dropped_before_the_credential_is_attached() {
    let canary = Canary::new("connection");
    let t = Transparent::start();
    t.proxy.credentials(json!({ "ITEMS_KEY": canary.value }));
    let host = format!("Host: api.test.example:{}\r\n", t.proxy.upstream.port);
    for (service, header) in [
        (
            json!({ "type": "bearer", "token": "ITEMS_KEY" }),
            "authorization",
        ),
        (
            json!({ "type": "api-key", "key": "ITEMS_KEY", "header": "X-Api-Key" }),
            "x-api-key",
        ),
    ] {
        t.proxy
            .services(json!([{ "name": "items", "host": "api.test.example", "auth": service }]));
        let mut tls = tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
        let raw = format!(
            "GET /x HTTP/1.1\r\n{host}Connection: close, Authorization, X-Api-Key, Proxy-Authorization\r\n\
             X-Api-Key: attacker\r\nAuthorization: Bearer attacker\r\n\r\n"
        );
        assert_eq!(exchange_in_tunnel(&mut tls, raw.as_bytes()).unwrap().0, 200);
        let received = t.proxy.upstream.last();
        let value = received.header(header);
        assert_eq!(value.len(), 1, "{header}: {value:?}");
        assert!(value[0].contains(&canary.value), "{header}: {value:?}");
        assert!(received.header("proxy-authorization").is_empty());
        assert!(
            !format!("{received:?}").contains("attacker"),
            "{received:?}"
        );
    }
}

#[test]
fn case_18_the_session_token_goes_nowhere_upstream() {
    let canary = Canary::new("session");
    let t = Transparent::start();
    t.proxy.credentials(json!({ "ITEMS_KEY": canary.value }));
    let token = t.proxy.token.clone();
    let port = t.proxy.upstream.port;
    // The explicit ingress: in X-Vault, a cookie (its own and the console's), the query.
    let answer = t.proxy.call(
        "GET",
        "api.test.example",
        &format!("/x?token={token}&keep=1"),
        &[
            ("x-vault", "default"),
            ("cookie", &format!("sid={token}; theme=dark")),
            ("cookie", &format!("av_session={token}")),
            ("x-forwarded-token", &token),
        ],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    // The transparent ingress: Proxy-Authorization, and the same places inside the tunnel.
    let mut tls = tunnel(&t, &token, "api.test.example", "api.test.example").unwrap();
    let raw = format!(
        "GET /y?session={token}&keep=2 HTTP/1.1\r\nHost: api.test.example:{port}\r\n\
         Cookie: av_session={token}; lang=en\r\nX-Vault: default\r\n\r\n"
    );
    assert_eq!(exchange_in_tunnel(&mut tls, raw.as_bytes()).unwrap().0, 200);
    // HTTP/2: the query and a cookie.
    let request = http::Request::get(format!(
        "https://api.test.example:{port}/z?t={token}&keep=3"
    ))
    .header("cookie", format!("a=1; sid={token}"))
    .body(Default::default())
    .unwrap();
    assert_eq!(super::h2_in_tunnel(&t, request).0, 200);
    let received = t.proxy.upstream.received();
    assert_eq!(received.len(), 3);
    assert_eq!(received[2].target, "/z?keep=3");
    assert_eq!(received[2].header("cookie"), ["a=1"]);
    assert_eq!(received[0].target, "/x?keep=1");
    assert_eq!(received[0].header("cookie"), ["theme=dark"]);
    assert_eq!(received[1].target, "/y?keep=2");
    assert_eq!(received[1].header("cookie"), ["lang=en"]);
    for request in &received {
        let seen = format!("{request:?}");
        assert!(
            !seen.contains(&token),
            "the session token went upstream: {seen}"
        );
        assert!(request.header("x-vault").is_empty());
        assert!(request.header("proxy-authorization").is_empty());
    }
}

#[test]
fn case_19_oversized_heads_are_refused_within_the_header_timeout() {
    // In `tests/cli/hardening.rs`, with the head limits it exercises.
    crate::hardening::oversized_request_heads_are_refused_on_both_listeners_and_inside_a_tunnel();
}
