//! Finding the credential values bound to a service in its responses, and replacing each
//! with a label before the response reaches the agent: an upstream may echo the request back
//! (an `/anything` endpoint, an error body quoting a header, a `Location` with a signed key).
//!
//! This module owns which encoded forms of a value are looked for: every encoding a plugin
//! can ask the host to write a credential in (the contract's `encoding`: raw, base64 in both
//! alphabets at every alignment, hex in both cases, percent-encoded; [`CONTRACT_ENCODINGS`],
//! one `match` arm each in `encoded_forms`, so that an encoding added to the contract without
//! its search does not compile), and JSON-escaped, the way an upstream quotes what it got. It
//! does not choose the values or the labels (the caller passes them) and does not do the
//! matching itself ([`super::replace`] does). A value embedded in some other encoding, or
//! split by the upstream, is not found.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use zeroize::Zeroizing;

use super::replace::{Replacements, StreamReplacer};
use crate::plugin::contract::Encoding;

/// Values shorter than this are not looked for: they would match ordinary text by chance.
pub const MIN_REDACTED_LEN: usize = 6;

/// Every encoding of the plugin contract (`enum encoding` in `wit/plugin.wit`; a test reads
/// the WIT and fails if one is missing here). Each has its search in `encoded_forms`.
pub const CONTRACT_ENCODINGS: [Encoding; 5] = [
    Encoding::Raw,
    Encoding::Base64,
    Encoding::Base64url,
    Encoding::Hex,
    Encoding::Percent,
];

/// Every byte outside RFC 3986 unreserved (`A-Za-z0-9-._~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The credential values to find in a response, each with its label. Clones share the
/// search.
#[derive(Clone)]
pub struct Redactor {
    replacements: Arc<Replacements>,
}

impl Redactor {
    /// `values`: (credential bytes, label). `None` when no value is long enough.
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a [u8], &'a str)>) -> Option<Redactor> {
        let mut pairs = Vec::new();
        for (value, label) in values {
            if value.len() < MIN_REDACTED_LEN {
                continue;
            }
            for mut form in forms(value) {
                if form.len() >= MIN_REDACTED_LEN {
                    // Replacements zeroizes the pattern once the searcher is built.
                    pairs.push((std::mem::take(&mut *form), label.as_bytes().to_vec()));
                }
            }
        }
        let replacements = Replacements::new(pairs)?;
        Some(Redactor {
            replacements: Arc::new(replacements),
        })
    }

    /// Redacts every header value in place; names are untouched. A value that is not a valid
    /// header value after redaction is removed. Returns how many matches were replaced.
    pub fn headers(&self, headers: &mut HeaderMap) -> u64 {
        // Most responses carry no credential: find the names to rewrite first, copying none.
        let mut names: Vec<HeaderName> = Vec::new();
        for (name, value) in headers.iter() {
            if !names.contains(name)
                && self
                    .replacements
                    .replace_all_counted(value.as_bytes())
                    .is_some()
            {
                names.push(name.clone());
            }
        }
        let mut matches = 0;
        for name in names {
            let mut changed = false;
            let mut redacted = Vec::new();
            for value in headers.get_all(&name) {
                let Some((output, count)) = self.replacements.replace_all_counted(value.as_bytes())
                else {
                    redacted.push(value.clone());
                    continue;
                };
                changed = true;
                matches += count;
                if let Ok(mut output) = HeaderValue::from_bytes(&output) {
                    output.set_sensitive(value.is_sensitive());
                    redacted.push(output);
                }
            }
            if !changed {
                continue;
            }
            // Rewriting the entry in place keeps the header where it was in the map. Not
            // `insert_mult`: http 1.5 panics in it when the name has three values or more.
            let mut kept = redacted.into_iter();
            match (headers.entry(&name), kept.next()) {
                (Entry::Occupied(mut entry), Some(first)) => {
                    entry.insert(first);
                    kept.for_each(|value| entry.append(value));
                }
                (Entry::Occupied(entry), None) => drop(entry.remove_entry_mult()),
                (Entry::Vacant(_), _) => {}
            }
        }
        matches
    }

    /// A whole body with every value replaced and the number of matches; `None` when it
    /// carries none (the caller keeps the original).
    pub fn body(&self, input: &[u8]) -> Option<(Zeroizing<Vec<u8>>, u64)> {
        self.replacements.replace_all_counted(input)
    }

    /// A replacer for a body stream, to wrap in a [`super::replace::ReplacedBody`].
    pub fn stream(&self) -> StreamReplacer {
        StreamReplacer::new(self.replacements.clone())
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.replacements.pattern_count())
            .finish()
    }
}

/// The forms `value` may take in a response. Duplicates and short forms are left for the
/// caller to drop.
fn forms(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut forms = Vec::new();
    let mut base64 = Base64Forms::default();
    for encoding in CONTRACT_ENCODINGS {
        encoded_forms(encoding, value, &mut base64, &mut forms);
    }
    json_forms(value, &mut forms);
    forms
}

/// The forms of `value` once the host has written it in `encoding` and an upstream has
/// quoted it back. One arm per encoding of the contract: a new encoding does not compile
/// until it says how its output is found.
fn encoded_forms(
    encoding: Encoding,
    value: &[u8],
    base64: &mut Base64Forms,
    forms: &mut Vec<Zeroizing<Vec<u8>>>,
) {
    match encoding {
        Encoding::Raw => forms.push(Zeroizing::new(value.to_vec())),
        Encoding::Base64 => forms.extend(base64.standard(value).iter().cloned()),
        Encoding::Base64url => forms.extend(base64.url_safe(value)),
        Encoding::Hex => hex_forms(value, forms),
        Encoding::Percent => percent_forms(value, forms),
    }
}

/// The value in standard base64: whole and unpadded, and as it appears inside a longer
/// base64 text at each of the three alignments (the value preceded by 0, 1 or 2 other bytes,
/// like the password in `Basic base64("user:password")`). Computed once for both alphabets.
#[derive(Default)]
struct Base64Forms {
    standard: Option<Vec<Zeroizing<Vec<u8>>>>,
}

impl Base64Forms {
    fn standard(&mut self, value: &[u8]) -> &[Zeroizing<Vec<u8>>] {
        self.standard.get_or_insert_with(|| {
            let mut standard = vec![Zeroizing::new(STANDARD_NO_PAD.encode(value).into_bytes())];
            let mut shifted = Zeroizing::new(Vec::with_capacity(value.len() + 2));
            for filler in 0..3 {
                shifted.clear();
                shifted.resize(filler, 0);
                shifted.extend_from_slice(value);
                let encoded = Zeroizing::new(STANDARD_NO_PAD.encode(&shifted[..]).into_bytes());
                // Character i carries bits 6i..6i+6; keep those that come from the value alone.
                let first = (8 * filler).div_ceil(6);
                let end = (8 * (filler + value.len())) / 6;
                if let Some(inner) = encoded.get(first..end) {
                    standard.push(Zeroizing::new(inner.to_vec()));
                }
            }
            standard
        })
    }

    /// The same in the URL-safe alphabet, which differs only in two characters: only the
    /// forms that differ from the standard ones.
    fn url_safe(&mut self, value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
        self.standard(value)
            .iter()
            .filter(|form| form.iter().any(|&c| c == b'+' || c == b'/'))
            .map(|form| {
                Zeroizing::new(
                    form.iter()
                        .map(|&c| match c {
                            b'+' => b'-',
                            b'/' => b'_',
                            c => c,
                        })
                        .collect(),
                )
            })
            .collect()
    }
}

/// The value in hexadecimal, lower case (as the host writes it) and upper case (as an
/// upstream may quote it back).
fn hex_forms(value: &[u8], forms: &mut Vec<Zeroizing<Vec<u8>>>) {
    forms.push(Zeroizing::new(hex::encode(value).into_bytes()));
    forms.push(Zeroizing::new(hex::encode_upper(value).into_bytes()));
}

/// The value percent-encoded, with upper- and lower-case hex, and with space as `+` as in a
/// form; only the variants that differ from the raw value.
fn percent_forms(value: &[u8], forms: &mut Vec<Zeroizing<Vec<u8>>>) {
    if value
        .iter()
        .all(|&byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte))
    {
        return;
    }
    let mut upper = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for piece in percent_encoding::percent_encode(value, NOT_UNRESERVED) {
        upper.extend_from_slice(piece.as_bytes());
    }
    if *upper == value {
        return;
    }
    let lower = lower_hex(&upper);
    for encoded in [upper, lower] {
        if value.contains(&b' ') {
            forms.push(space_as_plus(&encoded));
        }
        forms.push(encoded);
    }
}

/// `encoded` with the two hex digits after each `%` in lower case.
fn lower_hex(encoded: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut lower = Zeroizing::new(encoded.to_vec());
    let mut index = 0;
    while index < lower.len() {
        if lower[index] == b'%' {
            for digit in lower.iter_mut().skip(index + 1).take(2) {
                digit.make_ascii_lowercase();
            }
            index += 3;
        } else {
            index += 1;
        }
    }
    lower
}

/// `encoded` with `%20` as `+`; a literal `%` is itself encoded, so every `%20` is a space.
fn space_as_plus(encoded: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut form = Zeroizing::new(Vec::with_capacity(encoded.len()));
    let mut rest = encoded;
    while !rest.is_empty() {
        if rest.starts_with(b"%20") {
            form.push(b'+');
            rest = &rest[3..];
        } else {
            form.push(rest[0]);
            rest = &rest[1..];
        }
    }
    form
}

/// The value as the contents of a JSON string: as serde_json writes it, with non-ASCII as
/// `\u` escapes (Python's default, which echo services like httpbin use), escaped twice (a
/// JSON body quoted inside a JSON answer), and each of those with `/` as `\/` (PHP's
/// default). Skipped when the value is not UTF-8.
fn json_forms(value: &[u8], forms: &mut Vec<Zeroizing<Vec<u8>>>) {
    // Printable ASCII without `"`, `\` and `/` is its own JSON escape, once and twice.
    if value
        .iter()
        .all(|&byte| (0x20..0x7f).contains(&byte) && !b"\"\\/".contains(&byte))
    {
        return;
    }
    let Ok(text) = std::str::from_utf8(value) else {
        return;
    };
    // Sized for the worst case (every byte as `\u00XX`) so no copy is left behind by a regrow.
    let mut quoted = Zeroizing::new(Vec::with_capacity(text.len() * 6 + 2));
    if serde_json::to_writer(&mut *quoted, text).is_err() {
        return;
    }
    let escaped = quoted
        .strip_prefix(b"\"")
        .and_then(|quoted| quoted.strip_suffix(b"\""))
        .unwrap_or(&quoted);
    let mut variants = vec![Zeroizing::new(escaped.to_vec())];
    if !text.is_ascii() {
        variants.push(ascii_only(escaped));
    }
    // Escaped twice: a JSON request body quoted as a string in a JSON answer (httpbin's
    // `data`), the value's own escapes escaped again; by Python, non-ASCII as `\u` escapes.
    if let Ok(once) = std::str::from_utf8(escaped) {
        let mut twice = Zeroizing::new(Vec::with_capacity(once.len() * 6 + 2));
        if serde_json::to_writer(&mut *twice, once).is_ok() && twice.len() != quoted.len() {
            let twice = &twice[1..twice.len() - 1];
            if !text.is_ascii() {
                variants.push(ascii_only(twice));
            }
            variants.push(Zeroizing::new(twice.to_vec()));
        }
    }
    for variant in variants {
        if text.contains('/') {
            forms.push(slashes_escaped(&variant));
        }
        forms.push(variant);
    }
}

/// JSON string contents with every non-ASCII character as `\uXXXX` (UTF-16, lower-case hex).
fn ascii_only(escaped: &[u8]) -> Zeroizing<Vec<u8>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // A non-ASCII character of n bytes becomes at most 12 bytes: never more than 3 per byte.
    let mut ascii = Zeroizing::new(Vec::with_capacity(escaped.len() * 3));
    let mut units = [0u16; 2];
    for character in String::from_utf8_lossy(escaped).chars() {
        if character.is_ascii() {
            ascii.push(character as u8);
            continue;
        }
        for unit in character.encode_utf16(&mut units) {
            ascii.extend_from_slice(b"\\u");
            for shift in [12, 8, 4, 0] {
                ascii.push(HEX[usize::from((*unit >> shift) & 0xf)]);
            }
        }
    }
    ascii
}

/// JSON string contents with every `/` as `\/`.
fn slashes_escaped(escaped: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut output = Zeroizing::new(Vec::with_capacity(escaped.len() * 2));
    for &byte in escaped {
        if byte == b'/' {
            output.push(b'\\');
        }
        output.push(byte);
    }
    output
}

#[cfg(test)]
mod tests {
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
        let wit = include_str!("../../../wit/plugin.wit");
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
}
