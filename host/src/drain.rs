//! Letting connections finish at shutdown. The server owns a [`Drain`]; every connection that
//! serves requests (on the control-plane port, the transparent proxy's, and inside an
//! intercepted tunnel) runs under a [`DrainWatcher`]. When the server stops, each one is
//! told to finish what it is doing: idle keep-alive connections close at once, a request in
//! flight is answered first. The server waits until every watched connection has ended.
//!
//! hyper-util's `GracefulShutdown` does the same for the connection types it knows, but its
//! watchers cannot be cloned: a connection of the transparent proxy opens tunnels, and each
//! tunnel needs a watcher of its own, taken from the connection's after shutdown may already
//! have begun. A watcher here reads the current state before it waits, so one taken late
//! still sees that shutdown has begun.
//!
//! Blind tunnels are not watched: their bytes are opaque, so an idle tunnel cannot be told
//! from a busy one, and waiting for agents to close them would hold up every shutdown.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::watch;

/// The server's side: starts the drain and waits for it.
#[derive(Debug)]
pub struct Drain {
    draining: watch::Sender<bool>,
}

/// A connection's side: learns that shutdown has begun. Each clone counts as one more
/// connection to wait for, until it is dropped.
#[derive(Debug, Clone)]
pub struct DrainWatcher {
    draining: watch::Receiver<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    pub fn new() -> Drain {
        let (draining, _) = watch::channel(false);
        Drain { draining }
    }

    pub fn watcher(&self) -> DrainWatcher {
        DrainWatcher {
            draining: self.draining.subscribe(),
        }
    }

    /// Tell every watched connection to finish, then wait until all of them (and every
    /// watcher not yet given a connection) are gone.
    pub async fn drain(self) {
        // `send_replace`, not `send`: the state must change even when nothing watches now,
        // so that a watcher cloned later still sees it.
        self.draining.send_replace(true);
        self.draining.closed().await;
    }
}

impl DrainWatcher {
    /// Run `connection` to its end; when shutdown begins, call `finish` on it once (hyper's
    /// `graceful_shutdown`) and keep polling it until it has finished.
    pub fn watch<C, F>(self, connection: C, finish: F) -> Watched<C, F>
    where
        C: Future,
        F: FnOnce(Pin<&mut C>) + Unpin,
    {
        let mut draining = self.draining;
        Watched {
            connection: Box::pin(connection),
            finish: Some(finish),
            draining: Box::pin(async move {
                let started = draining.wait_for(|draining| *draining).await.is_ok();
                (started, draining)
            }),
            held: None,
        }
    }

    /// Resolves once shutdown has begun (at once if it already has); never, if the server
    /// dropped its [`Drain`] without draining.
    pub async fn draining(&mut self) {
        if self.draining.wait_for(|draining| *draining).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A connection under a [`DrainWatcher`]: resolves with the connection's own output.
///
/// A plain struct rather than an `async fn`: the compiler cannot prove the `Send` an
/// `async fn` generic over hyper's connection types would need to be spawned (its
/// higher-ranked lifetime check fails on the connection's error conversion bound).
pub struct Watched<C, F> {
    connection: Pin<Box<C>>,
    finish: Option<F>,
    /// Resolves when shutdown begins (`true`) or can no longer begin (`false`), giving back
    /// the receiver, which is then `held` until the connection ends.
    draining: Pin<Box<dyn Future<Output = (bool, watch::Receiver<bool>)> + Send>>,
    held: Option<watch::Receiver<bool>>,
}

impl<C, F> std::fmt::Debug for Watched<C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").finish_non_exhaustive()
    }
}

impl<C, F> Future for Watched<C, F>
where
    C: Future,
    F: FnOnce(Pin<&mut C>) + Unpin,
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if this.held.is_none()
            && let Poll::Ready((started, receiver)) = this.draining.as_mut().poll(cx)
        {
            this.held = Some(receiver);
            if started && let Some(finish) = this.finish.take() {
                finish(this.connection.as_mut());
            }
        }
        this.connection.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A stand-in for a connection: ends when `done` fires.
    async fn connection(done: oneshot::Receiver<()>) -> &'static str {
        let _ = done.await;
        "ended"
    }

    #[tokio::test]
    async fn shutdown_asks_each_connection_to_finish_and_waits_for_it() {
        let drain = Drain::new();
        let (end, done) = oneshot::channel();
        let asked = Arc::new(AtomicBool::new(false));
        let asked_in_task = asked.clone();
        let task = tokio::spawn(drain.watcher().watch(connection(done), move |_| {
            asked_in_task.store(true, Ordering::SeqCst);
            // A connection finishes its request in flight, then ends.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = end.send(());
            });
        }));
        tokio::task::yield_now().await;
        assert!(!asked.load(Ordering::SeqCst));

        drain.drain().await;
        assert!(asked.load(Ordering::SeqCst));
        assert_eq!(task.await.unwrap(), "ended");
    }

    #[tokio::test]
    async fn a_watcher_cloned_after_shutdown_began_still_sees_it() {
        let drain = Drain::new();
        let first = drain.watcher();
        let draining = tokio::spawn(drain.drain());
        tokio::task::yield_now().await;
        let mut late = first.clone();
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), late.draining())
            .await
            .expect("a late watcher sees the drain");
        assert!(
            !draining.is_finished(),
            "the drain waits for the late watcher"
        );
        drop(late);
        tokio::time::timeout(Duration::from_secs(5), draining)
            .await
            .expect("the drain ends once every watcher is gone")
            .unwrap();
    }

    #[tokio::test]
    async fn a_connection_that_ends_by_itself_is_not_asked_to_finish() {
        let drain = Drain::new();
        let (end, done) = oneshot::channel();
        end.send(()).unwrap();
        let output = drain
            .watcher()
            .watch(connection(done), |_| panic!("not draining"))
            .await;
        assert_eq!(output, "ended");
        drain.drain().await;
    }
}
