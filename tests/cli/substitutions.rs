//! Placeholder substitution and echo redaction, end to end: the agent writes a service's
//! placeholder where the credential goes (path, query, header, body, WebSocket text) and the
//! recording upstream gets the value, escaped for where it lands; an upstream that echoes the
//! request back never hands a credential value to the agent. Both ingresses.

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::proxy::Proxy;
use crate::transparent::{Transparent, read_head, tunnel};
use crate::upstream::{client_frame, read_frame};

fn passthrough_with(substitutions: Value) -> Value {
    json!([{
        "name": "sub", "host": "api.test.example", "auth": { "type": "passthrough" },
        "substitutions": substitutions,
    }])
}

#[test]
fn a_path_placeholder_becomes_the_escaped_value_through_either_ingress() {
    let t = Transparent::start();
    t.proxy
        .credentials(json!({ "SID": "AC12345", "ODD": "a/b c" }));
    t.proxy.services(passthrough_with(json!([
        { "key": "SID", "placeholder": "__account_sid__", "in": ["path"] },
        { "key": "ODD", "placeholder": "__odd__", "in": ["path"] },
    ])));
    let path = "/Accounts/__account_sid__/M.json?id=__account_sid__";
    let answer = t.proxy.call("GET", "api.test.example", path, &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let want = "/Accounts/AC12345/M.json?id=__account_sid__";
    assert_eq!(t.proxy.upstream.last().target, want);

    let (code, _, stderr) = t.curl(&t.trust(), &t.url("api.test.example", path));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(t.proxy.upstream.last().target, want);

    let answer = t
        .proxy
        .call("GET", "api.test.example", "/files/__odd__", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(t.proxy.upstream.last().target, "/files/a%2Fb%20c");
}

#[test]
fn a_query_placeholder_is_query_escaped_and_matched_case_sensitively() {
    let t = Transparent::start();
    t.proxy.credentials(json!({ "SID": "x&y=z" }));
    t.proxy.services(passthrough_with(json!([
        { "key": "SID", "placeholder": "__SID__", "in": ["query"] },
    ])));
    let path = "/lookup/__SID__?a=__SID__&b=__sid__";
    let want = "/lookup/__SID__?a=x%26y%3Dz&b=__sid__";
    let answer = t.proxy.call("GET", "api.test.example", path, &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(t.proxy.upstream.last().target, want);
    let (code, _, stderr) = t.curl(&t.trust(), &t.url("api.test.example", path));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(t.proxy.upstream.last().target, want);
}

#[test]
fn a_header_value_with_a_line_break_stops_the_request_before_the_upstream() {
    let t = Transparent::start();
    let proxy = &t.proxy;
    proxy.credentials(json!({ "KEY": "good-value-1", "BROKEN": "a\r\nX-Injected: 1" }));
    proxy.services(json!([{
        "name": "sub", "host": "api.test.example", "auth": { "type": "passthrough" },
        "substitutions": [
            { "key": "KEY", "placeholder": "__key__", "in": ["header"] },
            { "key": "BROKEN", "placeholder": "__broken__", "in": ["header"] },
        ],
    }]));
    let answer = proxy.call(
        "GET",
        "api.test.example",
        "/h",
        &[("x-api-key", "Key __key__")],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        proxy.upstream.last().header("x-api-key"),
        ["Key good-value-1"]
    );

    let before = proxy.upstream.received().len();
    let answer = proxy.call(
        "GET",
        "api.test.example",
        "/h",
        &[("x-api-key", "__broken__")],
    );
    assert_eq!(answer.proxy_error(), (502, "substitution_error".into()));
    let message = answer.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("\"BROKEN\"") && !message.contains("Injected"),
        "{message}"
    );
    assert_eq!(proxy.upstream.received().len(), before);

    let mut args = t.trust();
    args.extend(["-H", "x-api-key: __broken__", "-w", "%{http_code}"]);
    let (_, stdout, _) = t.curl(&args, &t.url("api.test.example", "/h"));
    assert!(
        stdout.contains("substitution_error") && stdout.ends_with("502"),
        "{stdout}"
    );
    assert_eq!(proxy.upstream.received().len(), before);
}

/// Found by the `decision` fuzz target: a placeholder in a header the proxy protects (framing,
/// forwarding) was filled with the credential. Those keep what was sent.
#[test]
fn protected_headers_keep_the_placeholder_text() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "KEY": "good-value-1" }));
    proxy.services(passthrough_with(json!([
        { "key": "KEY", "placeholder": "__key__", "in": ["header"] },
    ])));
    let answer = proxy.call(
        "GET",
        "api.test.example",
        "/h",
        &[
            ("x-api-key", "__key__"),
            ("x-forwarded-host", "__key__.example.net"),
            ("forwarded", "host=__key__"),
        ],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = proxy.upstream.last();
    assert_eq!(received.header("x-api-key"), ["good-value-1"]);
    assert_eq!(received.header("x-forwarded-host"), ["__key__.example.net"]);
    assert_eq!(received.header("forwarded"), ["host=__key__"]);
}

/// A request with a body through the explicit ingress.
fn post(proxy: &Proxy, path: &str, content_type: &str, body: &[u8]) -> crate::proxy::Answer {
    let auth = format!("Bearer {}", proxy.token);
    proxy.send(
        "POST",
        &proxy.target("api.test.example", path),
        &[("authorization", &auth), ("content-type", content_type)],
        body,
    )
}

#[test]
fn a_body_placeholder_is_escaped_for_the_content_type_and_the_length_follows() {
    let t = Transparent::start();
    let proxy = &t.proxy;
    proxy.credentials(json!({ "SEC": "a\"b c" }));
    proxy.services(passthrough_with(json!([
        { "key": "SEC", "placeholder": "__sec__", "in": ["body"] },
    ])));
    let sent = |path: &str, content_type: &str, body: &[u8]| {
        let answer = post(proxy, path, content_type, body);
        assert_eq!(answer.status, 200, "{answer:?}");
        proxy.upstream.last()
    };
    let json_body = sent("/json", "application/json", br#"{"s":"__sec__"}"#);
    assert_eq!(json_body.body, br#"{"s":"a\"b c"}"#);
    assert_eq!(json_body.header("content-length"), ["14"]);
    let form = sent(
        "/form",
        "application/x-www-form-urlencoded",
        b"s=__sec__&t=1",
    );
    assert_eq!(form.body, b"s=a%22b%20c&t=1");
    assert_eq!(form.header("content-length"), ["15"]);
    let raw = sent("/raw", "text/plain", b"__sec__");
    assert_eq!(raw.body, b"a\"b c");

    let multipart =
        b"--x\r\ncontent-disposition: form-data; name=\"s\"\r\n\r\n__sec__\r\n--x--\r\n";
    let untouched = sent("/multipart", "multipart/form-data; boundary=x", multipart);
    assert_eq!(untouched.body, multipart);
    let auth = format!("Bearer {}", proxy.token);
    let answer = proxy.send(
        "POST",
        &proxy.target("api.test.example", "/gzip"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        br#"{"s":"__sec__"}"#,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(proxy.upstream.last().body, br#"{"s":"__sec__"}"#);

    // Through the transparent ingress, by curl.
    let mut args = t.trust();
    args.extend([
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"s":"__sec__"}"#,
    ]);
    let (code, _, stderr) = t.curl(&args, &t.url("api.test.example", "/json"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(proxy.upstream.last().body, br#"{"s":"a\"b c"}"#);
}

#[test]
fn a_large_body_streams_through_with_every_placeholder_replaced() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "SEC": "the-real-value" }));
    proxy.services(passthrough_with(json!([
        { "key": "SEC", "placeholder": "__sec__", "in": ["body"] },
    ])));
    // 3 MiB, over the size rewritten in memory, with placeholders at awkward offsets.
    let mut body = Vec::new();
    let mut want = Vec::new();
    for block in 0..48 {
        let filler = vec![b'a' + (block % 26) as u8; 65_536 - 7 * (block % 3)];
        body.extend_from_slice(&filler);
        want.extend_from_slice(&filler);
        body.extend_from_slice(b"__sec__");
        want.extend_from_slice(b"the-real-value");
    }
    let answer = post(&proxy, "/upload", "application/octet-stream", &body);
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = proxy.upstream.last();
    assert_eq!(received.body.len(), want.len());
    assert!(received.body == want, "the streamed body differs");
    assert!(received.header("content-length").is_empty());
}

#[test]
fn placeholders_are_checked_when_services_are_written() {
    let proxy = Proxy::start();
    let refused = |substitution: Value| {
        let (status, answer) = proxy.server.call(
            "PUT",
            "/v1/vaults/default/services",
            Some(&proxy.owner),
            Some(&json!({ "services": passthrough_with(json!([substitution])) })),
        );
        assert_eq!(status, 400, "{substitution}: {answer}");
        answer["error"].as_str().unwrap_or_default().to_owned()
    };
    for placeholder in ["account_sid", "abc", "____", "__a b__"] {
        let message = refused(json!({ "key": "SID", "placeholder": placeholder }));
        assert!(message.contains("placeholder"), "{placeholder}: {message}");
    }
    let message = refused(json!({ "key": "SID", "placeholder": "__sid__", "in": ["cookie"] }));
    assert!(
        message.contains("invalid substitution surface \"cookie\""),
        "{message}"
    );
    for placeholder in ["__account_sid__", "sid.value", "~sid~"] {
        proxy.services(passthrough_with(json!([
            { "key": "SID", "placeholder": placeholder }
        ])));
    }
    let services = proxy.api("GET", "/v1/vaults/default/services", json!(null));
    assert_eq!(
        services["services"][0]["substitutions"],
        json!([{ "key": "SID", "placeholder": "~sid~", "in": ["path", "query"] }])
    );
    // Agents learn the placeholders from /discover.
    let auth = format!("Bearer {}", proxy.token);
    let discovered = proxy.send("GET", "/discover", &[("authorization", &auth)], b"");
    assert_eq!(
        discovered.json()["services"],
        json!([{ "name": "sub", "host": "api.test.example", "any_port": true,
                 "placeholders": [{ "placeholder": "~sid~", "in": ["path", "query"] }] }])
    );
}

/// The handshake and two frames over `stream`; what the upstream got back to us.
fn websocket_exchange(stream: &mut (impl Read + Write), host: &str, extra: &str) {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        stream,
        "GET {host}/ws HTTP/1.1\r\nHost: api.test.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n{extra}\r\n"
    )
    .unwrap();
    stream.flush().unwrap();
    let head = read_head(stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
        .write_all(&client_frame(1, br#"{"token":"__bot__"}"#))
        .unwrap();
    stream
        .write_all(&client_frame(2, b"__bot__ binary"))
        .unwrap();
    stream.flush().unwrap();
    // The upstream echoes each message back; the credential in the echo is redacted to its
    // placeholder again on the way to the agent.
    assert_eq!(read_frame(stream), (1, br#"{"token":"__bot__"}"#.to_vec()));
    assert_eq!(read_frame(stream), (2, b"__bot__ binary".to_vec()));
}

/// The last two messages the upstream received: the text one with the credential, the
/// binary one untouched.
fn assert_upstream_got_the_credential(t: &Transparent) {
    let frames = t.proxy.upstream.websocket_frames();
    assert_eq!(
        frames[frames.len() - 2..],
        [
            (1, br#"{"token":"bot-token-123456"}"#.to_vec()),
            (2, b"__bot__ binary".to_vec())
        ]
    );
}

#[test]
fn websocket_text_frames_carry_the_credential_through_either_ingress() {
    let t = Transparent::start();
    t.proxy.credentials(json!({ "BOT": "bot-token-123456" }));
    t.proxy.services(passthrough_with(json!([
        { "key": "BOT", "placeholder": "__bot__", "in": ["websocket"] },
    ])));

    let mut tls = tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example").unwrap();
    websocket_exchange(&mut tls, "", "");
    assert_upstream_got_the_credential(&t);
    let handshake = t.proxy.upstream.last();
    assert_eq!(handshake.target, "/ws");
    assert!(handshake.header("sec-websocket-extensions").is_empty());

    let mut plain = TcpStream::connect(&t.proxy.server.address).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let target = t.proxy.target("api.test.example", "");
    websocket_exchange(
        &mut plain,
        &target,
        &format!("Authorization: Bearer {}\r\n", t.proxy.token),
    );
    assert_upstream_got_the_credential(&t);
    assert!(
        t.proxy
            .upstream
            .last()
            .header("sec-websocket-extensions")
            .is_empty()
    );
}

/// Every form an echoed value might take; none may reach the agent.
fn assert_no_echo(answer: &crate::proxy::Answer, value: &str, context: &str) {
    let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode(value);
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
    let percent: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let json_escaped = serde_json::to_string(value).unwrap();
    let json_escaped = &json_escaped[1..json_escaped.len() - 1];
    let json_twice = serde_json::to_string(json_escaped).unwrap();
    let json_twice = &json_twice[1..json_twice.len() - 1];
    let mut everything = answer.body.clone();
    for (name, header) in &answer.headers {
        everything.extend_from_slice(format!("\n{name}: {header}").as_bytes());
    }
    let text = String::from_utf8_lossy(&everything);
    for form in [
        value,
        &standard,
        &url_safe,
        &percent,
        json_escaped,
        json_twice,
    ] {
        assert!(
            !text.contains(form),
            "{context}: the answer carries {form:?}:\n{text}"
        );
    }
}

#[test]
fn an_upstream_that_echoes_the_request_never_returns_a_credential() {
    let t = Transparent::start();
    let proxy = &t.proxy;
    let secrets = [
        ("API_TOKEN", "tok/en+value=1"),
        ("USER", "user@example.com"),
        ("PASS", "pa ss:word\"2"),
        ("KEY", "key-value&3"),
        ("ZD", "zd-secret-4"),
        ("HMAC_SECRET", "hmac-secret-5"),
        ("AWS_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        ("SUB", "sub/stituted value\"6"),
    ];
    proxy.credentials(Value::Object(
        secrets
            .iter()
            .map(|(key, value)| (key.to_string(), json!(value)))
            .collect(),
    ));
    let plugin = |name: &str, plugin: &str, config: Value, credentials: Value| {
        json!({ "name": name, "host": format!("api.test.example/{name}/*"),
                "auth": { "type": "plugin", "plugin": plugin, "config": config, "credentials": credentials } })
    };
    let everywhere = json!([{ "key": "SUB", "placeholder": "__sub__",
                              "in": ["path", "query", "header", "body"] }]);
    let mut passthrough = json!({ "name": "passthrough", "host": "api.test.example/passthrough/*",
                                  "auth": { "type": "passthrough" } });
    passthrough["substitutions"] = everywhere.clone();
    let mut bearer = json!({ "name": "bearer", "host": "api.test.example/bearer/*",
                             "auth": { "type": "bearer", "token": "API_TOKEN" } });
    bearer["substitutions"] = everywhere;
    proxy.services(json!([
        bearer,
        { "name": "basic", "host": "api.test.example/basic/*", "auth": { "type": "basic", "username": "USER", "password": "PASS" } },
        { "name": "api-key", "host": "api.test.example/api-key/*", "auth": { "type": "api-key", "key": "KEY", "header": "x-api-key" } },
        { "name": "custom", "host": "api.test.example/custom/*", "auth": { "type": "custom", "headers": { "Authorization": "Token token={{ ZD }}" } } },
        passthrough,
        plugin("query", "query-param", json!({ "name": "key" }), json!({ "key": "KEY" })),
        plugin("hmac", "hmac", json!({ "timestamp-header": "x-ts" }), json!({ "secret": "HMAC_SECRET" })),
        plugin("aws", "aws-sigv4", json!({ "region": "us-east-1", "service": "execute-api" }),
               json!({ "access_key_id": "AWS_ID", "secret_access_key": "AWS_SECRET" })),
    ]));
    let auth = format!("Bearer {}", proxy.token);
    for service in [
        "bearer",
        "basic",
        "api-key",
        "custom",
        "passthrough",
        "query",
        "hmac",
        "aws",
    ] {
        for echo in ["/echo", "/echo-stream"] {
            let path = format!("/{service}{echo}/__sub__?q=__sub__");
            let answer = proxy.send(
                "POST",
                &proxy.target("api.test.example", &path),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("x-sub", "__sub__"),
                ],
                br#"{"s":"__sub__"}"#,
            );
            assert_eq!(answer.status, 200, "{path}: {answer:?}");
            let received = proxy.upstream.last();
            assert_eq!(received.header("accept-encoding"), ["identity"], "{path}");
            for (_, value) in secrets {
                assert_no_echo(&answer, value, &path);
            }
        }
        // The same through HTTPS_PROXY, by curl (headers and body in its output).
        let mut args = t.trust();
        args.extend([
            "-i",
            "-H",
            "content-type: application/json",
            "-H",
            "x-sub: __sub__",
            "--data-binary",
            r#"{"s":"__sub__"}"#,
        ]);
        let url = t.url(
            "api.test.example",
            &format!("/{service}/echo/__sub__?q=__sub__"),
        );
        let (code, stdout, stderr) = t.curl(&args, &url);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.starts_with("HTTP/1.1 200") && stdout.contains(r#""method":"POST""#),
            "{stdout}"
        );
        let answer = crate::proxy::Answer {
            status: 200,
            headers: Vec::new(),
            body: stdout.into_bytes(),
        };
        for (_, value) in secrets {
            assert_no_echo(&answer, value, &url);
        }
    }
    // What the agent sees instead: the placeholder where there is one, else the key.
    let answer = proxy.send(
        "POST",
        &proxy.target("api.test.example", "/bearer/echo/__sub__"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        br#"{"s":"__sub__"}"#,
    );
    let echoed = answer.json();
    assert_eq!(echoed["body"], r#"{"s":"__sub__"}"#);
    assert_eq!(echoed["target"], "/bearer/echo/__sub__");
    assert_eq!(
        echoed["headers"]["authorization"],
        "Bearer [REDACTED:API_TOKEN]"
    );
    assert_eq!(
        answer.header("x-echo-authorization"),
        Some("Bearer [REDACTED:API_TOKEN]")
    );
    assert!(answer.header("content-length").is_some());
    proxy
        .server
        .wait_for_log(&["credential echo", "service=\"bearer\""]);
}

/// Found by the `decision` fuzz target: a value with `..\` in a path placeholder became
/// `..%5C`, a dot segment to the route and to servers that read `\` as `/`.
#[test]
fn a_path_value_that_climbs_with_a_backslash_is_refused() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "SID": "..\\admin" }));
    proxy.services(passthrough_with(json!([
        { "key": "SID", "placeholder": "__sid__", "in": ["path"] },
    ])));
    let before = proxy.upstream.received().len();
    let answer = proxy.call("GET", "api.test.example", "/files/__sid__", &[]);
    assert_eq!(answer.proxy_error(), (502, "substitution_error".into()));
    assert_eq!(
        answer.json()["message"],
        "the path after substituting \"SID\" must not have \".\" or \"..\" segments"
    );
    assert_eq!(proxy.upstream.received().len(), before);
}

/// Found by the `redact` fuzz target: an upstream in Python (httpbin) quotes the JSON body it
/// echoes with non-ASCII as `\u` escapes; a value with a quote and an accent came back.
#[test]
fn a_json_body_echoed_by_python_never_returns_the_credential() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "SEC": "pa\"ss é-word" }));
    proxy.services(passthrough_with(json!([
        { "key": "SEC", "placeholder": "__sec__", "in": ["body"] },
    ])));
    let answer = post(
        &proxy,
        "/echo-ascii",
        "application/json",
        br#"{"s":"__sec__"}"#,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        proxy.upstream.last().body,
        r#"{"s":"pa\"ss é-word"}"#.as_bytes()
    );
    assert_eq!(answer.json()["body"], r#"{"s":"__sec__"}"#);
}

/// Found by the `redact` fuzz target: redacting a header with three values or more panicked
/// (in `http`'s `insert_mult`), and the agent got no answer at all.
#[test]
fn a_credential_echoed_in_one_of_many_headers_of_a_name_is_redacted() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "KEY": "sk-live-0123456789" }));
    proxy.services(passthrough_with(json!([
        { "key": "KEY", "placeholder": "__key__", "in": ["query"] },
    ])));
    let answer = proxy.call(
        "GET",
        "api.test.example",
        "/echo-headers?x-a=one&x-b=1&x-a=__key__&x-a=three&x-b=2",
        &[],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let values = |name: &str| {
        answer
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(values("x-a"), ["one", "__key__", "three"]);
    assert_eq!(values("x-b"), ["1", "2"]);
}

#[test]
fn compressed_answers_are_refused_or_passed_as_the_service_says() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "compressed-secret-1" }));
    proxy.services(json!([
        { "name": "strict", "host": "api.test.example/strict/*", "auth": { "type": "bearer", "token": "API_TOKEN" } },
        { "name": "lenient", "host": "api.test.example/lenient/*", "auth": { "type": "bearer", "token": "API_TOKEN" },
          "compressed_responses": "pass" },
        { "name": "open", "host": "api.test.example/open/*", "auth": { "type": "bearer", "token": "API_TOKEN" },
          "redact_echo": false },
    ]));
    let refused = proxy.call("GET", "api.test.example", "/strict/echo-gzip", &[]);
    assert_eq!(refused.proxy_error(), (502, "compressed_response".into()));
    let passed = proxy.call("GET", "api.test.example", "/lenient/echo-gzip", &[]);
    assert_eq!(passed.status, 200);
    assert_eq!(passed.header("content-encoding"), Some("gzip"));
    // Headers are still searched; the body the proxy cannot read goes through as it is.
    assert_eq!(
        passed.header("x-echo-authorization"),
        Some("Bearer [REDACTED:API_TOKEN]")
    );
    assert!(String::from_utf8_lossy(&passed.body).contains("compressed-secret-1"));
    // A service that opts out is not searched at all, nor asked for identity.
    let open = proxy.call(
        "GET",
        "api.test.example",
        "/open/echo",
        &[("accept-encoding", "gzip")],
    );
    assert_eq!(open.status, 200);
    assert!(String::from_utf8_lossy(&open.body).contains("compressed-secret-1"));
    assert_eq!(proxy.upstream.last().header("accept-encoding"), ["gzip"]);
}

#[test]
fn trace_is_never_forwarded_to_a_service() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "trace-secret-1" }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
    ]));
    let before = proxy.upstream.received().len();
    let answer = proxy.call("TRACE", "api.test.example", "/x", &[]);
    assert_eq!(answer.proxy_error(), (405, "method_not_allowed".into()));
    assert_eq!(proxy.upstream.received().len(), before);
}
