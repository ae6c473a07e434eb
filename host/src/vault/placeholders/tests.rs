//! Tests of placeholder substitution in the outgoing request (placeholders.rs).

use super::*;
use http::{HeaderName, Method};

fn placeholders(entries: &[(&str, &str, &[Surface], &str)]) -> Placeholders {
    Placeholders::new(entries.iter().map(|(key, text, surfaces, value)| {
        (
            key.to_string(),
            text.to_string(),
            surfaces.to_vec(),
            Secret::new(*value),
        )
    }))
}

fn head(url: &str) -> RequestHead {
    RequestHead::from_url(Method::GET, url).unwrap()
}

const PATH_AND_QUERY: &[Surface] = &[Surface::Path, Surface::Query];

#[test]
fn a_path_placeholder_becomes_an_escaped_segment_and_the_query_is_left_alone() {
    let sid = placeholders(&[("SID", "__account_sid__", &[Surface::Path], "AC12345")]);
    let mut request =
        head("https://api.twilio.com/Accounts/__account_sid__/M.json?id=__account_sid__");
    sid.apply_to_head(&mut request).unwrap();
    assert_eq!(request.path, "/Accounts/AC12345/M.json");
    assert_eq!(request.query.as_deref(), Some("id=__account_sid__"));

    let odd = placeholders(&[("SID", "__sid__", PATH_AND_QUERY, "a/b c")]);
    let mut request = head("https://x.example.com/a/__sid__");
    odd.apply_to_head(&mut request).unwrap();
    assert_eq!(request.path, "/a/a%2Fb%20c");
}

#[test]
fn a_value_that_would_make_a_dot_segment_is_refused() {
    let dots = placeholders(&[("SID", "__sid__", PATH_AND_QUERY, "..")]);
    let mut request = head("https://x.example.com/a/__sid__/b");
    let error = dots.apply_to_head(&mut request).unwrap_err();
    assert!(error.to_string().contains("\"SID\""), "{error}");
    assert_eq!(request.path, "/a/__sid__/b");
}

/// Found by the `substitute` fuzz target: a value with a line break went into the path
/// as `%0D%0A`, which the route refuses for an agent's own path.
#[test]
fn a_value_that_would_make_a_path_the_route_refuses_is_refused() {
    for (value, reason) in [
        ("a\r\nX-Evil: 1", "control characters"),
        ("nul\0", "control characters"),
        ("100%41", "double encoding"),
    ] {
        let entry = placeholders(&[("SID", "__sid__", PATH_AND_QUERY, value)]);
        let mut request = head("https://x.example.com/a/__sid__");
        let error = entry.apply_to_head(&mut request).unwrap_err().to_string();
        assert!(
            error.contains("\"SID\"") && error.contains(reason),
            "{error}"
        );
        assert_eq!(request.path, "/a/__sid__");
    }
}

#[test]
fn a_query_value_is_escaped_and_matching_is_case_sensitive() {
    let sid = placeholders(&[("SID", "__SID__", PATH_AND_QUERY, "x&y=z")]);
    let mut request = head("https://x.example.com/?a=__SID__&b=__sid__");
    sid.apply_to_head(&mut request).unwrap();
    assert_eq!(request.query.as_deref(), Some("a=x%26y%3Dz&b=__sid__"));
}

#[test]
fn header_values_get_the_raw_value_and_control_characters_stop_the_request() {
    let key = placeholders(&[("KEY", "__key__", &[Surface::Header], "s3cr3t value")]);
    let mut request = head("https://x.example.com/");
    request
        .headers
        .insert("x-api-key", HeaderValue::from_static("Key __key__"));
    request
        .headers
        .insert("x-other", HeaderValue::from_static("plain"));
    key.apply_to_head(&mut request).unwrap();
    assert_eq!(request.headers["x-api-key"], "Key s3cr3t value");
    assert!(request.headers["x-api-key"].is_sensitive());
    assert_eq!(request.headers["x-other"], "plain");

    let broken = placeholders(&[("KEY", "__key__", &[Surface::Header], "a\r\nX-Evil: 1")]);
    let mut request = head("https://x.example.com/");
    request
        .headers
        .insert("x-api-key", HeaderValue::from_static("__key__"));
    assert_eq!(
        broken.apply_to_head(&mut request),
        Err(PlaceholderError::NotHeaderSafe { key: "KEY".into() })
    );
    let shown = PlaceholderError::NotHeaderSafe { key: "KEY".into() }.to_string();
    assert!(!shown.contains("X-Evil"));
}

#[test]
fn protected_headers_keep_what_the_agent_sent() {
    // Found by fuzzing: a placeholder in `Content-Length` became the credential there.
    let key = placeholders(&[("KEY", "__key__", &[Surface::Header], "s3cr3t")]);
    let mut request = head("https://x.example.com/");
    for name in [
        "content-length",
        "transfer-encoding",
        "connection",
        "x-forwarded-host",
        "x-http-method-override",
        "x-vault",
        "x-agent-vault-session",
    ] {
        request.headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static("5__key__"),
        );
    }
    request
        .headers
        .insert("x-api-key", HeaderValue::from_static("__key__"));
    key.apply_to_head(&mut request).unwrap();
    assert_eq!(request.headers["x-api-key"], "s3cr3t");
    for (name, value) in &request.headers {
        if name != "x-api-key" {
            assert_eq!(value, "5__key__", "{name}");
            assert!(!value.is_sensitive(), "{name}");
        }
    }
}

#[test]
fn placeholders_are_only_looked_for_on_their_surfaces() {
    let body_only = placeholders(&[("KEY", "__key__", &[Surface::Body], "v4lue")]);
    let mut request = head("https://x.example.com/__key__?q=__key__");
    request
        .headers
        .insert("x-key", HeaderValue::from_static("__key__"));
    body_only.apply_to_head(&mut request).unwrap();
    assert_eq!(request.path, "/__key__");
    assert_eq!(request.query.as_deref(), Some("q=__key__"));
    assert_eq!(request.headers["x-key"], "__key__");
    assert!(body_only.for_websocket().is_none());
}

#[test]
fn a_body_value_is_escaped_for_its_content_type() {
    let secret = placeholders(&[("SEC", "__sec__", &[Surface::Body], "a\"b &c")]);
    let replace = |kind| {
        let replacements = secret.for_body(kind).unwrap().unwrap();
        String::from_utf8(
            replacements
                .replace_all(b"{\"s\":\"__sec__\"}")
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    };
    assert_eq!(replace(BodyKind::Json), r#"{"s":"a\"b &c"}"#);
    assert_eq!(replace(BodyKind::Form), r#"{"s":"a%22b%20%26c"}"#);
    assert_eq!(replace(BodyKind::Raw), r#"{"s":"a"b &c"}"#);
}

#[test]
fn multipart_and_compressed_bodies_are_not_rewritten() {
    let kind = |pairs: &[(&str, &str)]| {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        BodyKind::of(&headers)
    };
    assert_eq!(
        kind(&[("content-type", "multipart/form-data; boundary=x")]),
        None
    );
    assert_eq!(
        kind(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip")
        ]),
        None
    );
    assert_eq!(
        kind(&[("content-type", "Application/JSON; charset=utf-8")]),
        Some(BodyKind::Json)
    );
    assert_eq!(
        kind(&[("content-type", "application/vnd.api+json")]),
        Some(BodyKind::Json)
    );
    assert_eq!(
        kind(&[("content-type", "application/x-www-form-urlencoded")]),
        Some(BodyKind::Form)
    );
    assert_eq!(kind(&[("content-type", "text/plain")]), Some(BodyKind::Raw));
    assert_eq!(kind(&[]), Some(BodyKind::Raw));
    assert_eq!(
        kind(&[("content-encoding", "identity")]),
        Some(BodyKind::Raw)
    );
}

#[test]
fn debug_shows_placeholders_never_values() {
    let secret = placeholders(&[("SEC", "__sec__", &[Surface::Body], "hunter2-value")]);
    let shown = format!("{secret:?}");
    assert!(
        shown.contains("__sec__") && !shown.contains("hunter2"),
        "{shown}"
    );
}
