//! The threads that serve accepted connections: one single-threaded tokio runtime per core.
//!
//! The server accepts on its main runtime and hands each connection to the next worker. A
//! connection stays on its worker for its whole life, with everything it starts (its HTTP/2
//! streams, its upstream connections, their TLS), so a request is read, sent upstream and
//! answered on one thread: no work stealing, no waking another thread between the agent's
//! socket and the upstream's. On the 2-core reference machine this took about a tenth off the
//! proxy's CPU per request against tokio's multi-threaded scheduler (bench/README.md). The
//! cost is balance: connections are dealt out in turn, not by load.
//!
//! Each worker's thread runs its runtime until [`Workers::stop`], which cancels what is still
//! running there; the server stops accepting and waits for requests in flight first.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The worker runtimes, dealt connections in turn.
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

#[derive(Debug)]
struct Worker {
    runtime: Handle,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Workers {
    /// Start `count` workers (at least one), each on its own thread.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let workers = (0..count.max(1))
            .map(|number| {
                let runtime = Builder::new_current_thread().enable_all().build()?;
                let handle = runtime.handle().clone();
                let (stop, stopped) = oneshot::channel::<()>();
                let thread = std::thread::Builder::new()
                    .name(format!("agent-vault-worker-{number}"))
                    .spawn(move || {
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                        // Dropping the runtime here, off any async context, cancels the
                        // tasks still on it and waits for its blocking calls to return.
                        drop(runtime);
                    })?;
                Ok(Worker {
                    runtime: handle,
                    stop,
                    thread,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// One worker per core the process may use (cgroup limits included).
    pub fn per_core() -> std::io::Result<Workers> {
        Workers::start(std::thread::available_parallelism().map_or(1, |cores| cores.get()))
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The worker that takes the next connection: 0, 1, ... in turn.
    pub fn next_index(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len()
    }

    /// Run `task` on worker `index`.
    pub fn spawn<F>(&self, index: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.workers[index].runtime.spawn(task));
    }

    /// Stop every worker, cancelling what still runs on it, and wait for their threads.
    /// Blocks: call it off the async runtime (`spawn_blocking`) or after it.
    pub fn stop(self) {
        for worker in self.workers {
            let _ = worker.stop.send(());
            if worker.thread.join().is_err() {
                tracing::warn!("a connection worker panicked while stopping");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_dealt_in_turn_and_run_on_their_worker() {
        let workers = Workers::start(2).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let index = workers.next_index();
            let sender = sender.clone();
            workers.spawn(index, async move {
                let name = std::thread::current().name().map(str::to_owned);
                sender.send((index, name)).unwrap();
            });
        }
        let mut seen: Vec<_> = (0..4).map(|_| receiver.recv().unwrap()).collect();
        seen.sort();
        let name = |n: usize| Some(format!("agent-vault-worker-{n}"));
        assert_eq!(
            seen,
            [(0, name(0)), (0, name(0)), (1, name(1)), (1, name(1))]
        );
        workers.stop();
    }

    #[test]
    fn stopping_cancels_what_still_runs() {
        let workers = Workers::start(1).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel::<()>();
        workers.spawn(0, async move {
            std::future::pending::<()>().await;
            drop(sender);
        });
        workers.stop();
        // The task was dropped with its sender, without ever finishing.
        assert!(receiver.recv().is_err());
    }
}
