//! Step 5's answer, for services that redact echoes: the upstream's response headers and
//! body searched for the credential values the service binds (raw, base64, hex,
//! percent-encoded and JSON-escaped: every encoding a plugin can write, `vault/redact.rs`),
//! each found value replaced by its placeholder or `[REDACTED:KEY]`, so an API that echoes
//! the request (an httpbin-style endpoint, an error quoting a header, a
//! `Location` with a signed query) cannot hand a secret to the agent.
//!
//! The proxy asks such upstreams for uncompressed answers (`Accept-Encoding: identity`). A
//! compressed body sent anyway cannot be read, and the service's `compressed_responses`
//! setting decides: refused with 502 `compressed_response` (the default), or passed on
//! unread. Bodies with a known length up to [`WHOLE_RESPONSE_LIMIT`] are redacted whole and
//! keep an exact `Content-Length`; others stream through a bounded window and go out without
//! one. Every redaction is logged as a warning, with the service and the count, never a value.
//!
//! After a WebSocket upgrade, the upstream's messages are searched the same way, each one
//! as it streams through (`websocket_message`).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, LengthLimitError};

use super::{ProxyError, full, ingress};
use crate::request::has_content_coding;
use crate::services::{CompressedResponses, ResponsePolicy};
use crate::upstream::websocket::{MessageRewriter, NewRewriter};
use crate::upstream::{ProxyBody, UpstreamError};
use crate::vault::redact::Redactor;
use crate::vault::replace::{ReplacedBody, StreamReplacer};

/// The longest response with a known length that is redacted in memory.
pub const WHOLE_RESPONSE_LIMIT: u64 = 64 * 1024;

/// The exchange a response belongs to.
#[derive(Debug)]
pub struct Echo<'a> {
    pub service: &'a str,
    pub vault: &'a str,
    pub policy: ResponsePolicy,
    pub request_method: &'a Method,
    pub host: &'a str,
    pub response_limit: Option<u64>,
}

impl Echo<'_> {
    fn report(&self, matches: u64, place: &str) {
        if matches > 0 {
            report(self.service, self.vault, matches, place);
        }
    }
}

fn report(service: &str, vault: &str, matches: u64, place: &str) {
    crate::metrics::metrics().redacted(vault, service, matches);
    tracing::warn!(
        service,
        vault,
        matches,
        "credential echo: the upstream's {place} carried a credential value; redacted"
    );
}

/// A new rewriter for each of the upstream's WebSocket messages (text or binary): credential
/// values replaced as in bodies, the matches reported when each message ends. The caller
/// keeps WebSocket extensions from being agreed, so every message can be read.
pub fn websocket_messages(redactor: &Redactor, service: &str, vault: &str) -> NewRewriter {
    let (redactor, service, vault): (Redactor, Arc<str>, Arc<str>) =
        (redactor.clone(), service.into(), vault.into());
    Box::new(move || {
        Box::new(EchoedMessage {
            replacer: redactor.stream(),
            service: service.clone(),
            vault: vault.clone(),
        })
    })
}

struct EchoedMessage {
    replacer: StreamReplacer,
    service: Arc<str>,
    vault: Arc<str>,
}

impl MessageRewriter for EchoedMessage {
    fn feed(&mut self, payload: &[u8]) -> Bytes {
        self.replacer.feed(payload)
    }

    fn finish(&mut self) -> Bytes {
        let rest = self.replacer.finish();
        let matches = self.replacer.matches();
        if matches > 0 {
            report(&self.service, &self.vault, matches, "websocket message");
        }
        rest
    }
}

/// Redact the response's headers, and its body unless it has none or it is compressed.
pub async fn redact(
    echo: &Echo<'_>,
    redactor: &Redactor,
    parts: &mut http::response::Parts,
    body: ProxyBody,
) -> Result<ProxyBody, ProxyError> {
    echo.report(redactor.headers(&mut parts.headers), "response headers");
    let bodiless = *echo.request_method == Method::HEAD
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return Ok(body);
    }
    if has_content_coding(&parts.headers) {
        return match echo.policy.compressed {
            CompressedResponses::Refuse => Err(ProxyError::CompressedResponse {
                service: echo.service.to_owned(),
            }),
            CompressedResponses::Pass => Ok(body),
        };
    }
    match ingress::content_length(&parts.headers) {
        Some(length) if length <= WHOLE_RESPONSE_LIMIT => {
            redact_whole(echo, redactor, parts, body).await
        }
        _ => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let (service, vault) = (echo.service.to_owned(), echo.vault.to_owned());
            Ok(ReplacedBody::new(body, redactor.stream())
                .on_end(move |matches| {
                    if matches > 0 {
                        report(&service, &vault, matches, "response body");
                    }
                })
                .boxed_unsync())
        }
    }
}

/// A body of known, small length, read whole and redacted, with an exact `Content-Length`.
async fn redact_whole(
    echo: &Echo<'_>,
    redactor: &Redactor,
    parts: &mut http::response::Parts,
    body: ProxyBody,
) -> Result<ProxyBody, ProxyError> {
    let bytes = body
        .collect()
        .await
        .map_err(|error| match echo.response_limit {
            Some(limit) if error.is::<LengthLimitError>() => ProxyError::ResponseTooLarge { limit },
            _ => ProxyError::Upstream(UpstreamError::Protocol {
                host: echo.host.to_owned(),
                reason: format!("reading the response body failed: {error}"),
            }),
        })?
        .to_bytes();
    let Some((redacted, matches)) = redactor.body(&bytes) else {
        return Ok(full(bytes));
    };
    echo.report(matches, "response body");
    let bytes = Bytes::copy_from_slice(&redacted);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, bytes.len().into());
    Ok(full(bytes))
}
