//! Tests of finding credential values in responses and replacing them by labels (redact.rs).

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const LABEL: &str = "[REDACTED:KEY]";

fn redactor(value: &[u8]) -> Redactor {
    Redactor::new([(value, LABEL)]).expect("a long enough value")
}

fn redact(redactor: &Redactor, input: &[u8]) -> Vec<u8> {
    match redactor.replacements.replace_all(input) {
        Some(output) => output.to_vec(),
        None => input.to_vec(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn every_form_of_the_value_is_replaced_in_one_text() {
    let value = "sk live/é+key&x=1 ~ok";
    let redactor = redactor(value.as_bytes());
    let encoded = [
        value.to_string(),
        STANDARD_NO_PAD.encode(value),
        URL_SAFE_NO_PAD.encode(value),
        "sk%20live%2F%C3%A9%2Bkey%26x%3D1%20~ok".to_string(),
        "sk%20live%2f%c3%a9%2bkey%26x%3d1%20~ok".to_string(),
        "sk+live%2F%C3%A9%2Bkey%26x%3D1+~ok".to_string(),
        serde_json::to_string(value).expect("a string serializes"),
        "sk live\\/é+key&x=1 ~ok".to_string(),
        "sk live/\\u00e9+key&x=1 ~ok".to_string(),
        "sk live\\/\\u00e9+key&x=1 ~ok".to_string(),
    ];
    let text = encoded.join(" | ");
    let output = String::from_utf8(redact(&redactor, text.as_bytes())).expect("utf-8");
    // The JSON form keeps its quotes; only the contents are replaced.
    let mut expected = vec![LABEL.to_string(); encoded.len()];
    expected[6] = format!("\"{LABEL}\"");
    let expected = expected.join(" | ");
    assert_eq!(output, expected);
}

/// The cases of `enum encoding` in the contract, by their WIT names.
fn wit_encodings() -> Vec<String> {
    let wit = include_str!("../../../../wit/plugin.wit");
    let body = wit
        .split_once("enum encoding {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .expect("the contract declares `enum encoding`");
    body.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .map(|line| line.trim_end_matches(',').to_owned())
        .collect()
}

fn wit_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Raw => "raw",
        Encoding::Base64 => "base64",
        Encoding::Base64url => "base64url",
        Encoding::Hex => "hex",
        Encoding::Percent => "percent",
    }
}

#[test]
fn every_encoding_of_the_contract_is_searched() {
    let searched: Vec<&str> = CONTRACT_ENCODINGS.into_iter().map(wit_name).collect();
    assert_eq!(
        wit_encodings(),
        searched,
        "an encoding of wit/plugin.wit is missing from CONTRACT_ENCODINGS (and its search)"
    );
}

#[test]
fn hex_is_found_in_both_cases() {
    let value = b"\x9c\xfatoken-\xab";
    let redactor = redactor(value);
    for echoed in [hex::encode(value), hex::encode_upper(value)] {
        let text = format!("sig={echoed};");
        let output = String::from_utf8(redact(&redactor, text.as_bytes())).unwrap();
        assert_eq!(output, format!("sig={LABEL};"));
    }
}

#[test]
fn the_value_is_found_inside_base64_at_every_alignment() {
    let secret = b"correct-horse-battery";
    let redactor = redactor(secret);
    for prefix_len in 0..="alice:".len() {
        for suffix in [&b""[..], b"!", b"?x", b":suffix"] {
            let mut plain = b"alice:"[..prefix_len].to_vec();
            plain.extend_from_slice(secret);
            plain.extend_from_slice(suffix);
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let encoded = engine.encode(&plain);
                let output = redact(&redactor, encoded.as_bytes());
                assert!(
                    contains(&output, LABEL.as_bytes()),
                    "prefix {prefix_len}, suffix {suffix:?}"
                );
            }
        }
    }
}

#[test]
fn a_basic_authorization_header_has_its_password_redacted() {
    let password = b"s3cr3t-passw0rd";
    let redactor = redactor(password);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cr3t-passw0rd")
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-echo-authorization",
        HeaderValue::from_str(&basic).expect("valid"),
    );
    assert_eq!(redactor.headers(&mut headers), 1);
    let redacted = headers["x-echo-authorization"].as_bytes();
    assert!(contains(redacted, LABEL.as_bytes()));
    assert!(!contains(
        redacted,
        &STANDARD_NO_PAD.encode(password).as_bytes()[2..12]
    ));
}

#[test]
fn header_values_are_redacted_and_names_kept() {
    let value = b"keyid/secret+key";
    let redactor = Redactor::new([(&value[..], "__aws_key__")]).expect("long enough");
    let mut headers = HeaderMap::new();
    headers.insert(
        "location",
        HeaderValue::from_static("https://x/?key=keyid%2Fsecret%2Bkey&a=1"),
    );
    headers.insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer error=\"invalid_token\", token=\"keyid/secret+key\""),
    );
    headers.append("x-echo", HeaderValue::from_static("untouched"));
    headers.append(
        "x-echo",
        HeaderValue::from_str(&STANDARD_NO_PAD.encode(value)).expect("valid"),
    );
    headers.insert("content-type", HeaderValue::from_static("text/plain"));

    let names: Vec<HeaderName> = headers.keys().cloned().collect();
    assert_eq!(redactor.headers(&mut headers), 3);
    assert_eq!(headers.keys().cloned().collect::<Vec<_>>(), names);
    assert_eq!(headers["location"], "https://x/?key=__aws_key__&a=1");
    assert_eq!(
        headers["www-authenticate"],
        "Bearer error=\"invalid_token\", token=\"__aws_key__\""
    );
    let echoes: Vec<_> = headers.get_all("x-echo").iter().collect();
    assert_eq!(echoes, ["untouched", "__aws_key__"]);
    assert_eq!(headers["content-type"], "text/plain");
}

#[test]
fn a_header_value_invalid_after_redaction_is_removed() {
    let redactor = Redactor::new([(&b"secret-value"[..], "bad\nlabel")]).expect("long enough");
    let mut headers = HeaderMap::new();
    headers.append("x-echo", HeaderValue::from_static("keep"));
    headers.append("x-echo", HeaderValue::from_static("v=secret-value"));
    assert_eq!(redactor.headers(&mut headers), 1);
    let echoes: Vec<_> = headers.get_all("x-echo").iter().collect();
    assert_eq!(echoes, ["keep"]);
}

/// Found by the `redact` fuzz target: a header with three values, one of them an echo,
/// panicked in `HeaderMap` (an upstream could crash the request at will).
#[test]
fn a_header_with_many_values_among_others_is_redacted() {
    let redactor = redactor(b"secret-value");
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-echo", "one"),
        ("location", "/a"),
        ("x-echo", "secret-value"),
        ("x-echo", "three"),
        ("location", "/b?secret-value"),
        ("x-echo", "four"),
    ] {
        headers.append(name, HeaderValue::from_static(value));
    }
    assert_eq!(redactor.headers(&mut headers), 2);
    let values = |name| headers.get_all(name).iter().collect::<Vec<_>>();
    assert_eq!(values("x-echo"), ["one", LABEL, "three", "four"]);
    assert_eq!(values("location"), ["/a", &format!("/b?{LABEL}")]);
}

#[test]
fn a_value_shorter_than_the_minimum_is_not_looked_for() {
    assert!(Redactor::new([(&b"12345"[..], LABEL)]).is_none());
    let redactor = Redactor::new([(&b"12345"[..], LABEL), (&b"123456"[..], LABEL)])
        .expect("one value is long enough");
    assert_eq!(redact(&redactor, b"12345 "), b"12345 ".to_vec());
    assert_eq!(redact(&redactor, b"123456"), LABEL.as_bytes().to_vec());
}

#[test]
fn debug_output_shows_no_value() {
    let redactor = redactor(b"hunter2-very-secret");
    let shown = format!("{redactor:?} {:?}", redactor.stream());
    assert!(!shown.contains("hunter2"));
    assert!(!shown.contains(&STANDARD_NO_PAD.encode("hunter2-very-secret")[..8]));
}

#[test]
fn redacting_a_stream_in_one_byte_chunks_equals_redacting_the_whole_body() {
    let value = "tok/en with spaces+é";
    let redactor = Redactor::new([
        (value.as_bytes(), "__a__"),
        (&b"another-credential"[..], "__b__"),
    ])
    .expect("long enough");
    let body = format!(
        "{{\"url\":\"https://x/?t={}\",\"json\":{},\"auth\":\"Basic {}\",\"raw\":\"{value}\",\"b\":\"another-credential\"}}",
        "tok%2Fen+with+spaces%2B%C3%A9",
        serde_json::to_string(value).expect("a string serializes"),
        STANDARD_NO_PAD.encode(format!("me:{value}")),
    );
    let whole = redact(&redactor, body.as_bytes());
    let mut replacer = redactor.stream();
    let mut streamed = Vec::new();
    for byte in body.as_bytes() {
        streamed.extend_from_slice(&replacer.feed(std::slice::from_ref(byte)));
    }
    streamed.extend_from_slice(&replacer.finish());
    assert_eq!(streamed, whole);
    assert_eq!(replacer.matches(), 5);
    assert!(!contains(&streamed, value.as_bytes()));
    assert!(!contains(&streamed, b"another-credential"));
}

#[test]
fn a_json_body_quoted_inside_a_json_answer_is_redacted() {
    let value = b"pa ss\"word/1";
    let redactor = redactor(value);
    let body = serde_json::to_string(&serde_json::json!({ "s": "pa ss\"word/1" })).unwrap();
    let answer = serde_json::to_string(&serde_json::json!({ "data": body })).unwrap();
    let redacted = String::from_utf8(redact(&redactor, answer.as_bytes())).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&redacted).unwrap();
    assert_eq!(parsed["data"], format!("{{\"s\":\"{LABEL}\"}}"));
}

/// Found by the `redact` fuzz target: httpbin, in Python, quotes the JSON body it echoes
/// with non-ASCII as `\u` escapes, and that form of a value with both was not looked for.
#[test]
fn a_json_body_quoted_by_python_inside_a_json_answer_is_redacted() {
    let redactor = redactor("pa\"ss é-word".as_bytes());
    let answer = r#"{"data": "{\"s\": \"pa\\\"ss \u00e9-word\"}"}"#;
    assert_eq!(
        String::from_utf8(redact(&redactor, answer.as_bytes())).unwrap(),
        format!(r#"{{"data": "{{\"s\": \"{LABEL}\"}}"}}"#)
    );
}

#[test]
fn identical_forms_are_looked_for_once() {
    // An unreserved ASCII value is its own percent-encoding and JSON form.
    let value = b"plain-value_123";
    let mut distinct: Vec<Vec<u8>> = forms(value).iter().map(|form| form.to_vec()).collect();
    let all = distinct.len();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() < all);
    assert_eq!(redactor(value).replacements.pattern_count(), distinct.len());
}
