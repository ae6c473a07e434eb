//! Where a plugin call runs: on the connection's worker if it is done within its first
//! slice, else again from the start on the plugin threads.
//!
//! A connection worker (`crate::workers`) is one thread serving many connections, so a plugin
//! call that computes for milliseconds there stalls every one of them. A call is therefore
//! first tried where the request is, as a plain blocking call stopped at the end of its first
//! slice (one to two epoch ticks, `wasm`): every well-behaved plugin is done by then (a bearer
//! call takes microseconds), and pays nothing for the machinery below. A call that is not
//! done is made again on the [`PluginThreads`], a small multi-threaded runtime at a lower
//! scheduling priority, as a future that runs in slices interleaved with the other slow calls
//! until it returns or its deadline stops it. The request waits for it without holding its
//! worker.
//!
//! Each plugin has a [`Gate`]: at most `limit` of its calls run on the plugin threads at
//! once, and a call beyond that is refused at once ([`Ran::Busy`]) rather than queued, so one
//! plugin cannot fill the threads or the instance pool. A plugin whose calls need more than
//! their first slice is *slow* (for a second since the last such call): its next calls skip
//! the inline slice and start on the plugin threads, so a plugin that always spins costs the
//! workers nothing. One call that overran its slice once (its worker was preempted in the
//! middle, say) does not make a fast plugin slow, and a slow plugin whose call finishes in
//! its first slice on the plugin threads is fast again.
//!
//! This module knows nothing of WebAssembly; it runs a closure and futures. `wasm` builds
//! them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// How long a plugin stays slow after its last call that needed more than a slice.
const SLOW_FOR: Duration = Duration::from_secs(1);

/// Calls in a row whose first slice was not enough before a plugin counts as slow.
const SLOW_AFTER_STRIKES: u32 = 2;

/// The nice value of the plugin threads: a slow plugin gets what CPU the connection workers
/// leave (Linux; elsewhere the threads keep the process's priority).
const PLUGIN_THREAD_NICE: i32 = 10;

/// The threads that run plugin calls too slow for a connection worker.
pub struct PluginThreads {
    /// `Some` until dropped; shut down without waiting, as a drop may happen on a runtime.
    runtime: Option<Runtime>,
    handle: Handle,
}

impl std::fmt::Debug for PluginThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginThreads").finish_non_exhaustive()
    }
}

impl PluginThreads {
    /// Start `count` threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Arc<PluginThreads>> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(count.max(1))
            .max_blocking_threads(1)
            .thread_name("plugin")
            .on_thread_start(lower_priority)
            .enable_time()
            .build()?;
        Ok(Arc::new(PluginThreads {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        }))
    }

    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }
}

impl Drop for PluginThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux the nice value belongs to the calling thread, not the process.
    if let Err(error) = rustix::process::setpriority_process(None, PLUGIN_THREAD_NICE) {
        tracing::debug!("cannot lower the priority of a plugin thread: {error}");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    let _ = PLUGIN_THREAD_NICE;
}

/// How a gated call ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ran<R> {
    Done(R),
    /// The plugin already has its limit of calls on the plugin threads.
    Busy,
    /// The plugin threads stopped (the server is shutting down) before the call finished.
    Lost,
}

/// One plugin's share of the plugin threads, and whether it is slow.
#[derive(Debug)]
pub struct Gate {
    /// The plugin's name, for the log.
    plugin: String,
    slots: Arc<Semaphore>,
    limit: usize,
    origin: Instant,
    /// Milliseconds after `origin` until which the plugin counts as slow.
    slow_until: AtomicU64,
    /// Calls in a row that did not finish in their first slice here.
    strikes: AtomicU32,
}

impl Gate {
    /// A gate letting at most `limit` calls (at least one) of `plugin` run on the plugin
    /// threads at once.
    pub fn new(plugin: &str, limit: usize) -> Gate {
        let limit = limit.max(1);
        Gate {
            plugin: plugin.to_owned(),
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            origin: Instant::now(),
            slow_until: AtomicU64::new(0),
            strikes: AtomicU32::new(0),
        }
    }

    /// How many calls may run on the plugin threads at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Make a call on `input`: first `inline`, here, unless the plugin is slow; if that was
    /// not done within its first slice (`None`), or the plugin is slow, the call `offload`
    /// makes, on `threads`. Dropping the returned future stops the call wherever it runs.
    pub async fn run<I, R, F>(
        &self,
        threads: &PluginThreads,
        input: I,
        inline: impl FnOnce(&I) -> Option<R>,
        offload: impl FnOnce(I) -> F,
    ) -> Ran<R>
    where
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        if self.is_slow() {
            // A slow plugin's call is only made once it has a slot: nothing is taken (a warm
            // instance, say) for a call that is refused.
            let Some(slot) = self.slot() else {
                return Ran::Busy;
            };
            let (output, slices) = self.offload(threads, slot, Box::pin(offload(input))).await;
            if slices == 1 {
                // Done in the first slice after all: the plugin is fast again.
                self.strikes.store(0, Ordering::Relaxed);
                self.slow_until.store(0, Ordering::Relaxed);
            }
            return output;
        }
        if let Some(output) = inline(&input) {
            self.strikes.store(0, Ordering::Relaxed);
            return Ran::Done(output);
        }
        // One slice was not enough. Twice in a row, or a call that then needs more than one
        // slice on the plugin threads, and the plugin counts as slow; once (the worker was
        // preempted during a call of microseconds, say) it does not.
        if self.strikes.fetch_add(1, Ordering::Relaxed) + 1 >= SLOW_AFTER_STRIKES {
            self.mark_slow();
        }
        let Some(slot) = self.slot() else {
            return Ran::Busy;
        };
        self.offload(threads, slot, Box::pin(offload(input)))
            .await
            .0
    }

    /// One of the plugin's places on the plugin threads, if it has one free.
    fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.slots.clone().try_acquire_owned().ok();
        if slot.is_none() {
            tracing::debug!(plugin = %self.plugin, "a slow plugin is at its limit of calls; refused");
        }
        slot
    }

    /// Finish `call` on the plugin threads, holding `slot` until it is done; with the number
    /// of slices (polls) it took there. A call that took more than one keeps the plugin slow.
    async fn offload<R: Send + 'static>(
        &self,
        threads: &PluginThreads,
        slot: OwnedSemaphorePermit,
        mut call: Pin<Box<impl Future<Output = R> + Send + 'static>>,
    ) -> (Ran<R>, u32) {
        tracing::debug!(plugin = %self.plugin, "a slow plugin call runs on the plugin threads");
        let task = AbortOnDrop(threads.spawn(async move {
            let mut slices = 0;
            let output = std::future::poll_fn(|cx| {
                slices += 1;
                call.as_mut().poll(cx)
            })
            .await;
            drop(slot);
            (output, slices)
        }));
        match task.await {
            Ok((output, slices)) => {
                if slices > 1 {
                    self.mark_slow();
                }
                (Ran::Done(output), slices)
            }
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => (Ran::Lost, 0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_slow(&self) -> bool {
        // Zero (never slow, or fast again) needs no clock: the common case reads none.
        let until = self.slow_until.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    fn mark_slow(&self) {
        let until = self.now_ms().saturating_add(SLOW_FOR.as_millis() as u64);
        self.slow_until.fetch_max(until, Ordering::Relaxed);
    }
}

/// A task's handle that cancels the task when the caller stops waiting for it (the agent
/// went away), so an abandoned call does not keep a slot or a thread.
struct AbortOnDrop<R>(JoinHandle<R>);

impl<R> Future for AbortOnDrop<R> {
    type Output = Result<R, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<R> Drop for AbortOnDrop<R> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
