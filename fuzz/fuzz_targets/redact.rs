//! Echo redaction (`vault::redact`): credential values searched for in responses.
//!
//! Input: one or two credential values, one a line (percent-decoded), a blank line, then a
//! response body written as a template: `{FORM}` stands for the first value in that form,
//! `{FORM@2}` for the second, and `{FORM:before:after}` for the value with text around it
//! before the form is applied (`{base64:alice%3A:}` is the `Basic` credential of user alice).
//! FORM is one of `raw`, `base64`, `base64-nopad`, `base64url`, `base64url-nopad`,
//! `percent`, `percent-lower`, `percent-plus`, `json`, `json-slashes`, `json-python`,
//! `json-php`, and `json2-...` for the same written twice (the value as the proxy put it into
//! a JSON body, quoted again by an upstream that echoes the body as a string, like httpbin's
//! `data`). After a NUL, choices: the chunks the body streams in, and how it is cut into
//! header values.
//!
//! For any values and body, the redacted body carries no form of a value, whether it is
//! redacted whole or streamed in any chunks (both give the same bytes), and neither do the
//! redacted header values. The forms, computed here independently of the host:
//! - raw;
//! - base64, standard and URL-safe, at each of the three alignments inside a longer text
//!   (the characters that carry only the value's bits);
//! - percent-encoded (RFC 3986 unreserved kept), upper- and lower-case hex, space as `+`;
//! - the contents of a JSON string as serde_json writes it, with `/` as `\/`, as Python
//!   writes it (non-ASCII as `\u` escapes) and as PHP does (both), once and twice.
//!
//! Only values and forms of at least `MIN_REDACTED_LEN` bytes are looked for, by design.
#![no_main]

use agent_vault::vault::redact::{MIN_REDACTED_LEN, Redactor};
use agent_vault_fuzz::input::{self, Result, Unstructured};
use agent_vault_fuzz::reference;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The body's label: a byte no form contains (values have no NUL), so a form found in the
/// output cannot be one the labels made up.
const BODY_LABEL: &str = "\0";
/// Header values cannot carry NUL; a tab is allowed and no form of a tab-free value has one.
const HEADER_LABEL: &str = "\t";

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Raw,
    Base64,
    Base64NoPad,
    Base64Url,
    Base64UrlNoPad,
    PercentUpper,
    PercentLower,
    PercentPlus,
    Json(Outer),
    JsonTwice(Outer),
}

/// How an upstream writes a JSON string.
#[derive(Debug, Clone, Copy)]
enum Outer {
    Serde,
    SerdeSlashes,
    Python,
    Php,
}

const ENCODINGS: &[(&str, Encoding)] = &[
    ("raw", Encoding::Raw),
    ("base64", Encoding::Base64),
    ("base64-nopad", Encoding::Base64NoPad),
    ("base64url", Encoding::Base64Url),
    ("base64url-nopad", Encoding::Base64UrlNoPad),
    ("percent", Encoding::PercentUpper),
    ("percent-lower", Encoding::PercentLower),
    ("percent-plus", Encoding::PercentPlus),
    ("json", Encoding::Json(Outer::Serde)),
    ("json-slashes", Encoding::Json(Outer::SerdeSlashes)),
    ("json-python", Encoding::Json(Outer::Python)),
    ("json-php", Encoding::Json(Outer::Php)),
    ("json2", Encoding::JsonTwice(Outer::Serde)),
    ("json2-slashes", Encoding::JsonTwice(Outer::SerdeSlashes)),
    ("json2-python", Encoding::JsonTwice(Outer::Python)),
    ("json2-php", Encoding::JsonTwice(Outer::Php)),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (text, mut choices) = input::text_and_choices(data);
    let (values, template) = input::split_blank_line(text);
    let secrets: Vec<Vec<u8>> = input::utf8_prefix(values)
        .lines()
        .take(2)
        .map(input::decoded)
        .collect();
    // NUL and tab are the labels (below); a value holding one could be "found" in a label.
    let usable = |secret: &Vec<u8>| {
        secret.len() >= MIN_REDACTED_LEN && !secret.contains(&0) && !secret.contains(&b'\t')
    };
    if secrets.is_empty() || !secrets.iter().all(usable) {
        return;
    }
    let body = expand(template, &secrets);
    let _ = run(&secrets, &body, &mut choices);
});

fn run(secrets: &[Vec<u8>], body: &[u8], u: &mut Unstructured) -> Result<()> {
    let forms: Vec<(String, Vec<u8>)> = secrets.iter().flat_map(|s| forms(s)).collect();
    let redactor = Redactor::new(secrets.iter().map(|s| (s.as_slice(), BODY_LABEL)))
        .expect("values of at least MIN_REDACTED_LEN bytes");
    let whole = match redactor.body(body) {
        Some((output, matches)) => {
            assert!(matches > 0);
            output.to_vec()
        }
        None => body.to_vec(),
    };
    for (name, form) in &forms {
        assert!(
            !reference::contains(&whole, form),
            "the {name} form {:?} is still in the body {:?}",
            String::from_utf8_lossy(form),
            String::from_utf8_lossy(&whole)
        );
    }
    let mut stream = redactor.stream();
    let mut streamed = Vec::new();
    for chunk in input::chunks(u, body)? {
        streamed.extend_from_slice(&stream.feed(chunk));
    }
    streamed.extend_from_slice(&stream.finish());
    assert_eq!(streamed, whole, "streamed and whole redaction differ");

    check_headers(u, secrets, &forms, body)
}

/// The body the template describes: each `{FORM[@N][:before[:after]]}` replaced by the
/// form of value N (1 or 2) with `before` and `after` (percent-decoded) around it. Anything
/// else, unknown forms included, is text.
fn expand(template: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.iter().position(|&byte| byte == b'{') {
        body.extend_from_slice(&rest[..open]);
        rest = &rest[open..];
        let form = rest
            .iter()
            .position(|&byte| byte == b'}')
            .and_then(|close| Some((form_of(&rest[1..close], secrets)?, close)));
        match form {
            Some((form, close)) => {
                body.extend_from_slice(&form);
                rest = &rest[close + 1..];
            }
            None => {
                body.push(b'{');
                rest = &rest[1..];
            }
        }
    }
    body.extend_from_slice(rest);
    body
}

fn form_of(token: &[u8], secrets: &[Vec<u8>]) -> Option<Vec<u8>> {
    let token = std::str::from_utf8(token).ok()?;
    let mut fields = token.splitn(3, ':');
    let name = fields.next()?;
    let (name, index) = match name.split_once('@') {
        Some((name, number)) => (name, number.parse::<usize>().ok()?.checked_sub(1)?),
        None => (name, 0),
    };
    let encoding = ENCODINGS.iter().find(|(known, _)| *known == name)?.1;
    let mut text = input::decoded(fields.next().unwrap_or_default());
    text.extend_from_slice(secrets.get(index)?);
    text.extend_from_slice(&input::decoded(fields.next().unwrap_or_default()));
    encode(encoding, &text)
}

/// `text` as an upstream would write it; `None` for JSON when it is not UTF-8.
fn encode(encoding: Encoding, text: &[u8]) -> Option<Vec<u8>> {
    Some(match encoding {
        Encoding::Raw => text.to_vec(),
        Encoding::Base64 => STANDARD.encode(text).into_bytes(),
        Encoding::Base64NoPad => STANDARD_NO_PAD.encode(text).into_bytes(),
        Encoding::Base64Url => URL_SAFE.encode(text).into_bytes(),
        Encoding::Base64UrlNoPad => URL_SAFE_NO_PAD.encode(text).into_bytes(),
        Encoding::PercentUpper => reference::percent_encode(text).into_bytes(),
        Encoding::PercentLower => lower_hex(&reference::percent_encode(text)).into_bytes(),
        Encoding::PercentPlus => reference::percent_encode(text)
            .replace("%20", "+")
            .into_bytes(),
        Encoding::Json(outer) => json_string(outer, std::str::from_utf8(text).ok()?).into_bytes(),
        Encoding::JsonTwice(outer) => {
            let inner = json_string(Outer::Serde, std::str::from_utf8(text).ok()?);
            json_string(outer, &inner).into_bytes()
        }
    })
}

/// Every form of `secret` that must not survive redaction, named for the message.
fn forms(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut forms = vec![("raw".to_owned(), secret.to_vec())];
    for (name, engine) in [("base64", STANDARD_NO_PAD), ("base64url", URL_SAFE_NO_PAD)] {
        for before in 0..3usize {
            let mut shifted = vec![0u8; before];
            shifted.extend_from_slice(secret);
            let encoded = engine.encode(&shifted);
            // Character i carries bits 6i..6i+6; keep the ones made of the value's bits only.
            let first = (8 * before).div_ceil(6);
            let end = 8 * (before + secret.len()) / 6;
            forms.push((
                format!("{name} (+{before})"),
                encoded.as_bytes()[first..end].to_vec(),
            ));
        }
    }
    let percent = reference::percent_encode(secret);
    forms.push(("percent".into(), percent.clone().into_bytes()));
    forms.push((
        "percent, lower-case".into(),
        lower_hex(&percent).into_bytes(),
    ));
    forms.push((
        "percent, + for space".into(),
        percent.replace("%20", "+").into_bytes(),
    ));
    if let Ok(text) = std::str::from_utf8(secret) {
        for outer in [Outer::Serde, Outer::SerdeSlashes, Outer::Python, Outer::Php] {
            forms.push((
                format!("JSON {outer:?}"),
                json_string(outer, text).into_bytes(),
            ));
            let twice = json_string(outer, &json_string(Outer::Serde, text));
            forms.push((format!("JSON twice {outer:?}"), twice.into_bytes()));
        }
    }
    forms.retain(|(_, form)| form.len() >= MIN_REDACTED_LEN);
    forms
}

/// The contents of a JSON string holding `text`, as `outer` writes it.
fn json_string(outer: Outer, text: &str) -> String {
    let quoted = serde_json::to_string(text).expect("a string serializes");
    let serde = &quoted[1..quoted.len() - 1];
    let ascii_only = |escaped: &str| {
        let mut ascii = String::new();
        for character in escaped.chars() {
            if character.is_ascii() {
                ascii.push(character);
            } else {
                for unit in character.encode_utf16(&mut [0; 2]) {
                    ascii.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        ascii
    };
    match outer {
        Outer::Serde => serde.to_owned(),
        Outer::SerdeSlashes => serde.replace('/', "\\/"),
        Outer::Python => ascii_only(serde),
        Outer::Php => ascii_only(serde).replace('/', "\\/"),
    }
}

fn lower_hex(percent: &str) -> String {
    let mut lower = String::with_capacity(percent.len());
    let mut hex_left = 0;
    for character in percent.chars() {
        if hex_left > 0 {
            lower.push(character.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            hex_left = if character == '%' { 2 } else { 0 };
            lower.push(character);
        }
    }
    lower
}

/// Pieces of the body as header values: every form gone from each value, names untouched.
fn check_headers(
    u: &mut Unstructured,
    secrets: &[Vec<u8>],
    forms: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<()> {
    let names = ["location", "x-echo", "www-authenticate"];
    let mut headers = HeaderMap::new();
    for piece in input::chunks(u, body)? {
        if let Ok(value) = HeaderValue::from_bytes(piece) {
            headers.append(HeaderName::from_static(u.choose(&names)?), value);
        }
    }
    let carried = headers.values().any(|value| {
        forms
            .iter()
            .any(|(_, form)| reference::contains(value.as_bytes(), form))
    });
    let redactor = Redactor::new(secrets.iter().map(|s| (s.as_slice(), HEADER_LABEL)))
        .expect("values of at least MIN_REDACTED_LEN bytes");
    let names_before: Vec<HeaderName> = headers.keys().cloned().collect();
    let matches = redactor.headers(&mut headers);
    assert_eq!(headers.keys().cloned().collect::<Vec<_>>(), names_before);
    if carried {
        assert!(matches > 0, "a header carried a form and none was replaced");
    }
    for value in headers.values() {
        for (name, form) in forms {
            assert!(
                !reference::contains(value.as_bytes(), form),
                "the {name} form is still in a header value"
            );
        }
    }
    Ok(())
}
