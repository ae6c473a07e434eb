//! Accept: the explicit ingress `/proxy/{target_host}/{path}[?query]`.
//!
//! The first segment names the upstream (`api.stripe.com` or `api.stripe.com:8443`); the rest
//! of the path and the query go upstream as they came. The upstream is always `https`. The
//! agent's own credentials to the proxy (`Authorization`, `Proxy-Authorization`) and
//! `X-Vault` never leave; `Host` is the upstream's.

use http::{HeaderMap, HeaderName, Uri, request::Parts};

use super::ProxyError;
use crate::authority::{AuthorityError, parse_authority};
use crate::request::{RequestHead, Scheme};

/// Where a request is going.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https`, except for plain-http requests through the transparent proxy.
    pub scheme: Scheme,
    /// Lower case.
    pub host: String,
    pub port: u16,
    /// The path as it goes on the wire, starting with `/`.
    pub path: String,
    pub query: Option<String>,
}

/// Headers the agent sends to the proxy and the upstream must never see.
const AGENT_ONLY: [HeaderName; 4] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::HOST,
    HeaderName::from_static("x-vault"),
];

/// The target of `/proxy/{host}/{path}`.
pub fn target(uri: &Uri) -> Result<Target, ProxyError> {
    let rest = uri
        .path()
        .strip_prefix("/proxy/")
        .ok_or_else(|| ProxyError::BadRequest("the proxy path is /proxy/{host}/{path}".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    let (host, port) = parse_authority(authority).map_err(|error| {
        ProxyError::BadRequest(match error {
            AuthorityError::Port => format!("invalid port in target host {authority:?}"),
            AuthorityError::Host => {
                format!("invalid target host {authority:?}: use /proxy/api.example.com/path")
            }
        })
    })?;
    Ok(Target {
        scheme: Scheme::Https,
        host,
        port: port.unwrap_or(443),
        path: path.to_owned(),
        query: uri.query().map(str::to_owned),
    })
}

/// The outgoing request: the agent's method, path, query and headers, minus its own
/// credentials to the proxy.
pub fn request_head(parts: &Parts, target: &Target) -> RequestHead {
    let mut headers: HeaderMap = parts.headers.clone();
    for name in AGENT_ONLY {
        headers.remove(name);
    }
    // Before the plugin runs: a header the agent names in `Connection` must not be removed
    // after the plugin has set or signed it.
    crate::upstream::clean_request_headers(&mut headers);
    RequestHead {
        method: parts.method.clone(),
        scheme: target.scheme,
        host: target.host.clone(),
        port: target.port,
        path: target.path.clone(),
        query: target.query.clone(),
        headers,
    }
}

/// The cookies of a person's browser: the login session (Agent Vault's name for it) and the
/// device token that keeps that person's sign-ins clear of other clients' failures.
const SESSION_COOKIES: [&str; 2] = ["av_session", "av_device"];

/// Take the agent's own session material out of what goes upstream: the browser's session
/// and device cookies, and any header value, cookie or query parameter that carries `token` (the token
/// the agent authenticated with). The upstream must never be able to act as the agent.
pub fn drop_session_material(head: &mut RequestHead, token: &str) {
    let carries = |value: &[u8]| memchr::memmem::find(value, token.as_bytes()).is_some();
    let mut kept = HeaderMap::with_capacity(head.headers.len());
    let mut changed = false;
    for (name, value) in head.headers.iter() {
        if name == http::header::COOKIE {
            let text = String::from_utf8_lossy(value.as_bytes());
            let pairs: Vec<&str> = text
                .split(';')
                .map(str::trim)
                .filter(|pair| {
                    let cookie_name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
                    !pair.is_empty()
                        && !SESSION_COOKIES.contains(&cookie_name)
                        && !carries(pair.as_bytes())
                })
                .collect();
            let joined = pairs.join("; ");
            if joined.as_bytes() != value.as_bytes() {
                changed = true;
            }
            if let Ok(value) = http::HeaderValue::from_str(&joined)
                && !joined.is_empty()
            {
                kept.append(name.clone(), value);
            }
        } else if carries(value.as_bytes()) {
            changed = true;
        } else {
            kept.append(name.clone(), value.clone());
        }
    }
    if changed {
        head.headers = kept;
    }
    head.remove_query_values_containing(token);
}

/// The protocol an `Upgrade` request asks for (`Connection: upgrade` and an `Upgrade`
/// header), if it is one.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<http::HeaderValue> {
    let connection_upgrade = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    headers.get(http::header::UPGRADE).cloned()
}

/// Refuse a request whose framing two parsers could read differently (RFC 9112 §6.1, §6.3):
/// `Content-Length` together with `Transfer-Encoding`, or `Transfer-Encoding` that is not
/// exactly one `chunked`. hyper has already taken the body by `Transfer-Encoding` and closes
/// the connection after such a message; refusing it means nothing of it goes upstream either.
pub fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
    let encodings: Vec<&[u8]> = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    if encodings.is_empty() {
        return Ok(());
    }
    if headers.contains_key(http::header::CONTENT_LENGTH) {
        return Err(ProxyError::BadRequest(
            "the request has both Content-Length and Transfer-Encoding; send one".into(),
        ));
    }
    if encodings.len() > 1 || !encodings[0].eq_ignore_ascii_case(b"chunked") {
        return Err(ProxyError::BadRequest(
            "the request's Transfer-Encoding must be exactly \"chunked\"".into(),
        ));
    }
    Ok(())
}

/// The request's declared body length, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Result<Target, ProxyError> {
        target(&uri.parse().unwrap())
    }

    #[test]
    fn the_first_segment_is_the_upstream() {
        let t = parse("/proxy/API.Stripe.com/v1/charges?limit=3").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str(), t.query.as_deref()),
            ("api.stripe.com", 443, "/v1/charges", Some("limit=3"))
        );
        let t = parse("/proxy/internal.example.com:8443").unwrap();
        assert_eq!((t.port, t.path.as_str()), (8443, "/"));
        let t = parse("/proxy/API.Stripe.com./v1").unwrap();
        assert_eq!(
            t.host, "api.stripe.com",
            "a fully qualified name is the same host"
        );
    }

    #[test]
    fn the_agents_session_never_goes_upstream() {
        let token = "av_sess_0123456789abcdef";
        let request = http::Request::builder()
            .uri(format!("/proxy/api.example.com/x?a=1&t={token}&b=2"))
            .header(
                "cookie",
                format!("theme=dark; av_session=other; sid={token}; lang=en"),
            )
            .header("cookie", "av_session=abc; av_device=av_dev_123")
            .header("x-echo", format!("Bearer {token}"))
            .header("accept", "*/*")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let target = target(&parts.uri).unwrap();
        let mut head = request_head(&parts, &target);
        drop_session_material(&mut head, token);
        let cookies: Vec<_> = head.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["theme=dark; lang=en"]);
        assert!(head.headers.get("x-echo").is_none());
        assert_eq!(head.headers.get("accept").unwrap(), "*/*");
        assert_eq!(head.query.as_deref(), Some("a=1&b=2"));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let check = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            check_framing(&headers).is_ok()
        };
        assert!(check(&[]));
        assert!(check(&[("content-length", "4")]));
        assert!(check(&[("transfer-encoding", "chunked")]));
        assert!(check(&[("transfer-encoding", "Chunked")]));
        assert!(!check(&[
            ("content-length", "4"),
            ("transfer-encoding", "chunked")
        ]));
        assert!(!check(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ]));
        assert!(!check(&[("transfer-encoding", "chunked, chunked")]));
        assert!(!check(&[("transfer-encoding", "gzip, chunked")]));
    }

    #[test]
    fn bad_targets_are_refused() {
        for uri in [
            "/proxy//x",
            "/proxy/a@b.com/x",
            "/proxy/api.x.com:0/",
            "/proxy/api.x.com:99999/",
            "/proxy/.x.com/",
            "/proxy/x.com../",
            "/proxy/x%2e.com/",
        ] {
            assert!(
                matches!(parse(uri), Err(ProxyError::BadRequest(_))),
                "{uri}"
            );
        }
    }
}
