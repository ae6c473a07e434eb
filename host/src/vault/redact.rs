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
use super::value::Encoding;

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
mod tests;
