//! Adversarial cases 11-12: path scopes and methods. A service that allows only part of an
//! API must not be talked into another part by a spelling of the path, and methods that
//! echo the request or open tunnels never carry the credential.

use serde_json::json;

use super::{Canary, Tunnel, exchange_in_tunnel, h2_in_tunnel};
use crate::transparent::{Transparent, tunnel};

/// The checklist's bypass attempts against a scope of `/repos/org/*`, and a few more.
const BYPASSES: [&str; 14] = [
    "/repos/org/../../admin",
    "/repos/org/%2e%2e/%2e%2e/admin",
    "/repos/org/..%2fadmin",
    "/repos/org/%252e%252e/admin",
    "/repos/org/x/..;/admin",
    "//repos/org/../../admin",
    "/repos/org/%00/x",
    "/REPOS/org/x",
    "/repos/org/%c0%ae%c0%ae/admin",
    "/repos/org/.%2E/admin",
    "/repos/org%5c..%5cadmin",
    "/repos/org/x/.;/../admin",
    "/repos/org/%2e%2E;x/admin",
    "/admin",
];

/// A transparent-proxy server whose service for `api.test.example` allows `/repos/org/*`.
fn scoped(canary: &Canary) -> Transparent {
    let t = Transparent::start();
    t.proxy.credentials(json!({ "ITEMS_KEY": canary.value }));
    t.proxy.services(json!([{
        "name": "items", "host": "api.test.example",
        "auth": { "type": "bearer", "token": "ITEMS_KEY" },
        "allow": [{ "methods": ["*"], "paths": ["/repos/org/*"] }],
    }]));
    t
}

fn open(t: &Transparent) -> Tunnel {
    tunnel(t, &t.proxy.token, "api.test.example", "api.test.example").unwrap()
}

fn refused(status: u16, body: &[u8]) -> bool {
    let code = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code.as_str()) == (400, "bad_request")
        || (status, code.as_str()) == (403, "path_not_allowed")
}

#[test]
fn case_11_no_spelling_of_a_path_leaves_the_scope_on_either_ingress_or_protocol() {
    let canary = Canary::new("paths");
    let t = scoped(&canary);
    let port = t.proxy.upstream.port;
    // Within the scope, a spelling with doubled slashes passes and goes out as written.
    let fine = t
        .proxy
        .call("GET", "api.test.example", "/repos/org//app", &[]);
    assert_eq!(fine.status, 200, "{fine:?}");
    assert_eq!(t.proxy.upstream.last().target, "/repos/org//app");
    let delivered = t.proxy.upstream.received().len();

    for path in BYPASSES {
        // The explicit ingress.
        let answer = t.proxy.call("GET", "api.test.example", path, &[]);
        assert!(
            refused(answer.status, &answer.body),
            "explicit {path}: {answer:?}"
        );
        // HTTP/1.1 inside a tunnel.
        let mut tls = open(&t);
        let raw = format!("GET {path} HTTP/1.1\r\nHost: api.test.example:{port}\r\n\r\n");
        let (status, body) = exchange_in_tunnel(&mut tls, raw.as_bytes()).unwrap();
        assert!(refused(status, &body), "tunnel {path}: {status}");
        // HTTP/2 inside a tunnel.
        let uri = format!("https://api.test.example:{port}{path}");
        if let Ok(request) = http::Request::get(uri).body(Default::default()) {
            let (status, body) = h2_in_tunnel(&t, request);
            assert!(refused(status, &body), "h2 {path}: {status}");
        }
    }
    let received = t.proxy.upstream.received();
    assert_eq!(received.len(), delivered, "a bypass reached the upstream");
    for request in received {
        assert!(
            request.target.starts_with("/repos/org/"),
            "{}",
            request.target
        );
    }
}

#[test]
fn case_12_trace_track_nested_connect_and_options_star_never_carry_the_credential() {
    let canary = Canary::new("methods");
    let t = scoped(&canary);
    let port = t.proxy.upstream.port;
    let delivered = t.proxy.upstream.received().len();
    for method in ["TRACE", "TRACK", "PROPFIND"] {
        let answer = t
            .proxy
            .call(method, "api.test.example", "/repos/org/x", &[]);
        assert_eq!(
            answer.proxy_error(),
            (405, "method_not_allowed".into()),
            "{method}"
        );
        let mut tls = open(&t);
        let raw =
            format!("{method} /repos/org/x HTTP/1.1\r\nHost: api.test.example:{port}\r\n\r\n");
        let (status, _) = exchange_in_tunnel(&mut tls, raw.as_bytes()).unwrap();
        assert_eq!(status, 405, "{method} in a tunnel");
    }
    // A CONNECT inside the tunnel: to the tunnel's own host, and to another.
    for authority in [
        format!("api.test.example:{port}"),
        "other.test.example:443".to_owned(),
    ] {
        let mut tls = open(&t);
        let raw = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        let (status, _) = exchange_in_tunnel(&mut tls, raw.as_bytes()).unwrap();
        assert!(
            status == 405 || status == 421,
            "nested CONNECT {authority}: {status}"
        );
    }
    // `OPTIONS *` names no path: refused rather than sent with the credential.
    let mut tls = open(&t);
    let raw = format!("OPTIONS * HTTP/1.1\r\nHost: api.test.example:{port}\r\n\r\n");
    let (status, _) = exchange_in_tunnel(&mut tls, raw.as_bytes()).unwrap();
    assert_eq!(status, 400, "OPTIONS *");
    assert_eq!(
        t.proxy.upstream.received().len(),
        delivered,
        "a refused method went out"
    );

    // A method outside the standard set goes out only when a rule names it.
    t.proxy.services(json!([{
        "name": "items", "host": "api.test.example",
        "auth": { "type": "bearer", "token": "ITEMS_KEY" },
        "allow": [{ "methods": ["GET", "PROPFIND"], "paths": ["/repos/org/*"] }],
    }]));
    let answer = t
        .proxy
        .call("PROPFIND", "api.test.example", "/repos/org/x", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = t.proxy.upstream.last();
    assert_eq!(received.method, "PROPFIND");
    assert_eq!(
        received.header("authorization"),
        [format!("Bearer {}", canary.value)]
    );
}
