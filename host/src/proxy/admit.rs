//! Admit: what is decided about a request before it is routed. Its framing and declared
//! size, whether the request log can record it (nothing goes out that it could not), and a
//! permit from the caller's rate limits, held until the answer's body is done.

use http::HeaderValue;
use hyper::upgrade::OnUpgrade;

use super::{Caller, LogDraft, ProxyError, ProxyState, ingress};
use crate::accept::AbortSignal;
use crate::ratelimit::Permit;

/// What the rest of the exchange takes from admission.
pub(super) struct Admitted {
    /// The agent's method, for the answer's redaction (a `HEAD` has no body to search).
    pub method: http::Method,
    /// Raised if the answer relayed on an HTTP/1 connection breaks off (`accept/abort.rs`).
    pub abort: Option<AbortSignal>,
    /// A WebSocket (or other) upgrade: the protocol asked for, and the agent's side of it.
    pub upgrade: Option<(HeaderValue, Option<OnUpgrade>)>,
    /// Held until the response body is done, so the concurrency cap counts whole exchanges.
    pub permit: Permit,
}

/// Admit the request of `caller` with `parts`, or refuse it.
pub(super) async fn admit(
    state: &ProxyState,
    caller: &Caller,
    parts: &mut http::request::Parts,
    draft: &mut LogDraft,
) -> Result<Admitted, ProxyError> {
    let method = parts.method.clone();
    let abort = (parts.version < http::Version::HTTP_2)
        .then(|| parts.extensions.get::<AbortSignal>().cloned())
        .flatten();
    let upgrade = ingress::upgrade_protocol(&parts.headers)
        .map(|protocol| (protocol, parts.extensions.remove::<OnUpgrade>()));
    ingress::check_framing(&parts.headers)?;
    if ingress::content_length(&parts.headers)
        .is_some_and(|length| length > state.settings.max_request_bytes)
    {
        return Err(ProxyError::RequestTooLarge {
            limit: state.settings.max_request_bytes,
        });
    }
    state
        .request_log
        .accepting()
        .map_err(|_| ProxyError::LogUnavailable)?;
    draft.vault_id = Some(caller.vault.id.clone());
    draft.actor = caller.actor.id();
    let permit = state.limits.admit(&caller.scope).await.map_err(|limited| {
        crate::metrics::metrics().rate_limited(limited.code());
        ProxyError::RateLimited(limited)
    })?;
    Ok(Admitted {
        method,
        abort,
        upgrade,
        permit,
    })
}
