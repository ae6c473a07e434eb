//! Placeholder substitution on every surface (`vault::placeholders`): the path, the query and
//! header values of the outgoing head, and the find-and-replace tables for bodies (raw, form,
//! JSON) and WebSocket text messages.
//!
//! Input, like an HTTP message after a preamble:
//! ```text
//! KEY __key__ path,query,header,body,websocket s3cr3t%0D%0A   (key, placeholder, surfaces, value)
//! SID __sid__ all ../x                                         (one line per placeholder)
//!
//! /a/__key__?q=__sid__                                          (the request target)
//! x-api-key: Key __key__                                        (headers)
//!
//! {"s":"__key__"}                                              (the body, to the end)
//! ```
//! Values are percent-decoded, so any byte can be written.
//!
//! For any placeholders, values and request:
//! - path: when it succeeds, each placeholder became its value percent-encoded, and the
//!   route would still accept the path (no dot segment in any encoding) as a valid URI path;
//! - query: each placeholder became its value percent-encoded, and a value never adds or
//!   splits a parameter (`&`, `=` and `#` counts unchanged);
//! - headers: each placeholder became its raw value, rewritten values are marked sensitive,
//!   and a value a header cannot carry stops the request, naming that credential; protected
//!   headers (`Host`, framing, hop-by-hop, forwarding, the proxy's own) keep what was sent;
//! - bodies: the replacements equal the reference replace with the value encoded for the
//!   content type; a form body keeps its parameters; a JSON document with placeholders in
//!   its strings stays a JSON document whose strings hold the values, whatever they contain;
//! - WebSocket text: the reference replace with the raw values.
#![no_main]

use agent_vault::proxy::route::canonical_path;
use agent_vault::request::{RequestHead, Scheme};
use agent_vault::services::{Surface, check_placeholder};
use agent_vault::vault::Secret;
use agent_vault::vault::placeholders::{BodyKind, PlaceholderError, Placeholders};
use agent_vault_fuzz::input;
use agent_vault_fuzz::json::Json;
use agent_vault_fuzz::reference;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The longest URI the `http` crate takes (`u16::MAX - 1`).
const MAX_URI_LEN: usize = 65_534;

struct Entry {
    key: String,
    text: String,
    surfaces: Vec<Surface>,
    value: Vec<u8>,
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (preamble, message) = input::split_blank_line(data);
    let (head_text, body) = input::split_blank_line(message);
    let Some(entries) = placeholders(input::utf8_prefix(preamble)) else {
        return;
    };
    let placeholders = Placeholders::new(entries.iter().map(|entry| {
        (
            entry.key.clone(),
            entry.text.clone(),
            entry.surfaces.clone(),
            Secret::new(entry.value.clone()),
        )
    }));
    if let Some(head) = head(input::utf8_prefix(head_text)) {
        check_head(&placeholders, &entries, head);
    }
    check_bodies(&placeholders, &entries, body);
    check_websocket(&placeholders, &entries, body);
});

/// The placeholder lines, if they are what a service's validation lets through: valid,
/// distinct placeholders on known surfaces.
fn placeholders(preamble: &str) -> Option<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in preamble.lines() {
        let mut fields = line.splitn(4, ' ');
        let key = fields.next()?.to_owned();
        let text = fields.next()?.to_owned();
        check_placeholder(&text).ok()?;
        if entries.iter().any(|entry| entry.text == text) {
            return None;
        }
        let surfaces = match fields.next()? {
            "all" => Surface::ALL.to_vec(),
            names => names
                .split(',')
                .map(|name| Surface::ALL.into_iter().find(|s| s.as_str() == name))
                .collect::<Option<Vec<Surface>>>()?,
        };
        let value = input::decoded(fields.next().unwrap_or_default());
        entries.push(Entry {
            key,
            text,
            surfaces,
            value,
        });
    }
    Some(entries)
}

/// A request the proxy would have routed: a valid URI path and query, a path the route
/// accepts, and headers that are valid header values.
fn head(text: &str) -> Option<RequestHead> {
    let mut lines = text.lines();
    let target: http::uri::PathAndQuery = lines.next()?.parse().ok()?;
    canonical_path(target.path()).ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    Some(RequestHead {
        method: http::Method::GET,
        scheme: Scheme::Https,
        host: "api.example.com".to_owned(),
        port: 443,
        path: target.path().to_owned(),
        query: target.query().map(str::to_owned),
        headers,
    })
}

fn on(entries: &[Entry], surface: Surface) -> impl Iterator<Item = &Entry> {
    entries
        .iter()
        .filter(move |entry| entry.surfaces.contains(&surface))
}

fn check_head(placeholders: &Placeholders, entries: &[Entry], head: RequestHead) {
    let before = head.clone();
    let mut after = head;
    match placeholders.apply_to_head(&mut after) {
        Ok(()) => {}
        Err(PlaceholderError::InvalidPath { key, .. }) => {
            let mut path = before.path.clone();
            let mut substituted = Vec::new();
            for entry in on(entries, Surface::Path) {
                if path.contains(&entry.text) {
                    path = path.replace(&entry.text, &reference::percent_encode(&entry.value));
                    substituted.push(entry.key.clone());
                }
            }
            assert!(
                substituted.contains(&key),
                "the path error names {key}, which was not substituted in the path"
            );
            return;
        }
        Err(PlaceholderError::NotHeaderSafe { key }) => {
            assert_eq!(Some(key), first_unsafe_header_key(entries, &before.headers));
            return;
        }
        Err(other) => panic!("the head cannot fail with {other:?}"),
    }
    assert_eq!(first_unsafe_header_key(entries, &before.headers), None);

    let mut path = before.path.clone();
    for entry in on(entries, Surface::Path) {
        path = path.replace(&entry.text, &reference::percent_encode(&entry.value));
    }
    assert_eq!(after.path, path);
    if after.path != before.path {
        assert!(
            canonical_path(&after.path).is_ok(),
            "the route would refuse {:?} made by substitution",
            after.path
        );
    }

    let mut query = before.query.clone();
    for entry in on(entries, Surface::Query) {
        query = query.map(|q| q.replace(&entry.text, &reference::percent_encode(&entry.value)));
    }
    assert_eq!(after.query, query);
    let count = |query: &Option<String>, byte: char| {
        query.as_deref().unwrap_or_default().matches(byte).count()
    };
    for separator in ['&', '=', '#'] {
        assert_eq!(
            count(&before.query, separator),
            count(&after.query, separator)
        );
    }
    let target = after.path_and_query();
    match target.parse::<http::uri::PathAndQuery>() {
        Ok(parsed) => assert_eq!(parsed.path(), after.path),
        // Longer than `http` can carry: the forwarder refuses it before anything is sent.
        Err(_) if target.len() >= MAX_URI_LEN => {}
        Err(error) => panic!("{target:?} is not a request target: {error}"),
    }

    let mut expected = before.headers.iter().map(|(name, value)| {
        let mut bytes = value.as_bytes().to_vec();
        if reference::protected_header(name.as_str()) {
            return (name.clone(), bytes, false);
        }
        for entry in on(entries, Surface::Header) {
            bytes = replace(&bytes, entry.text.as_bytes(), &entry.value);
        }
        (
            name.clone(),
            bytes,
            bytes_changed(value.as_bytes(), entries),
        )
    });
    for (name, value) in after.headers.iter() {
        let (expected_name, bytes, rewritten) = expected.next().expect("as many headers");
        assert_eq!(*name, expected_name);
        assert_eq!(value.as_bytes(), bytes);
        assert_eq!(value.is_sensitive(), rewritten, "{name} sensitivity");
    }
    assert!(expected.next().is_none());
}

/// Whether a header value has any header placeholder.
fn bytes_changed(value: &[u8], entries: &[Entry]) -> bool {
    on(entries, Surface::Header).any(|entry| reference::contains(value, entry.text.as_bytes()))
}

/// The credential that stops the request: the first header value (in order) that gets a
/// value a header cannot carry, and the first such placeholder in it (replacements apply in
/// order, so a later placeholder may appear only once an earlier one is replaced).
fn first_unsafe_header_key(entries: &[Entry], headers: &HeaderMap) -> Option<String> {
    for (name, value) in headers.iter() {
        if reference::protected_header(name.as_str()) {
            continue;
        }
        let mut bytes = value.as_bytes().to_vec();
        for entry in on(entries, Surface::Header) {
            if !reference::contains(&bytes, entry.text.as_bytes()) {
                continue;
            }
            if HeaderValue::from_bytes(&entry.value).is_err() {
                return Some(entry.key.clone());
            }
            bytes = replace(&bytes, entry.text.as_bytes(), &entry.value);
        }
    }
    None
}

/// Every `needle` in `haystack` replaced, left to right (`str::replace` on bytes).
fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    reference::replace_all(&[(needle.to_vec(), with.to_vec())], haystack).0
}

fn check_bodies(placeholders: &Placeholders, entries: &[Entry], body: &[u8]) {
    for kind in [BodyKind::Raw, BodyKind::Form, BodyKind::Json] {
        let mut pairs = Vec::new();
        let mut not_json = None;
        for entry in on(entries, Surface::Body) {
            let encoded = match kind {
                BodyKind::Raw => entry.value.clone(),
                BodyKind::Form => reference::percent_encode(&entry.value).into_bytes(),
                BodyKind::Json => match std::str::from_utf8(&entry.value) {
                    Ok(text) => {
                        let quoted = serde_json::to_string(text).expect("a string serializes");
                        quoted.as_bytes()[1..quoted.len() - 1].to_vec()
                    }
                    Err(_) => {
                        not_json.get_or_insert(entry.key.clone());
                        Vec::new()
                    }
                },
            };
            pairs.push((entry.text.as_bytes().to_vec(), encoded));
        }
        let replacements = match (placeholders.for_body(kind), not_json) {
            (Err(PlaceholderError::NotJsonSafe { key }), Some(expected)) => {
                assert_eq!(key, expected);
                continue;
            }
            (Ok(replacements), None) => replacements,
            (other, expected) => panic!("{kind:?}: {other:?}, expected an error for {expected:?}"),
        };
        let Some(replacements) = replacements else {
            assert!(
                pairs.is_empty(),
                "{kind:?}: no replacements for body placeholders"
            );
            continue;
        };
        let (expected, _) = reference::replace_all(&pairs, body);
        let output = replacements
            .replace_all(body)
            .map_or(body.to_vec(), |output| output.to_vec());
        assert_eq!(output, expected, "{kind:?} body");
        match kind {
            BodyKind::Form => {
                for separator in [b'&', b'='] {
                    let count = |bytes: &[u8]| bytes.iter().filter(|&&b| b == separator).count();
                    assert_eq!(
                        count(body),
                        count(&output),
                        "a form value added a parameter"
                    );
                }
            }
            BodyKind::Json => check_json(entries, body, &output),
            BodyKind::Raw => {}
        }
    }
}

/// A JSON body whose placeholders are all inside strings (no escapes to overlap, and
/// placeholders that cannot be part of a number) stays a document, with the values in its
/// strings.
fn check_json(entries: &[Entry], body: &[u8], output: &[u8]) {
    let only_in_strings = on(entries, Surface::Body)
        .all(|entry| entry.text.chars().any(|c| !"0123456789eE.-".contains(c)));
    if !only_in_strings || body.contains(&b'\\') {
        return;
    }
    let Some(document) = Json::parse(body) else {
        return;
    };
    let raw_pairs: Vec<(Vec<u8>, Vec<u8>)> = on(entries, Surface::Body)
        .map(|entry| (entry.text.as_bytes().to_vec(), entry.value.clone()))
        .collect();
    let expected = document.map_strings(&|text: &str| {
        let (replaced, _) = reference::replace_all(&raw_pairs, text.as_bytes());
        String::from_utf8(replaced).expect("UTF-8 values in a JSON body")
    });
    let parsed = Json::parse(output).unwrap_or_else(|| {
        panic!(
            "substitution broke a JSON body: {:?}",
            String::from_utf8_lossy(output)
        )
    });
    assert_eq!(parsed, expected);
}

fn check_websocket(placeholders: &Placeholders, entries: &[Entry], message: &[u8]) {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = on(entries, Surface::WebSocket)
        .map(|entry| (entry.text.as_bytes().to_vec(), entry.value.clone()))
        .collect();
    let Some(replacements) = placeholders.for_websocket() else {
        assert!(pairs.is_empty());
        return;
    };
    let output = replacements
        .replace_all(message)
        .map_or(message.to_vec(), |output| output.to_vec());
    assert_eq!(output, reference::replace_all(&pairs, message).0);
}
