//! The response-header deadline, counted over the upstream's turns only: the request body
//! as hyper sees it ([`WatchedBody`]) reports whether the proxy waits for the upstream or for
//! the agent's body, and [`upstream_deadline`] gives up when the upstream has kept the turn
//! too long. A slow upload is not a slow upstream.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{BoxError, ProxyBody};

/// Whose turn it is: `Some(since)` while the proxy waits for the upstream (to connect, to take
/// the next piece of the body, to answer), `None` while it waits for the request body.
type Turn = Option<Instant>;

/// Run `exchange` until it ends, or until the upstream has had the turn for `limit` without
/// giving it back (`None`). Waiting for the request body does not count: a slow upload is
/// not a slow upstream.
pub(super) async fn upstream_deadline<F: Future>(
    exchange: F,
    mut turn: watch::Receiver<Turn>,
    limit: Duration,
) -> Option<F::Output> {
    let mut exchange = pin!(exchange);
    let mut current = *turn.borrow_and_update();
    let mut watching = true;
    loop {
        let deadline = current.map(|since| since + limit);
        tokio::select! {
            output = &mut exchange => return Some(output),
            () = sleep_until_some(deadline) => {
                let latest = *turn.borrow_and_update();
                if latest == current {
                    return None;
                }
                current = latest;
            }
            changed = turn.changed(), if watching => match changed {
                Ok(()) => current = *turn.borrow_and_update(),
                // The body is gone (sent, or dropped by hyper): the rest is the upstream's.
                Err(_) => {
                    watching = false;
                    current = Some(current.unwrap_or_else(Instant::now));
                }
            },
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The request body as hyper sees it: the caller's body, reporting whose turn it is and
/// keeping the body's own error for [`Upstream::send`] to return by type.
pub(super) struct WatchedBody {
    inner: ProxyBody,
    turn: watch::Sender<Turn>,
    failure: BodyFailure,
}

/// Where [`WatchedBody`] keeps the body's own error.
type BodyFailure = Arc<Mutex<Option<BoxError>>>;

/// What hyper gets when the request body failed; the real error is kept aside.
#[derive(Debug, thiserror::Error)]
#[error("the request body failed")]
struct BodyFailed;

impl WatchedBody {
    pub(super) fn new(inner: ProxyBody) -> (WatchedBody, watch::Receiver<Turn>, BodyFailure) {
        let (turn, receiver) = watch::channel(Some(Instant::now()));
        let failure = Arc::new(Mutex::new(None));
        let body = WatchedBody {
            inner,
            turn,
            failure: failure.clone(),
        };
        (body, receiver, failure)
    }

    fn upstream_turn(&self) {
        let now = Instant::now();
        // Moving the start of an upstream turn needs no wake-up: the deadline re-reads it.
        self.turn.send_if_modified(|turn| {
            let changed_hands = turn.is_none();
            *turn = Some(now);
            changed_hands
        });
    }

    fn agent_turn(&self) {
        self.turn.send_if_modified(|turn| turn.take().is_some());
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                this.agent_turn();
                Poll::Pending
            }
            Poll::Ready(Some(Err(error))) => {
                *this.failure.lock().expect("never poisoned") = Some(error);
                this.upstream_turn();
                Poll::Ready(Some(Err(Box::new(BodyFailed))))
            }
            Poll::Ready(frame) => {
                this.upstream_turn();
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
