//! Placeholder substitution: where the agent's request has a service's placeholder (say
//! `__telegram_bot_token__` in the path), the outgoing request gets the credential value,
//! encoded for the place it lands in.
//!
//! [`Placeholders`] holds the values of one request. It rewrites the path (the value as an
//! escaped path segment), the query (query-escaped) and header values (raw; a value with CR,
//! LF or other control bytes stops the request) of the outgoing head in place, and hands out
//! the find-and-replace tables for the body (escaped by content type) and for WebSocket text
//! frames, which `replace.rs` and `upstream::websocket` apply as the bytes stream. It runs
//! after the plugin, which sees the request with placeholders still in place.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use percent_encoding::percent_encode;
use zeroize::Zeroizing;

use super::Secret;
use super::render::check_path;
use super::replace::Replacements;
use crate::request::Surface;
use crate::request::{QUERY_COMPONENT, RequestHead, has_content_coding, is_protected_header};

/// A substitution that cannot be made; the request is not sent. Names the credential key,
/// never its value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlaceholderError {
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
    pub fn apply_to_head(&self, head: &mut RequestHead) -> Result<(), PlaceholderError> {
        for entry in self.on(Surface::Path) {
            if !head.path.contains(&entry.text) {
                continue;
            }
            let escaped = percent_encode(entry.value.expose(), QUERY_COMPONENT).to_string();
            let path = head.path.replace(&entry.text, &escaped);
            check_path(path.as_bytes()).map_err(|error| PlaceholderError::InvalidPath {
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
    pub fn for_body(&self, kind: BodyKind) -> Result<Option<Arc<Replacements>>, PlaceholderError> {
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
                        std::str::from_utf8(value).map_err(|_| PlaceholderError::NotJsonSafe {
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
) -> Result<(), PlaceholderError> {
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
                return Err(PlaceholderError::NotHeaderSafe {
                    key: entry.key.clone(),
                });
            }
            bytes = Some(Zeroizing::new(replaced));
        }
        if let Some(bytes) = bytes {
            let mut header =
                HeaderValue::from_bytes(&bytes).map_err(|_| PlaceholderError::NotHeaderSafe {
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
mod tests;
