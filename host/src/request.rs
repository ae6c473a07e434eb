//! The head of an outgoing request: what the proxy forwards upstream and what plugins shape.
//!
//! `RequestHead` owns the method, target, path, raw query and headers of one request. It
//! keeps the query as the client sent it and edits it in place, so parameters nobody touched
//! keep their exact bytes (which matters to signatures). It knows nothing about plugins or
//! credentials; `fill` edits it and the forwarder sends it.

use std::fmt;

use http::{HeaderMap, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// `https` or `http`: the scheme the proxy uses toward the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Everything in an outgoing request but its body.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub scheme: Scheme,
    /// Lower-case host name or IP literal, without port.
    pub host: String,
    pub port: u16,
    /// The path as it goes on the wire (percent-encoded), starting with `/`.
    pub path: String,
    /// The raw query string without the `?`, if the request has one.
    pub query: Option<String>,
    pub headers: HeaderMap,
}

/// A URL that `RequestHead::from_url` could not use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid URL {url:?}: {reason}")]
pub struct InvalidUrl {
    url: String,
    reason: &'static str,
}

/// Characters escaped in query names and values: everything but RFC 3986 unreserved.
pub const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl RequestHead {
    /// Parse an absolute `http://` or `https://` URL into a request with no headers.
    pub fn from_url(method: Method, url: &str) -> Result<Self, InvalidUrl> {
        let invalid = |reason| InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|_| invalid("not a valid absolute URL"))?;
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information in the URL is not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("the URL has no host"));
        }
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        let path = match uri.path() {
            "" => "/".to_owned(),
            path => path.to_owned(),
        };
        Ok(RequestHead {
            method,
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path,
            query: uri.query().map(str::to_owned),
            headers: HeaderMap::new(),
        })
    }

    /// The `Host` header value: the host, with the port unless it is the scheme's default.
    pub fn authority(&self) -> String {
        let host = crate::authority::display_host(&self.host);
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Path and query as they go in the request line.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// Query parameters, percent-decoded, in order. Invalid UTF-8 is replaced, so this is a
    /// view for reading; edits go through `set_query_param` and `remove_query_param`.
    pub fn query_params(&self) -> Vec<(String, String)> {
        raw_query_pairs(self.query.as_deref())
            .map(|(name, value)| (decode_component(name), decode_component(value)))
            .collect()
    }

    /// Remove every parameter whose decoded name is `name`.
    pub fn remove_query_param(&mut self, name: &str) {
        let Some(query) = &self.query else { return };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let raw_name = pair.split_once('=').map_or(*pair, |(n, _)| n);
                decode_component(raw_name) != name
            })
            .collect();
        self.query = if kept.is_empty() {
            None
        } else {
            Some(kept.join("&"))
        };
    }

    /// Remove every parameter whose decoded value contains `needle`.
    pub fn remove_query_values_containing(&mut self, needle: &str) {
        let Some(query) = &self.query else { return };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let raw_value = pair.split_once('=').map_or("", |(_, v)| v);
                !decode_component(raw_value).contains(needle)
            })
            .collect();
        self.query = if kept.is_empty() {
            None
        } else {
            Some(kept.join("&"))
        };
    }

    /// Replace every parameter named `name` with one `name=value`, encoding both, at the
    /// position of the first one replaced (or at the end).
    pub fn set_query_param(&mut self, name: &str, value: &[u8]) {
        let encoded = format!(
            "{}={}",
            utf8_percent_encode(name, QUERY_COMPONENT),
            percent_encoding::percent_encode(value, QUERY_COMPONENT)
        );
        let mut pairs: Vec<String> = Vec::new();
        let mut placed = false;
        if let Some(query) = &self.query {
            for pair in query.split('&') {
                let raw_name = pair.split_once('=').map_or(pair, |(n, _)| n);
                if decode_component(raw_name) == name {
                    if !placed {
                        pairs.push(encoded.clone());
                        placed = true;
                    }
                } else {
                    pairs.push(pair.to_owned());
                }
            }
        }
        if !placed {
            pairs.push(encoded);
        }
        self.query = Some(pairs.join("&"));
    }
}

impl fmt::Display for RequestHead {
    /// `METHOD scheme://authority/path?query`, the way `plugin test` prints a request.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}://{}{}",
            self.method,
            self.scheme.as_str(),
            self.authority(),
            self.path_and_query()
        )
    }
}

/// Headers neither a plugin nor a placeholder may change: the target, message framing,
/// hop-by-hop headers, the proxy's own, and those that make an upstream (or a proxy in front
/// of it) read another host, path or method than the request's own, past the service's rules.
/// They leave exactly as the agent sent them (or as the forwarder sets them).
const PROTECTED_HEADERS: [&str; 20] = [
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
const PROTECTED_HEADER_PREFIX: &str = "x-agent-vault-";

/// Whether `name` is one of [`PROTECTED_HEADERS`] or the proxy's own `X-Agent-Vault-*`.
pub fn is_protected_header(name: &http::HeaderName) -> bool {
    let name = name.as_str();
    PROTECTED_HEADERS.contains(&name) || name.starts_with(PROTECTED_HEADER_PREFIX)
}

/// Whether a message's body has a content coding (`Content-Encoding` other than
/// `identity`): its bytes are not the content, so they cannot be searched or rewritten.
pub fn has_content_coding(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|value| {
            !value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"identity")
        })
}

/// `(raw name, raw value)` for each non-empty `&`-separated pair of a raw query.
pub fn raw_query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Percent-decode one query component; `+` stays `+`.
pub fn decode_component(raw: &str) -> String {
    percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

/// A part of the request a placeholder is looked for in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Path,
    Query,
    Header,
    Body,
    WebSocket,
}

impl Surface {
    pub const ALL: [Surface; 5] = [
        Surface::Path,
        Surface::Query,
        Surface::Header,
        Surface::Body,
        Surface::WebSocket,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Path => "path",
            Surface::Query => "query",
            Surface::Header => "header",
            Surface::Body => "body",
            Surface::WebSocket => "websocket",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(url: &str) -> RequestHead {
        RequestHead::from_url(Method::GET, url).unwrap()
    }

    #[test]
    fn parses_host_port_path_and_query() {
        let request = head("https://API.Example.com:8443/v1/charges?limit=3&x=%20y");
        assert_eq!(request.host, "api.example.com");
        assert_eq!(request.port, 8443);
        assert_eq!(request.path, "/v1/charges");
        assert_eq!(request.query.as_deref(), Some("limit=3&x=%20y"));
        assert_eq!(request.authority(), "api.example.com:8443");
        assert_eq!(
            request.query_params(),
            vec![("limit".into(), "3".into()), ("x".into(), " y".into())]
        );
    }

    #[test]
    fn default_port_is_left_out_of_the_authority() {
        assert_eq!(head("https://example.com").authority(), "example.com");
        assert_eq!(head("https://example.com").path, "/");
        assert_eq!(head("http://example.com:80/a").authority(), "example.com");
    }

    #[test]
    fn refuses_urls_it_cannot_forward() {
        for url in [
            "ftp://example.com/",
            "/relative",
            "https://user:pw@example.com/",
        ] {
            assert!(RequestHead::from_url(Method::GET, url).is_err(), "{url}");
        }
    }

    #[test]
    fn set_query_param_replaces_all_values_in_place_and_keeps_other_bytes() {
        let mut request = head("https://example.com/?a=1&key=old&b=%7e&key=older");
        request.set_query_param("key", b"n w&");
        assert_eq!(request.query.as_deref(), Some("a=1&key=n%20w%26&b=%7e"));
    }

    #[test]
    fn set_query_param_appends_when_absent() {
        let mut request = head("https://example.com/");
        request.set_query_param("api_key", b"k");
        assert_eq!(request.path_and_query(), "/?api_key=k");
    }

    #[test]
    fn remove_query_param_matches_decoded_names() {
        let mut request = head("https://example.com/?X-Amz-Signature=1&a=2&X%2DAmz%2DSignature=3");
        request.remove_query_param("X-Amz-Signature");
        assert_eq!(request.query.as_deref(), Some("a=2"));
        request.remove_query_param("a");
        assert_eq!(request.query, None);
    }
}
