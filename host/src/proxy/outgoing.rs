//! The outgoing request before the plugin sees it: the agent's head minus its own session
//! material (`ingress.rs`), and its body, limited in size, with the service's placeholders
//! replaced as it streams, or read whole and hashed when the plugin signs the body.

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{ProxyError, ProxyState, Target, body_fill, full, ingress};
use crate::plugin::body::{BodyHashError, hash_body};
use crate::plugin::contract::Requirements;
use crate::plugin::needs_body_sha256;
use crate::request::RequestHead;
use crate::services::Service;
use crate::upstream::{BoxError, ProxyBody};
use crate::vault::placeholders::Placeholders;
use crate::vault::replace::Replacements;

/// What goes upstream once the plugin has shaped `head`.
pub(super) struct Outgoing {
    pub head: RequestHead,
    pub body: ProxyBody,
    /// The body's SHA-256, when the plugin signs it.
    pub body_sha256: Option<[u8; 32]>,
}

/// The agent's request, as it goes to the plugin.
pub(super) async fn prepare(
    state: &ProxyState,
    (parts, body): (&http::request::Parts, Incoming),
    target: &Target,
    token: &str,
    (service, placeholders, redacting): (&Service, &Placeholders, bool),
    requirements: &Requirements,
) -> Result<Outgoing, ProxyError> {
    let mut head = ingress::request_head(parts, target);
    ingress::drop_session_material(&mut head, token);
    if redacting {
        // Redaction reads response bodies; ask for them uncompressed (see redact.rs).
        head.headers.insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
    }
    let replacements = body_fill::body_replacements(service, placeholders, &head)?;
    if needs_body_sha256(&requirements.body, &head) {
        return hashed(state, head, body, replacements).await;
    }
    let limit = state.settings.max_request_bytes;
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .map_err(BoxError::from)
        .boxed_unsync();
    let body = match replacements {
        Some(replacements) => {
            body_fill::replace_streamed(limited, replacements, &mut head.headers, limit).await?
        }
        None => limited,
    };
    Ok(Outgoing {
        head,
        body,
        body_sha256: None,
    })
}

/// The body read whole, up to the hashing cap, placeholders filled, and hashed: a signing
/// plugin signs the body that goes out.
async fn hashed(
    state: &ProxyState,
    mut head: RequestHead,
    body: Incoming,
    replacements: Option<Arc<Replacements>>,
) -> Result<Outgoing, ProxyError> {
    let limit = state.settings.max_request_bytes;
    let hash_limit = state
        .settings
        .max_hashed_body
        .min(usize::try_from(limit).unwrap_or(usize::MAX));
    let hashed = hash_body(body, hash_limit)
        .await
        .map_err(|error| match error {
            BodyHashError::TooLarge { limit } => ProxyError::RequestTooLarge {
                limit: limit as u64,
            },
            BodyHashError::Read(reason) => {
                ProxyError::BadRequest(format!("reading the request body failed: {reason}"))
            }
        })?;
    let hashed = body_fill::replace_hashed(hashed, replacements, &mut head.headers);
    Ok(Outgoing {
        head,
        body: full(hashed.bytes),
        body_sha256: Some(hashed.sha256),
    })
}
