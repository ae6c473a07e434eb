//! The request log's writer: the last step of the request path. The pipeline hands each
//! finished request's metadata ([`LogEntry`]) to [`RequestLog::record`]; a background task
//! gathers them into batches, and a thread of its own writes each batch to the store.
//!
//! The log loses nothing while the server runs, as an audit trail must not
//! (`docs/security.md`: auditing fails closed):
//!
//! - the queue is bounded (16,384 entries, about half a second of traffic at full load, a few
//!   megabytes); when it is full, as when the store is slower than the traffic, `record`
//!   waits for room, which slows requests down to the pace the log is written at;
//! - a batch the store refuses (disk full, database locked) is kept and written again, a
//!   little later each time, and until one is written [`RequestLog::accepting`] says no:
//!   the proxy refuses new requests (503) rather than forward requests nobody records.
//!
//! A batch is written when it reaches 1,000 entries or 250 ms after its first entry arrived,
//! whichever comes first. [`LogWriter::shutdown`] writes what is queued, within a deadline;
//! what it cannot write then is the one loss, counted and logged. What an entry holds
//! (metadata only, never a credential or a header value) is decided where it is built, in
//! the pipeline; this module's warnings hold counts, never entry contents, and at debug
//! level each entry is also one `proxy_request` line with the same metadata. Reading the log
//! is `api/logs.rs`; retention is the server's upkeep.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::ratelimit::{Clock, TokioClock};
use crate::store::{self, Db, LogEntry};

/// Entries waiting to be written; beyond this they are dropped. Sized to ride out a trim
/// (below) at full load: at 26k requests/s, 1,024 entries lasted 40 ms and 2-4% were lost.
const QUEUE: usize = 16 * 1024;
/// The most entries written in one transaction.
const BATCH: usize = 1000;
/// How long the first entry of a batch waits for the batch to fill.
const FLUSH_AFTER: Duration = Duration::from_millis(250);
/// How long after a refused write the batch is tried again; the wait doubles with each
/// refusal, up to [`RETRY_AT_MOST`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_AT_MOST: Duration = Duration::from_secs(5);

/// A batch, shared so that a refused one can be offered again.
type Batch = Arc<Vec<LogEntry>>;

/// Where the writer's batches go: the store, or a test's recorder in front of it.
type Sink = Box<dyn FnMut(Batch) -> Pin<Box<dyn Future<Output = store::Result<()>> + Send>> + Send>;

/// The request path's handle on the request log; cheap to clone.
#[derive(Debug, Clone)]
pub struct RequestLog {
    queue: mpsc::Sender<LogEntry>,
    counters: Arc<Counters>,
}

/// The background writer, to stop at shutdown. Dropped without [`LogWriter::shutdown`], it
/// still writes what is queued and stops, but nobody waits for it.
#[derive(Debug)]
pub struct LogWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// Does not keep the queue open; counts what is left if the deadline passes.
    queue: mpsc::WeakSender<LogEntry>,
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
    /// Entries that never reached the store (queued at shutdown and not written by its
    /// deadline, or recorded after it).
    dropped: AtomicU64,
    /// Entries that found the queue full and waited for room.
    waited: AtomicU64,
    /// Whether the store refused the last write; cleared when a write succeeds.
    failing: AtomicBool,
    /// Entries taken from the queue and not yet written.
    in_batch: AtomicUsize,
    /// Signalled when a batch's worth of entries is queued.
    batch_ready: tokio::sync::Notify,
}

impl RequestLog {
    /// Start the batch writer on the current tokio runtime (panics outside one). Every few
    /// seconds, after a batch, the log is also trimmed to `retention`, so it stays bounded
    /// however fast requests come.
    pub fn start(db: Db, retention: LogRetention) -> (RequestLog, LogWriter) {
        let store_thread = StoreThread::start(db, retention);
        let sink: Sink = Box::new(move |batch: Batch| Box::pin(store_thread.write(batch)));
        RequestLog::start_with(sink, Arc::new(TokioClock), QUEUE)
    }

    fn start_with(sink: Sink, clock: Arc<dyn Clock>, capacity: usize) -> (RequestLog, LogWriter) {
        let (queue, entries) = mpsc::channel(capacity);
        let (stop, stopped) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(write_batches(
            entries,
            stopped,
            sink,
            clock.clone(),
            counters.clone(),
        ));
        let writer = LogWriter {
            stop,
            task,
            queue: queue.downgrade(),
            counters: counters.clone(),
            clock,
        };
        (RequestLog { queue, counters }, writer)
    }

    /// Whether requests may go ahead: not while the store refuses the log's writes, nor
    /// once the writer has stopped. The proxy asks before it forwards anything, so that no
    /// request goes out that the log could not record.
    pub fn accepting(&self) -> Result<(), LogUnavailable> {
        if self.counters.failing.load(Ordering::Relaxed) || self.queue.is_closed() {
            return Err(LogUnavailable);
        }
        Ok(())
    }

    /// Queue one entry. When the queue is full this waits for room (the writer is behind);
    /// only once the writer has stopped, at shutdown, is the entry dropped and counted.
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
        match self.queue.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(entry)) => {
                self.counters.waited.fetch_add(1, Ordering::Relaxed);
                // A full queue holds a batch: make sure the writer is not waiting for one.
                self.counters.batch_ready.notify_one();
                if self.queue.send(entry).await.is_err() {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            Err(TrySendError::Closed(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // The writer holds at least one entry while it waits for the rest of a batch.
        let queued = self.queue.max_capacity() - self.queue.capacity();
        if queued + 1 >= BATCH {
            self.counters.batch_ready.notify_one();
        }
    }

    /// Entries dropped so far: still unwritten at the shutdown deadline, or recorded after
    /// the writer stopped.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Entries so far that found the queue full and waited for room.
    pub fn waited(&self) -> u64 {
        self.counters.waited.load(Ordering::Relaxed)
    }
}

/// The request log cannot take entries now; see [`RequestLog::accepting`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request log cannot be written")]
pub struct LogUnavailable;

impl LogWriter {
    /// Write what is queued and stop; entries not written within `deadline` are dropped
    /// (and counted).
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
                    "request log not written within {deadline:?} of shutdown; entries dropped"
                );
            }
        }
    }
}

/// A batch for the store thread, and where its outcome goes.
type StoreJob = (Batch, oneshot::Sender<store::Result<()>>);

/// The thread that writes batches to the store and trims the log: its own, rather than the
/// runtime's blocking pool, so that a busy log never queues the control plane's store calls
/// behind it. It runs at the same priority as the request threads: at nice 5 it fell behind
/// under full load on two cores (bench/proxy counted 0.7% of entries dropped).
struct StoreThread {
    jobs: std::sync::mpsc::Sender<StoreJob>,
}

impl StoreThread {
    fn start(db: Db, retention: LogRetention) -> StoreThread {
        let (jobs, received) = std::sync::mpsc::channel::<StoreJob>();
        let spawned = std::thread::Builder::new()
            .name("agent-vault-log".to_owned())
            .spawn(move || {
                let mut last_trim = std::time::Instant::now();
                for (batch, outcome) in received {
                    let store = db.store();
                    let mut written = store.insert_logs(&batch);
                    if written.is_ok() && last_trim.elapsed() >= TRIM_EVERY {
                        last_trim = std::time::Instant::now();
                        let older_than = crate::store::now() - retention.max_age.as_secs() as i64;
                        written = store
                            .prune_logs(older_than, retention.max_rows_per_vault)
                            .map(drop);
                    }
                    let _ = outcome.send(written);
                }
            });
        if let Err(error) = spawned {
            // Without the thread every batch fails, and is counted as dropped.
            tracing::error!("cannot start the request log's thread: {error}");
        }
        StoreThread { jobs }
    }

    fn write(&self, batch: Batch) -> impl Future<Output = store::Result<()>> + use<> {
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

/// The writer task: batches until told to stop (or every `RequestLog` is gone), then what
/// is left in the queue.
async fn write_batches(
    mut entries: mpsc::Receiver<LogEntry>,
    mut stop: oneshot::Receiver<()>,
    mut sink: Sink,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut reported = Reported::default();
    loop {
        let mut stopping = false;
        tokio::select! {
            biased;
            _ = &mut stop => stopping = true,
            received = entries.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
            }
        }
        if !stopping && batch.len() < BATCH {
            // Wait for the batch to fill without taking entries one by one: the request
            // path wakes this task once when enough are queued, not for every entry.
            let mut flush = clock.sleep_until(clock.now() + FLUSH_AFTER);
            while batch.len() + entries.len() < BATCH && !entries.is_closed() {
                tokio::select! {
                    biased;
                    _ = &mut stop => {
                        stopping = true;
                        break;
                    }
                    () = counters.batch_ready.notified() => {}
                    () = &mut flush => break,
                }
            }
            while batch.len() < BATCH {
                let Ok(entry) = entries.try_recv() else { break };
                batch.push(entry);
            }
        }
        write(&mut sink, &mut batch, &*clock, &counters).await;
        reported.report(&counters);
        if stopping {
            break;
        }
    }
    entries.close();
    while entries.recv_many(&mut batch, BATCH).await > 0 {
        write(&mut sink, &mut batch, &*clock, &counters).await;
    }
    reported.report(&counters);
}

/// Write and empty `batch`. A refused batch is offered again, after a wait that doubles
/// each time, until the store takes it; meanwhile the log is marked failing, which makes
/// the proxy refuse new requests. Only the shutdown deadline ends the retries.
async fn write(sink: &mut Sink, batch: &mut Vec<LogEntry>, clock: &dyn Clock, counters: &Counters) {
    if batch.is_empty() {
        return;
    }
    let count = batch.len();
    counters.in_batch.store(count, Ordering::Relaxed);
    let entries = Arc::new(std::mem::replace(batch, Vec::with_capacity(BATCH)));
    let mut wait = RETRY_FIRST;
    let mut refusals = 0u32;
    loop {
        match sink(entries.clone()).await {
            Ok(()) => break,
            Err(error) => {
                refusals += 1;
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
                clock.sleep_until(clock.now() + wait).await;
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
}

/// What the operator has been told so far: once per batch at most, how many entries waited
/// for room in a full queue (the store is slower than the traffic) and how many were lost.
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
                "request log entries dropped (not written by the shutdown deadline)"
            );
            self.dropped = dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use crate::ratelimit::manual::ManualClock;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{LogQuery, Store, StoreError};

    const MS: Duration = Duration::from_millis(1);

    /// A real store in a temporary directory, and the sizes of the batches written to it.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<SqliteStore>,
        vault_id: String,
        batches: Arc<Mutex<Vec<usize>>>,
        clock: Arc<ManualClock>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(SqliteStore::open(&dir.path().join("agent-vault.db")).unwrap());
            let vault_id = store.vault("default").unwrap().unwrap().id;
            Fixture {
                _dir: dir,
                store,
                vault_id,
                batches: Arc::default(),
                clock: ManualClock::new(),
            }
        }

        /// Start a writer whose batches go to the store, failing those `fail` picks.
        fn start(
            &self,
            capacity: usize,
            fail: impl Fn(usize) -> bool + Send + 'static,
        ) -> (RequestLog, LogWriter) {
            let db = Db::new(self.store.clone());
            let batches = self.batches.clone();
            let sink: Sink = Box::new(move |batch: Batch| {
                let number = {
                    let mut batches = batches.lock().unwrap();
                    batches.push(batch.len());
                    batches.len()
                };
                let db = db.clone();
                let fails = fail(number);
                Box::pin(async move {
                    if fails {
                        return Err(StoreError::Database("disk I/O error".into()));
                    }
                    db.run(move |store| store.insert_logs(&batch)).await
                })
            });
            RequestLog::start_with(sink, self.clock.clone(), capacity)
        }

        fn entry(&self, n: usize) -> LogEntry {
            LogEntry {
                id: 0,
                vault_id: self.vault_id.clone(),
                ingress: "explicit".into(),
                method: "GET".into(),
                host: "api.stripe.com".into(),
                path: format!("/v1/charges/{n}"),
                matched_service: Some("stripe".into()),
                credential_keys: vec!["STRIPE_KEY".into()],
                status: 200,
                latency_ms: 12,
                error_code: None,
                actor: None,
                created_at: 1_700_000_000,
            }
        }

        /// The paths written, oldest first.
        fn written(&self) -> Vec<String> {
            let query = LogQuery {
                before: None,
                after: Some(0),
                limit: 10_000,
                ..LogQuery::default()
            };
            let mut entries = self.store.logs(&self.vault_id, &query).unwrap();
            entries.reverse();
            entries.into_iter().map(|entry| entry.path).collect()
        }

        /// Wait (bounded) for `count` entries to reach the store.
        async fn until_written(&self, count: usize) {
            for _ in 0..2000 {
                if self.written().len() >= count {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!(
                "{count} entries never arrived; have {}",
                self.written().len()
            );
        }

        fn batches(&self) -> Vec<usize> {
            self.batches.lock().unwrap().clone()
        }
    }

    fn paths(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| format!("/v1/charges/{n}")).collect()
    }

    #[tokio::test]
    async fn entries_arrive_in_order_in_batches_of_1000() {
        let fixture = Fixture::new();
        let (log, writer) = fixture.start(QUEUE, |_| false);
        for n in 0..2500 {
            log.record(fixture.entry(n)).await;
        }
        fixture.until_written(2000).await;
        // The last 500 wait for their batch to fill, or for 250 ms.
        fixture.clock.until_sleepers(1).await;
        assert_eq!(fixture.batches(), [1000, 1000]);
        fixture.clock.advance(FLUSH_AFTER);
        fixture.until_written(2500).await;
        assert_eq!(fixture.batches(), [1000, 1000, 500]);
        assert_eq!(fixture.written(), paths(0..2500));
        assert_eq!(log.dropped(), 0);
        writer.shutdown(Duration::from_secs(3)).await;
    }

    #[tokio::test]
    async fn a_lone_entry_is_written_250_ms_after_it_arrived() {
        let fixture = Fixture::new();
        let (log, writer) = fixture.start(QUEUE, |_| false);
        log.record(fixture.entry(0)).await;
        fixture.clock.until_sleepers(1).await;
        fixture.clock.advance(FLUSH_AFTER - MS);
        log.record(fixture.entry(1)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fixture.batches(), Vec::<usize>::new(), "not yet");
        fixture.clock.advance(MS);
        fixture.until_written(2).await;
        assert_eq!(fixture.batches(), [2]);

        // The next entry starts a new 250 ms.
        log.record(fixture.entry(2)).await;
        fixture.clock.until_sleepers(1).await;
        fixture.clock.advance(FLUSH_AFTER);
        fixture.until_written(3).await;
        assert_eq!(fixture.batches(), [2, 1]);
        writer.shutdown(Duration::from_secs(3)).await;
    }

    #[tokio::test]
    async fn a_full_queue_makes_requests_wait_and_loses_nothing() {
        let fixture = Fixture::new();
        let capacity = 1024;
        let (log, writer) = fixture.start(capacity, |_| false);
        // The writer has not run yet (one thread, no await so far): the queue fills up.
        for n in 0..capacity {
            log.record(fixture.entry(n)).await;
        }
        assert_eq!(log.waited(), 0);
        // The next requests wait for the writer to make room, then go in, in order.
        for n in capacity..capacity + 5 {
            log.record(fixture.entry(n)).await;
        }
        assert_eq!(log.waited(), 1, "only the first found the queue full");
        writer.shutdown(Duration::from_secs(3)).await;
        assert_eq!(fixture.written(), paths(0..capacity + 5));
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_queued() {
        let fixture = Fixture::new();
        let (log, writer) = fixture.start(QUEUE, |_| false);
        for n in 0..1030 {
            log.record(fixture.entry(n)).await;
        }
        // No time passes: the 30 after the first batch are written because of the shutdown.
        writer.shutdown(Duration::from_secs(3)).await;
        assert_eq!(fixture.written(), paths(0..1030));
        assert_eq!(fixture.batches(), [1000, 30]);
        log.record(fixture.entry(1030)).await;
        assert_eq!(log.dropped(), 1, "after shutdown, entries are dropped");
    }

    #[tokio::test]
    async fn a_refused_batch_is_written_later_and_requests_are_refused_meanwhile() {
        let fixture = Fixture::new();
        // The store refuses the first two attempts (a full disk, say), then recovers.
        let (log, writer) = fixture.start(QUEUE, |attempt| attempt <= 2);
        assert!(log.accepting().is_ok());
        for n in 0..1000 {
            log.record(fixture.entry(n)).await;
        }
        // The first attempt is refused; the writer waits 100 ms to try again.
        fixture.clock.until_sleepers(1).await;
        assert_eq!(fixture.batches(), [1000]);
        assert!(log.accepting().is_err(), "no requests while the log fails");
        fixture.clock.advance(RETRY_FIRST);
        // Refused again: the next wait is twice as long.
        while fixture.batches().len() < 2 {
            tokio::task::yield_now().await;
        }
        fixture.clock.until_sleepers(1).await;
        fixture.clock.advance(RETRY_FIRST);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fixture.batches().len(), 2, "not yet");
        assert!(log.accepting().is_err());
        fixture.clock.advance(RETRY_FIRST);
        fixture.until_written(1000).await;
        assert_eq!(fixture.batches(), [1000, 1000, 1000]);
        while log.accepting().is_err() {
            tokio::task::yield_now().await;
        }
        assert_eq!(fixture.written(), paths(0..1000));
        assert_eq!(log.dropped(), 0);
        writer.shutdown(Duration::from_secs(3)).await;
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_written_by_the_shutdown_deadline_counts_what_is_lost() {
        let fixture = Fixture::new();
        let (log, writer) = fixture.start(QUEUE, |_| true);
        for n in 0..10 {
            log.record(fixture.entry(n)).await;
        }
        let shutdown = tokio::spawn(writer.shutdown(Duration::from_secs(3)));
        // The shutdown's deadline, and the writer's wait before its next attempt.
        fixture.clock.until_sleepers(2).await;
        fixture.clock.advance(Duration::from_secs(3));
        shutdown.await.unwrap();
        assert_eq!(log.dropped(), 10);
        assert!(fixture.written().is_empty());
        assert!(log.accepting().is_err(), "the writer has stopped");
    }

    #[tokio::test]
    async fn shutdown_gives_up_at_its_deadline() {
        let fixture = Fixture::new();
        let clock = ManualClock::new();
        // A store that never answers.
        let sink: Sink = Box::new(|_| Box::pin(std::future::pending()));
        let (log, writer) = RequestLog::start_with(sink, clock.clone(), 8);
        for n in 0..5 {
            log.record(fixture.entry(n)).await;
        }
        clock.until_sleepers(1).await;
        clock.advance(FLUSH_AFTER);
        // The writer is stuck on those 5; 2 more wait in the queue.
        while log.counters.in_batch.load(Ordering::Relaxed) < 5 {
            tokio::task::yield_now().await;
        }
        for n in 5..7 {
            log.record(fixture.entry(n)).await;
        }
        let shutdown = tokio::spawn(writer.shutdown(Duration::from_secs(3)));
        clock.until_sleepers(1).await;
        clock.advance(Duration::from_secs(3));
        shutdown.await.unwrap();
        assert_eq!(log.dropped(), 7);
    }
}
