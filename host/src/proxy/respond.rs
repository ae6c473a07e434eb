//! Respond: the upstream's answer on its way to the agent, without hop-by-hop headers and
//! `Set-Cookie`, within the response size limit, searched for echoed credentials
//! (`redact.rs`), holding the rate-limit permit until its body is done, and raising the
//! connection's abort if the body breaks off.

use http::Response;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{ProxyError, ProxyState, ingress, redact};
use crate::accept::AbortSignal;
use crate::ratelimit::Permit;
use crate::upstream::{BoxError, ProxyBody, clean_response_headers};
use crate::vault::redact::Redactor;

/// The stage: `response` as the agent gets it.
pub(super) async fn relay(
    state: &ProxyState,
    response: Response<Incoming>,
    (echo, redactor): (redact::Echo<'_>, Option<Redactor>),
    abort: Option<AbortSignal>,
    permit: Permit,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = response.into_parts();
    clean_response_headers(&mut parts.headers);
    let body = match state.settings.max_response_bytes {
        Some(limit) => {
            if ingress::content_length(&parts.headers).is_some_and(|length| length > limit) {
                return Err(ProxyError::ResponseTooLarge { limit });
            }
            Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
                .map_err(BoxError::from)
                .boxed_unsync()
        }
        None => body.map_err(BoxError::from).boxed_unsync(),
    };
    let body = match redactor {
        Some(redactor) => redact::redact(&echo, &redactor, &mut parts, body).await?,
        None => body,
    };
    let body = relay_failures(body, abort)
        .map_frame(move |frame| {
            let _held = &permit;
            frame
        })
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

/// `body`, raising `abort` if it fails: the agent's connection must then end in an abort,
/// not a close that would pass for the end of the answer (`accept/abort.rs`).
fn relay_failures(body: ProxyBody, abort: Option<AbortSignal>) -> ProxyBody {
    match abort {
        Some(abort) => body
            .map_err(move |error| {
                abort.raise();
                error
            })
            .boxed_unsync(),
        None => body,
    }
}
