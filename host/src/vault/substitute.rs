//! Placeholder substitution: where the agent's request has a service's placeholder (say
//! `__telegram_bot_token__` in the path), the outgoing request gets the credential value,
//! encoded for the place it lands in.
//!
//! [`Placeholders`] holds the values of one request. It rewrites the path (the value as an
//! escaped path segment), the query (query-escaped) and header values (raw; a value with CR,
//! LF or other control bytes stops the request) of the outgoing head in place, and hands out
//! the find-and-replace tables for the body (escaped by content type) and for WebSocket text
//! frames, which `replace.rs` and `forward::websocket` apply as the bytes stream. It runs
//! after the plugin, which sees the request with placeholders still in place.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use percent_encoding::percent_encode;
use zeroize::Zeroizing;

use super::Secret;
use super::render::check_path;
use super::replace::Replacements;
use crate::request::{QUERY_COMPONENT, RequestHead, has_content_coding, is_protected_header};
use crate::services::Surface;

/// A substitution that cannot be made; the request is not sent. Names the credential key,
/// never its value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SubstitutionError {
    #[error(
        "the credential \"{key}\" cannot go into a header: it has CR, LF, NUL or other control characters"
    )]
    NotHeaderSafe { key: String },
    #[error("the credential \"{key}\" cannot go into a JSON body: it is not UTF-8")]
    NotJsonSafe { key: String },
    #[error("the path after substituting \"{key}\" {reason}")]
    InvalidPath { key: String, reason: String },
}

/// One placeholder and the value it stands for.
struct Placeholder {
    key: String,
    text: String,
    surfaces: Vec<Surface>,
    value: Secret,
}

/// The placeholders of one request's service, with their values.
#[derive(Default)]
pub struct Placeholders {
    entries: Vec<Placeholder>,
}

impl std::fmt::Debug for Placeholders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|entry| &entry.text))
            .finish()
    }
}

/// How a body is written, which decides how a value is escaped in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`: query-escaped.
    Form,
    /// `application/json` and `*+json`: JSON-string-escaped.
    Json,
    /// Anything else that is not multipart or compressed: the raw value.
    Raw,
}

impl BodyKind {
    /// The kind of a request body, or `None` for bodies left untouched: multipart (its parts
    /// have their own types and lengths) and compressed ones.
    pub fn of(headers: &HeaderMap) -> Option<BodyKind> {
        if has_content_coding(headers) {
            return None;
        }
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence.starts_with("multipart/") {
            None
        } else if essence == "application/x-www-form-urlencoded" {
            Some(BodyKind::Form)
        } else if essence == "application/json" || essence.ends_with("+json") {
            Some(BodyKind::Json)
        } else {
            Some(BodyKind::Raw)
        }
    }
}

impl Placeholders {
    /// `(credential key, placeholder, surfaces, value)` for each substitution.
    pub fn new(entries: impl IntoIterator<Item = (String, String, Vec<Surface>, Secret)>) -> Self {
        Placeholders {
            entries: entries
                .into_iter()
                .map(|(key, text, surfaces, value)| Placeholder {
                    key,
                    text,
                    surfaces,
                    value,
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn on(&self, surface: Surface) -> impl Iterator<Item = &Placeholder> {
        self.entries
            .iter()
            .filter(move |entry| entry.surfaces.contains(&surface))
    }

    /// Substitute in the path, the query and the header values of the outgoing request.
    pub fn apply_to_head(&self, head: &mut RequestHead) -> Result<(), SubstitutionError> {
        for entry in self.on(Surface::Path) {
            if !head.path.contains(&entry.text) {
                continue;
            }
            let escaped = percent_encode(entry.value.expose(), QUERY_COMPONENT).to_string();
            let path = head.path.replace(&entry.text, &escaped);
            check_path(path.as_bytes()).map_err(|error| SubstitutionError::InvalidPath {
                key: entry.key.clone(),
                reason: error.to_string().trim_start_matches("the path ").to_owned(),
            })?;
            head.path = path;
        }
        for entry in self.on(Surface::Query) {
            if let Some(query) = &mut head.query
                && query.contains(&entry.text)
            {
                let escaped = percent_encode(entry.value.expose(), QUERY_COMPONENT).to_string();
                *query = query.replace(&entry.text, &escaped);
            }
        }
        let in_headers: Vec<&Placeholder> = self.on(Surface::Header).collect();
        if !in_headers.is_empty() {
            substitute_headers(&mut head.headers, &in_headers)?;
        }
        Ok(())
    }

    /// The replacements for a body of `kind`, if any placeholder is looked for in bodies.
    pub fn for_body(&self, kind: BodyKind) -> Result<Option<Arc<Replacements>>, SubstitutionError> {
        let mut pairs = Vec::new();
        for entry in self.on(Surface::Body) {
            let value = entry.value.expose();
            let encoded = match kind {
                BodyKind::Raw => value.to_vec(),
                BodyKind::Form => percent_encode(value, QUERY_COMPONENT)
                    .to_string()
                    .into_bytes(),
                BodyKind::Json => {
                    let text =
                        std::str::from_utf8(value).map_err(|_| SubstitutionError::NotJsonSafe {
                            key: entry.key.clone(),
                        })?;
                    let quoted = serde_json::to_string(text).expect("a string serializes");
                    quoted.as_bytes()[1..quoted.len() - 1].to_vec()
                }
            };
            pairs.push((entry.text.as_bytes().to_vec(), encoded));
        }
        Ok(Replacements::new(pairs).map(Arc::new))
    }

    /// The replacements for WebSocket text messages (raw values), if any.
    pub fn for_websocket(&self) -> Option<Arc<Replacements>> {
        let pairs = self.on(Surface::WebSocket).map(|entry| {
            (
                entry.text.as_bytes().to_vec(),
                entry.value.expose().to_vec(),
            )
        });
        Replacements::new(pairs).map(Arc::new)
    }
}

/// Every header value but the protected ones (`Host`, framing, hop-by-hop, forwarding and the
/// proxy's own, which keep what the agent sent): each placeholder replaced by its raw value.
/// A value that cannot be a header value fails the request rather than going out cut or
/// mangled.
fn substitute_headers(
    headers: &mut HeaderMap,
    placeholders: &[&Placeholder],
) -> Result<(), SubstitutionError> {
    for (name, value) in headers.iter_mut() {
        if is_protected_header(name) {
            continue;
        }
        let mut bytes: Option<Zeroizing<Vec<u8>>> = None;
        for entry in placeholders {
            let current = bytes.as_deref().map_or(value.as_bytes(), Vec::as_slice);
            let Some(replaced) =
                replace_bytes(current, entry.text.as_bytes(), entry.value.expose())
            else {
                continue;
            };
            if HeaderValue::from_bytes(entry.value.expose()).is_err() {
                return Err(SubstitutionError::NotHeaderSafe {
                    key: entry.key.clone(),
                });
            }
            bytes = Some(Zeroizing::new(replaced));
        }
        if let Some(bytes) = bytes {
            let mut header =
                HeaderValue::from_bytes(&bytes).map_err(|_| SubstitutionError::NotHeaderSafe {
                    key: placeholders[0].key.clone(),
                })?;
            header.set_sensitive(true);
            *value = header;
        }
    }
    Ok(())
}

/// `haystack` with every `needle` replaced, or `None` if it has none.
fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = haystack;
    let mut found = false;
    while let Some(at) = rest
        .windows(needle.len())
        .position(|window| window == needle)
    {
        found = true;
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    if !found {
        return None;
    }
    out.extend_from_slice(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
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
            Err(SubstitutionError::NotHeaderSafe { key: "KEY".into() })
        );
        let shown = SubstitutionError::NotHeaderSafe { key: "KEY".into() }.to_string();
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
}
