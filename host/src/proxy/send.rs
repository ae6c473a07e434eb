//! Forward: the request to the upstream over TLS (`crate::upstream`), or, for an upgrade, the
//! upstream's `101` and the two upgraded connections joined, a WebSocket's messages
//! rewritten on the way (placeholders toward the upstream, echoed credentials toward the
//! agent).

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::LengthLimitError;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::outgoing::Outgoing;
use super::{ProxyError, ProxyState, body_fill, full, redact};
use crate::metrics::metrics;
use crate::ratelimit::Permit;
use crate::request::RequestHead;
use crate::services::Service;
use crate::upstream::websocket::NewRewriter;
use crate::upstream::{ProxyBody, Upgrading, UpstreamError, clean_response_headers};
use crate::vault::placeholders::Placeholders;
use crate::vault::redact::Redactor;

/// What the upstream answered.
pub(super) enum Answer {
    /// An answer with a body, to relay (`respond.rs`).
    Body(Response<Incoming>),
    /// `101`: the connections are joined; this is the agent's answer.
    Switched(Response<ProxyBody>),
}

/// The stage: send `outgoing`, or make the upgrade the agent asked for. `placeholders` are
/// dropped before anything is sent (a WebSocket's message rewriter keeps what it needs);
/// `permit` moves to an upgraded connection, which holds it while it is open.
pub(super) async fn forward(
    state: &ProxyState,
    (service, vault): (&Service, &str),
    outgoing: Outgoing,
    upgrade: Option<(HeaderValue, Option<OnUpgrade>)>,
    placeholders: Placeholders,
    (redactor, permit): (Option<&Redactor>, &mut Option<Permit>),
) -> Result<Answer, ProxyError> {
    let Outgoing { head, body, .. } = outgoing;
    let Some(upgrade) = upgrade else {
        drop(placeholders);
        let limit = state.settings.max_request_bytes;
        let sent = Instant::now();
        return match state.upstream.send(head, body).await {
            Ok(response) => {
                metrics().upstream(sent.elapsed());
                Ok(Answer::Body(response))
            }
            Err(error) => Err(upstream_failure(error, limit)),
        };
    };
    switch_protocols(
        state,
        (service, vault),
        head,
        upgrade,
        placeholders,
        (redactor, permit),
    )
    .await
}

/// The upgrade the agent asked for, made with the upstream; a WebSocket's messages are
/// rewritten as they pass when the service fills placeholders or redacts echoes.
async fn switch_protocols(
    state: &ProxyState,
    (service, vault): (&Service, &str),
    mut head: RequestHead,
    (protocol, agent): (HeaderValue, Option<OnUpgrade>),
    placeholders: Placeholders,
    (redactor, permit): (Option<&Redactor>, &mut Option<Permit>),
) -> Result<Answer, ProxyError> {
    let websocket = protocol.as_bytes().eq_ignore_ascii_case(b"websocket");
    // The agent's placeholders in its messages, if the service substitutes there.
    let message_placeholders = websocket.then(|| placeholders.for_websocket()).flatten();
    drop(placeholders);
    if message_placeholders.is_some() || (websocket && redactor.is_some()) {
        // Messages are rewritten as they pass (placeholders one way, echoed credentials the
        // other), which no negotiated extension (such as compression) would survive.
        head.headers.remove(http::header::SEC_WEBSOCKET_EXTENSIONS);
    }
    let agent = agent.ok_or_else(|| {
        ProxyError::BadRequest(
            "this connection cannot be upgraded (use HTTP/1.1 for WebSocket)".into(),
        )
    })?;
    let (response, upstream) = match state
        .upstream
        .upgrade(head, protocol)
        .await
        .map_err(ProxyError::Upstream)?
    {
        Upgrading::Answered(response) => return Ok(Answer::Body(response)),
        Upgrading::Switched { response, upstream } => (response, upstream),
    };
    let to_upstream = message_placeholders.map(|replacements| -> NewRewriter {
        Box::new(move || body_fill::text_rewriter(&replacements))
    });
    let to_agent = redactor
        .filter(|_| websocket)
        .map(|redactor| redact::websocket_messages(redactor, &service.name, vault));
    let permit = permit.take().expect("an exchange makes one upgrade");
    Ok(Answer::Switched(switched(
        response,
        agent,
        upstream,
        permit,
        redactor,
        (to_upstream, to_agent),
    )))
}

/// The agent's `101`, once the upstream switched: the upstream's headers (without cookies,
/// searched for credentials), and a task that joins the two upgraded connections, holding
/// the rate-limit permit as long as they are open. A direction with a rewriter (a WebSocket's
/// messages) goes through the frame relay; without either, the bytes are copied.
fn switched(
    response: Response<()>,
    agent: OnUpgrade,
    upstream: hyper::upgrade::Upgraded,
    permit: Permit,
    redactor: Option<&Redactor>,
    (to_upstream, to_agent): (Option<NewRewriter>, Option<NewRewriter>),
) -> Response<ProxyBody> {
    let (mut parts, ()) = response.into_parts();
    let upgrade = parts.headers.get(http::header::UPGRADE).cloned();
    clean_response_headers(&mut parts.headers);
    if let Some(redactor) = redactor {
        redactor.headers(&mut parts.headers);
    }
    if let Some(upgrade) = upgrade {
        parts.headers.insert(http::header::UPGRADE, upgrade);
    }
    parts.headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    tokio::spawn(async move {
        let _held = permit;
        match agent.await {
            Ok(agent) => {
                let mut agent = hyper_util::rt::TokioIo::new(agent);
                let mut upstream = hyper_util::rt::TokioIo::new(upstream);
                let ended = if to_upstream.is_none() && to_agent.is_none() {
                    tokio::io::copy_bidirectional(&mut agent, &mut upstream)
                        .await
                        .map(drop)
                } else {
                    crate::upstream::websocket::join(agent, upstream, to_upstream, to_agent).await
                };
                if let Err(error) = ended {
                    tracing::debug!("upgraded connection ended: {error}");
                }
            }
            Err(error) => tracing::debug!("the agent's side of the upgrade failed: {error}"),
        }
    });
    Response::from_parts(parts, full(Bytes::new()))
}

/// An upstream failure, unless it was the agent's body that failed: too large (413) or cut
/// off (400).
fn upstream_failure(error: UpstreamError, body_limit: u64) -> ProxyError {
    match &error {
        UpstreamError::RequestBody { cause, .. } if cause.is::<LengthLimitError>() => {
            ProxyError::RequestTooLarge { limit: body_limit }
        }
        UpstreamError::RequestBody { .. } => {
            ProxyError::BadRequest(format!("reading the request body failed: {error}"))
        }
        _ => ProxyError::Upstream(error),
    }
}
