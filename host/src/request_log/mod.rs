//! The request log's writer: the last step of the request path. The pipeline hands each
//! finished request's metadata ([`LogEntry`]) to [`RequestLog::record`], which appends it to
//! the journal (`journal.rs`, a file in the data directory) and queues it; a background
//! task gathers the queue into batches, and a thread of its own writes each batch to the
//! store, where the log is read from.
//!
//! The log loses nothing, as an audit trail must not (`docs/security.md`: auditing fails
//! closed):
//!
//! - every entry is in the journal before the response it records leaves (`record` returns
//!   first), so a server killed before its batch reached the store (SIGKILL, a crash) loses
//!   no row: the next start writes what the store lacks ([`Journal::recover`]) before it
//!   serves;
//! - the queue is bounded (16,384 entries, about half a second of traffic at full load, a few
//!   megabytes); when it is full, as when the store is slower than the traffic, `record`
//!   waits for room, which slows requests down to the pace the log is written at, and keeps
//!   the journal's unwritten part within the queue plus one batch;
//! - a batch the store refuses (disk full, database locked), or a journal that cannot be
//!   appended to, makes [`RequestLog::accepting`] say no until the batch is written again
//!   (a little later each time) or a new journal file is open: the proxy refuses new requests
//!   (503) rather than forward requests nobody records.
//!
//! A batch is written when it reaches 1,000 entries or 250 ms after its first entry arrived,
//! whichever comes first; after each, the journal files the store now covers are deleted.
//! [`LogWriter::shutdown`] writes what is queued, within a deadline; what it cannot write
//! then stays in the journal for the next start. What an entry holds (metadata only, never a
//! credential or a header value) is decided where it is built, in the pipeline; this
//! module's warnings hold counts, never entry contents, and at debug level each entry is
//! also one `proxy_request` line with the same metadata. Reading the log is `api/logs.rs`;
//! retention is the server's upkeep.

mod journal;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use journal::{DIR as JOURNAL_DIR, Journal, JournalError};

use crate::ratelimit::{Clock, TokioClock};
use crate::store::{self, Db, JournalSeq, LogEntry};

/// Entries waiting to be written. Sized to ride out a trim (below) at full load: at 26k
/// requests/s, 1,024 entries lasted 40 ms.
const QUEUE: usize = 16 * 1024;
/// The most entries written in one transaction.
const BATCH: usize = 1000;
/// How long the first entry of a batch waits for the batch to fill.
const FLUSH_AFTER: Duration = Duration::from_millis(250);
/// How long after a refused write the batch is tried again (and after a failed journal
/// append, a new journal file); the wait doubles with each refusal, up to
/// [`RETRY_AT_MOST`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_AT_MOST: Duration = Duration::from_secs(5);

/// An entry in the queue, with the number the journal gave it.
#[derive(Debug)]
struct Queued {
    seq: JournalSeq,
    entry: LogEntry,
}

/// Entries for the store, and the journal number of the last: the store records it with
/// them. Shared so that a refused batch can be offered again.
#[derive(Debug)]
struct Batch {
    entries: Vec<LogEntry>,
    through: JournalSeq,
}

/// Where the writer's batches go: the store, or a test's recorder in front of it.
type Sink =
    Box<dyn FnMut(Arc<Batch>) -> Pin<Box<dyn Future<Output = store::Result<()>> + Send>> + Send>;

/// The request path's handle on the request log; cheap to clone.
#[derive(Debug, Clone)]
pub struct RequestLog {
    queue: mpsc::Sender<Queued>,
    journal: Arc<Journal>,
    counters: Arc<Counters>,
}

/// The background writer, to stop at shutdown. Dropped without [`LogWriter::shutdown`], it
/// still writes what is queued and stops, but nobody waits for it.
#[derive(Debug)]
pub struct LogWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// Does not keep the queue open; counts what is left if the deadline passes.
    queue: mpsc::WeakSender<Queued>,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
}

/// How often the writer trims the log to its retention: often, so each trim deletes little
/// and holds the writer up briefly.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// How long the request log keeps entries.
#[derive(Debug, Clone, Copy)]
pub struct LogRetention {
    pub max_age: Duration,
    /// Per vault; 0 for no cap.
    pub max_rows_per_vault: u32,
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_rows_per_vault: 10_000,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// Entries not written to the store: queued at shutdown and not written by its deadline
    /// (the journal keeps those for the next start), or recorded after the writer stopped.
    dropped: AtomicU64,
    /// Entries that found the queue full and waited for room.
    waited: AtomicU64,
    /// Batch writes the store refused (each retry counts).
    write_refusals: AtomicU64,
    /// Whether the store refused the last write; cleared when a write succeeds.
    failing: AtomicBool,
    /// Entries taken from the queue and not yet written.
    in_batch: AtomicUsize,
    /// Signalled when a batch's worth of entries is queued.
    batch_ready: tokio::sync::Notify,
    /// Signalled when an append to the journal failed, for the writer to open a new file.
    journal_failed: tokio::sync::Notify,
}

impl RequestLog {
    /// Start the batch writer on the current tokio runtime (panics outside one), appending
    /// to `journal` (opened by [`Journal::recover`]). Every few seconds, after a batch, the
    /// log is also trimmed to `retention`, so it stays bounded however fast requests come.
    pub fn start(db: Db, journal: Journal, retention: LogRetention) -> (RequestLog, LogWriter) {
        let store_thread = StoreThread::start(db, journal.id().to_owned(), retention);
        let sink: Sink = Box::new(move |batch| Box::pin(store_thread.write(batch)));
        RequestLog::start_with(sink, Arc::new(journal), Arc::new(TokioClock), QUEUE)
    }

    fn start_with(
        sink: Sink,
        journal: Arc<Journal>,
        clock: Arc<dyn Clock>,
        capacity: usize,
    ) -> (RequestLog, LogWriter) {
        let (queue, entries) = mpsc::channel(capacity);
        let (stop, stopped) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            sink,
            journal: journal.clone(),
            clock: clock.clone(),
            counters: counters.clone(),
            reopen: None,
        };
        let task = tokio::spawn(writer.run(entries, stopped));
        let writer = LogWriter {
            stop,
            task,
            queue: queue.downgrade(),
            counters: counters.clone(),
            clock,
        };
        (
            RequestLog {
                queue,
                journal,
                counters,
            },
            writer,
        )
    }

    /// Whether requests may go ahead: not while the store refuses the log's writes or the
    /// journal cannot be appended to, nor once the writer has stopped. The proxy asks before
    /// it forwards anything, so that no request goes out that the log could not record.
    pub fn accepting(&self) -> Result<(), LogUnavailable> {
        if self.counters.failing.load(Ordering::Relaxed)
            || self.journal.failing()
            || self.queue.is_closed()
        {
            return Err(LogUnavailable);
        }
        Ok(())
    }

    /// Journal and queue one entry; when this returns, the entry survives the process being
    /// killed. When the queue is full this first waits for room (the writer is behind); only
    /// once the writer has stopped, at shutdown, is the entry dropped and counted.
    pub async fn record(&self, entry: LogEntry) {
        tracing::debug!(
            ingress = %entry.ingress,
            method = %entry.method,
            host = %entry.host,
            path = %entry.path,
            service = %entry.matched_service.as_deref().unwrap_or("-"),
            credential_keys = %entry.credential_keys.join(","),
            status = entry.status,
            latency_ms = entry.latency_ms,
            error = %entry.error_code.as_deref().unwrap_or("-"),
            "proxy_request"
        );
        // Room in the queue first, so that the journal and the queue take the entry in one
        // step, in the same order (journal.rs).
        let room = match self.queue.try_reserve() {
            Ok(room) => room,
            Err(TrySendError::Full(())) => {
                self.counters.waited.fetch_add(1, Ordering::Relaxed);
                // A full queue holds a batch: make sure the writer is not waiting for one.
                self.counters.batch_ready.notify_one();
                match self.queue.reserve().await {
                    Ok(room) => room,
                    Err(_) => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            Err(TrySendError::Closed(())) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let journaled = self
            .journal
            .append(entry, |seq, entry| room.send(Queued { seq, entry }));
        if journaled.is_err() {
            self.counters.journal_failed.notify_one();
        }
        // The writer holds at least one entry while it waits for the rest of a batch.
        let queued = self.queue.max_capacity() - self.queue.capacity();
        if queued + 1 >= BATCH {
            self.counters.batch_ready.notify_one();
        }
    }

    /// Entries dropped so far: still unwritten to the store at the shutdown deadline (kept
    /// in the journal), or recorded after the writer stopped.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Entries so far that found the queue full and waited for room.
    pub fn waited(&self) -> u64 {
        self.counters.waited.load(Ordering::Relaxed)
    }

    /// Entries in the queue now, not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Batch writes the store refused so far (each retry of a batch counts once).
    pub fn write_refusals(&self) -> u64 {
        self.counters.write_refusals.load(Ordering::Relaxed)
    }
}

/// The request log cannot take entries now; see [`RequestLog::accepting`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request log cannot be written")]
pub struct LogUnavailable;

impl LogWriter {
    /// Write what is queued and stop; entries not written within `deadline` are counted as
    /// dropped, and stay in the journal for the next start.
    pub async fn shutdown(self, deadline: Duration) {
        let LogWriter {
            stop,
            mut task,
            queue,
            counters,
            clock,
        } = self;
        let _ = stop.send(());
        tokio::select! {
            _ = &mut task => {}
            () = clock.sleep_until(clock.now() + deadline) => {
                task.abort();
                let queued = queue
                    .upgrade()
                    .map_or(0, |queue| queue.max_capacity() - queue.capacity());
                let lost = queued + counters.in_batch.load(Ordering::Relaxed);
                counters.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                tracing::warn!(
                    entries = lost,
                    "request log not written within {deadline:?} of shutdown; the journal \
                     keeps those entries for the next start"
                );
            }
        }
    }
}

/// A batch for the store thread, and where its outcome goes.
type StoreJob = (Arc<Batch>, oneshot::Sender<store::Result<()>>);

/// The thread that writes batches to the store and trims the log: its own, rather than the
/// runtime's blocking pool, so that a busy log never queues the control plane's store calls
/// behind it. It runs at the same priority as the request threads: at nice 5 it fell behind
/// under full load on two cores (bench/proxy counted 0.7% of entries dropped).
struct StoreThread {
    jobs: std::sync::mpsc::Sender<StoreJob>,
}

impl StoreThread {
    fn start(db: Db, journal: String, retention: LogRetention) -> StoreThread {
        let (jobs, received) = std::sync::mpsc::channel::<StoreJob>();
        let spawned = std::thread::Builder::new()
            .name("agent-vault-log".to_owned())
            .spawn(move || {
                let mut last_trim = Instant::now();
                for (batch, outcome) in received {
                    let store = db.store();
                    let mut written =
                        store.insert_journaled_logs(&batch.entries, &journal, batch.through);
                    if written.is_ok() && last_trim.elapsed() >= TRIM_EVERY {
                        last_trim = Instant::now();
                        let older_than = crate::store::now() - retention.max_age.as_secs() as i64;
                        written = store
                            .prune_logs(older_than, retention.max_rows_per_vault)
                            .map(drop);
                    }
                    let _ = outcome.send(written);
                }
            });
        if let Err(error) = spawned {
            // Without the thread every batch fails, and the proxy refuses requests.
            tracing::error!("cannot start the request log's thread: {error}");
        }
        StoreThread { jobs }
    }

    fn write(&self, batch: Arc<Batch>) -> impl Future<Output = store::Result<()>> + use<> {
        let (outcome, written) = oneshot::channel();
        let sent = self.jobs.send((batch, outcome));
        async move {
            sent.map_err(|_| stopped())?;
            written.await.map_err(|_| stopped())?
        }
    }
}

fn stopped() -> store::StoreError {
    store::StoreError::Database("the request log's thread has stopped".to_owned())
}

/// The writer task's state.
struct Writer {
    sink: Sink,
    journal: Arc<Journal>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    /// While the journal is failing: when to try a new file next, and the wait after that.
    reopen: Option<(Instant, Duration)>,
}

impl Writer {
    /// Batches until told to stop (or every `RequestLog` is gone), then what is left in the
    /// queue.
    async fn run(mut self, mut entries: mpsc::Receiver<Queued>, mut stop: oneshot::Receiver<()>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut reported = Reported::default();
        loop {
            let reopen_at = self.reopen_at();
            let mut stopping = false;
            tokio::select! {
                biased;
                _ = &mut stop => stopping = true,
                received = entries.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                // A failed append: look again at whether to reopen the journal.
                () = self.counters.journal_failed.notified() => continue,
                () = self.clock.sleep_until(reopen_at.unwrap_or_else(Instant::now)),
                    if reopen_at.is_some() => {
                    self.reopen().await;
                    continue;
                }
            }
            if !stopping && batch.len() < BATCH {
                // Wait for the batch to fill without taking entries one by one: the request
                // path wakes this task once when enough are queued, not for every entry.
                let mut flush = self.clock.sleep_until(self.clock.now() + FLUSH_AFTER);
                while batch.len() + entries.len() < BATCH && !entries.is_closed() {
                    tokio::select! {
                        biased;
                        _ = &mut stop => {
                            stopping = true;
                            break;
                        }
                        () = self.counters.batch_ready.notified() => {}
                        () = &mut flush => break,
                    }
                }
                while batch.len() < BATCH {
                    let Ok(entry) = entries.try_recv() else { break };
                    batch.push(entry);
                }
            }
            self.write(&mut batch).await;
            reported.report(&self.counters);
            if stopping {
                break;
            }
        }
        entries.close();
        while entries.recv_many(&mut batch, BATCH).await > 0 {
            self.write(&mut batch).await;
        }
        reported.report(&self.counters);
    }

    /// Write and empty `batch`, then let the journal drop what the store now holds. A
    /// refused batch is offered again, after a wait that doubles each time, until the store
    /// takes it; meanwhile the log is marked failing, which makes the proxy refuse new
    /// requests. Only the shutdown deadline ends the retries.
    async fn write(&mut self, batch: &mut Vec<Queued>) {
        let Some(through) = batch.last().map(|queued| queued.seq) else {
            return;
        };
        let count = batch.len();
        let counters = &self.counters;
        counters.in_batch.store(count, Ordering::Relaxed);
        let entries = Arc::new(Batch {
            entries: batch.drain(..).map(|queued| queued.entry).collect(),
            through,
        });
        let mut wait = RETRY_FIRST;
        let mut refusals = 0u32;
        loop {
            match (self.sink)(entries.clone()).await {
                Ok(()) => break,
                Err(error) => {
                    refusals += 1;
                    counters.write_refusals.fetch_add(1, Ordering::Relaxed);
                    if !counters.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            entries = count,
                            "cannot write the request log: {error}; proxy requests are refused \
                             until it can be written"
                        );
                    } else {
                        tracing::warn!(
                            entries = count,
                            refusals,
                            "still cannot write the request log: {error}"
                        );
                    }
                    self.clock.sleep_until(self.clock.now() + wait).await;
                    wait = (wait * 2).min(RETRY_AT_MOST);
                }
            }
        }
        if counters.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(
                entries = count,
                refusals,
                "the request log is written again; proxy requests are accepted"
            );
        }
        counters.in_batch.store(0, Ordering::Relaxed);
        if self.journal.needs_upkeep(through) {
            let journal = self.journal.clone();
            let _ = tokio::task::spawn_blocking(move || journal.committed(through)).await;
        }
    }

    /// When to try a new journal file, if the journal is failing.
    fn reopen_at(&mut self) -> Option<Instant> {
        if !self.journal.failing() {
            self.reopen = None;
            return None;
        }
        let (at, _) = self
            .reopen
            .get_or_insert_with(|| (self.clock.now() + RETRY_FIRST, RETRY_FIRST * 2));
        Some(*at)
    }

    async fn reopen(&mut self) {
        let journal = self.journal.clone();
        let reopened = tokio::task::spawn_blocking(move || journal.reopen())
            .await
            .unwrap_or(false);
        self.reopen = match (reopened, self.reopen) {
            (true, _) | (false, None) => None,
            (false, Some((_, wait))) => {
                Some((self.clock.now() + wait, (wait * 2).min(RETRY_AT_MOST)))
            }
        };
    }
}

/// What the operator has been told so far: once per batch at most, how many entries waited
/// for room in a full queue (the store is slower than the traffic) and how many were not
/// written at shutdown.
#[derive(Debug, Default)]
struct Reported {
    dropped: u64,
    waited: u64,
}

impl Reported {
    fn report(&mut self, counters: &Counters) {
        let waited = counters.waited.load(Ordering::Relaxed);
        if waited > self.waited {
            tracing::warn!(
                waited = waited - self.waited,
                waited_total = waited,
                "the request log is behind: requests waited for room in its queue"
            );
            self.waited = waited;
        }
        let dropped = counters.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped {
            tracing::warn!(
                dropped = dropped - self.dropped,
                total = dropped,
                "request log entries dropped (recorded after the writer stopped)"
            );
            self.dropped = dropped;
        }
    }
}

#[cfg(test)]
mod tests;
