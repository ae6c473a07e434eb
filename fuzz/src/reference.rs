//! Reference implementations: the simplest code that does what the host's faster or more
//! careful code claims to do. A target feeds both the same input and asserts they agree.

/// Leftmost-longest, non-overlapping find-and-replace over a whole buffer: at each position
/// the longest pattern that starts there is replaced (the first pair among equal patterns),
/// else the byte is kept. Empty patterns are never matched. Returns the output and the
/// number of matches. This is what `vault::replace` promises for any chunking of the input.
pub fn replace_all(pairs: &[(Vec<u8>, Vec<u8>)], input: &[u8]) -> (Vec<u8>, u64) {
    let mut output = Vec::with_capacity(input.len());
    let mut matches = 0;
    let mut at = 0;
    while at < input.len() {
        let mut best: Option<&(Vec<u8>, Vec<u8>)> = None;
        for pair in pairs {
            let longer = best.is_none_or(|(pattern, _)| pair.0.len() > pattern.len());
            if !pair.0.is_empty() && longer && input[at..].starts_with(&pair.0) {
                best = Some(pair);
            }
        }
        match best {
            Some((pattern, replacement)) => {
                output.extend_from_slice(replacement);
                at += pattern.len();
                matches += 1;
            }
            None => {
                output.push(input[at]);
                at += 1;
            }
        }
    }
    (output, matches)
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Percent-encoding of every byte outside RFC 3986 unreserved (`A-Za-z0-9-._~`), upper-case
/// hex: the plugin contract's `percent` and what placeholders become in a path, a query or
/// a form body.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len() * 3);
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes every `%XX`; `None` if a `%` is not followed by two hex digits.
pub fn percent_decode_strict(text: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        if text[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return None;
            }
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            decoded.push(text[at]);
            at += 1;
        }
    }
    Some(decoded)
}

/// How the reference canonicaliser sees a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalPath {
    Canonical(String),
    /// A `.` or `..` segment once decoded, with `\` read as `/`.
    DotSegment,
    /// A `%` without two hex digits.
    BadEncoding,
}

/// The route's canonical path, as `proxy::route` documents it: percent-decoded once
/// (invalid UTF-8 replaced), `\` read as `/`, runs of `/` collapsed, a trailing `/` kept,
/// and any `.` or `..` segment refused.
pub fn canonical_path(raw: &str) -> CanonicalPath {
    let Some(decoded) = percent_decode_strict(raw.as_bytes()) else {
        return CanonicalPath::BadEncoding;
    };
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments
        .iter()
        .any(|segment| matches!(*segment, "." | ".."))
    {
        return CanonicalPath::DotSegment;
    }
    let mut canonical = format!("/{}", segments.join("/"));
    if !segments.is_empty() && decoded.ends_with('/') {
        canonical.push('/');
    }
    CanonicalPath::Canonical(canonical)
}

/// A glob where `*` matches any run of bytes (`/` included) and every other byte itself,
/// run as a set of reachable positions (no backtracking to get wrong).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let text = text.as_bytes();
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for &wanted in pattern.as_bytes() {
        if wanted == b'*' {
            let mut seen = false;
            for position in reachable.iter_mut() {
                seen |= *position;
                *position = seen;
            }
        } else {
            for end in (1..=text.len()).rev() {
                reachable[end] = reachable[end - 1] && text[end - 1] == wanted;
            }
            reachable[0] = false;
        }
    }
    reachable[text.len()]
}

/// Headers neither a plugin nor a placeholder may change, written out again from
/// ARCHITECTURE.md's invariant 5 rather than taken from the host, so that a header dropped
/// from the host's list is caught: the target, framing, hop-by-hop, forwarding, method and
/// URL overrides, and the proxy's own.
pub fn protected_header(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "forwarded",
        "x-forwarded-host",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method",
        "x-http-method-override",
        "x-method-override",
        "x-vault",
    ];
    let name = name.to_ascii_lowercase();
    NAMES.contains(&name.as_str()) || name.starts_with("x-agent-vault-")
}
