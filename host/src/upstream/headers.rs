//! Hop-by-hop hygiene: the request headers that belong to one hop and are never forwarded,
//! and the response headers that must not travel back to the agent (with `Set-Cookie`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Request headers that belong to one hop: never forwarded.
const HOP_BY_HOP_REQUEST: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Response headers that must not travel back to the agent.
const HOP_BY_HOP_RESPONSE: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // A session cookie the upstream sets is as good as the credential that earned it.
    header::SET_COOKIE,
    HeaderName::from_static("set-cookie2"),
];

/// Remove the hop-by-hop headers of a request: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-Connection`, `Proxy-Authorization`, `TE` (but `TE: trailers` is kept),
/// `Trailer`, `Transfer-Encoding`, `Upgrade`. [`Upstream::send`] does this; the ingress should
/// too, before the plugin runs, so that an agent cannot name the credential's header in
/// `Connection` and have it removed after the plugin set it.
pub fn clean_request_headers(headers: &mut HeaderMap) {
    let wants_trailers = headers.get_all(header::TE).iter().any(|value| {
        tokens(value).any(|token| {
            let name = token.split(|b| *b == b';').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
    });
    remove_connection_named(headers);
    for name in &HOP_BY_HOP_REQUEST {
        headers.remove(name);
    }
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Remove what must not travel back to the agent: hop-by-hop headers (and any header the
/// upstream names in `Connection`) and `Set-Cookie`.
pub fn clean_response_headers(headers: &mut HeaderMap) {
    remove_connection_named(headers);
    for name in &HOP_BY_HOP_RESPONSE {
        headers.remove(name);
    }
}

/// Remove every header named in a `Connection` header (RFC 9110 §7.6.1).
fn remove_connection_named(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(tokens)
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// The comma-separated elements of a header value, trimmed, empty ones left out.
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}
