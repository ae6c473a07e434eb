//! Placeholders in the request body and in WebSocket text messages, on the proxy's side:
//! which bodies are rewritten, whole or streamed, and what that does to `Content-Length`.
//! The values and their encodings stay in `crate::vault::placeholders`; path, query and
//! headers are rewritten there directly.
//!
//! A body with a known length up to [`WHOLE_BODY_LIMIT`] is rewritten whole and keeps an exact
//! `Content-Length`. A longer or chunked one streams through a bounded window (memory does not
//! grow with the body) and goes out chunked, since its new length is not known in advance.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError};
use hyper::body::Body;
use sha2::{Digest, Sha256};

use super::{ProxyError, full, ingress};
use crate::plugin::body::HashedBody;
use crate::request::RequestHead;
use crate::services::{Service, Surface};
use crate::upstream::ProxyBody;
use crate::upstream::websocket::MessageRewriter;
use crate::vault::placeholders::{BodyKind, Placeholders};
use crate::vault::replace::{ReplacedBody, Replacements, StreamReplacer};

/// The longest body with a known length that is rewritten in memory.
pub const WHOLE_BODY_LIMIT: u64 = 1024 * 1024;

/// What to look for in this request's body, if the service substitutes in bodies and the
/// body is one that can be rewritten (not multipart, not compressed).
pub fn body_replacements(
    service: &Service,
    placeholders: &Placeholders,
    head: &RequestHead,
) -> Result<Option<Arc<Replacements>>, ProxyError> {
    if !service.substitutes_on(Surface::Body) {
        return Ok(None);
    }
    let Some(kind) = BodyKind::of(&head.headers) else {
        return Ok(None);
    };
    placeholders.for_body(kind).map_err(ProxyError::Placeholder)
}

/// A body read whole for a signing plugin, with its placeholders replaced and its hash and
/// length made to match.
pub fn replace_hashed(
    hashed: HashedBody,
    replacements: Option<Arc<Replacements>>,
    headers: &mut HeaderMap,
) -> HashedBody {
    let Some(replaced) = replacements.and_then(|r| r.replace_all(&hashed.bytes)) else {
        return hashed;
    };
    let bytes = Bytes::copy_from_slice(&replaced);
    headers.insert(http::header::CONTENT_LENGTH, bytes.len().into());
    HashedBody {
        sha256: Sha256::digest(&bytes).into(),
        bytes,
    }
}

/// The body with its placeholders replaced: whole when its length is known and small,
/// streamed otherwise (`Content-Length` then removed: it goes out chunked).
pub async fn replace_streamed(
    body: ProxyBody,
    replacements: Arc<Replacements>,
    headers: &mut HeaderMap,
    limit: u64,
) -> Result<ProxyBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(body);
    }
    match ingress::content_length(headers) {
        Some(length) if length <= WHOLE_BODY_LIMIT => {
            let bytes = body
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<LengthLimitError>() {
                        ProxyError::RequestTooLarge { limit }
                    } else {
                        ProxyError::BadRequest(format!("reading the request body failed: {error}"))
                    }
                })?
                .to_bytes();
            let bytes = match replacements.replace_all(&bytes) {
                Some(replaced) => Bytes::copy_from_slice(&replaced),
                None => bytes,
            };
            headers.insert(http::header::CONTENT_LENGTH, bytes.len().into());
            Ok(full(bytes))
        }
        _ => {
            headers.remove(http::header::CONTENT_LENGTH);
            Ok(ReplacedBody::new(body, StreamReplacer::new(replacements)).boxed_unsync())
        }
    }
}

/// A rewriter for one of the agent's WebSocket text messages.
pub fn text_rewriter(replacements: &Arc<Replacements>) -> Box<dyn MessageRewriter> {
    Box::new(MessageReplacer(StreamReplacer::new(replacements.clone())))
}

struct MessageReplacer(StreamReplacer);

impl MessageRewriter for MessageReplacer {
    fn feed(&mut self, payload: &[u8]) -> Bytes {
        self.0.feed(payload)
    }

    fn finish(&mut self) -> Bytes {
        self.0.finish()
    }
}
