//! The request log's writer: the last step of the request path. The pipeline hands each
//! finished request's metadata ([`LogEntry`]) to [`RequestLog::record`], which never waits;
//! a background task gathers them into batches, and a thread of its own writes each batch
//! to the store.
//!
//! The queue is bounded (16,384 entries, about half a second of traffic at full load, a few
//! megabytes). When it is full, as when the store is slower than
//! the traffic, entries are dropped and counted rather than slowing requests down; so are
//! the entries of a batch the store refuses. A batch is written when it reaches 1,000 entries
//! or 250 ms after its first entry arrived, whichever comes first. [`LogWriter::shutdown`]
//! writes what is queued, within a deadline. What an entry holds (metadata only, never a
//! credential or a header value) is decided where it is built, in the pipeline; this module
//! logs counts, never entry contents. Reading the log is `api/logs.rs`; retention is the
//! server's upkeep.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

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

/// Where the writer's batches go: the store, or a test's recorder in front of it.
type Sink =
    Box<dyn FnMut(Vec<LogEntry>) -> Pin<Box<dyn Future<Output = store::Result<()>> + Send>> + Send>;

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
    /// Entries that never reached the store.
    dropped: AtomicU64,
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
        let sink: Sink = Box::new(move |batch: Vec<LogEntry>| Box::pin(store_thread.write(batch)));
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

    /// Queue one entry without waiting; when the queue is full (or the writer has stopped)
    /// the entry is dropped and counted.
    pub fn record(&self, entry: LogEntry) {
        if self.queue.try_send(entry).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The writer holds at least one entry while it waits for the rest of a batch.
        let queued = self.queue.max_capacity() - self.queue.capacity();
        if queued + 1 >= BATCH {
            self.counters.batch_ready.notify_one();
        }
    }

    /// Entries dropped so far: queue full, batch refused by the store, or still unwritten at
    /// the shutdown deadline.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

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
type StoreJob = (Vec<LogEntry>, oneshot::Sender<store::Result<()>>);

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

    fn write(&self, batch: Vec<LogEntry>) -> impl Future<Output = store::Result<()>> + use<> {
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
    let mut reported_drops = 0;
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
        write(&mut sink, &mut batch, &counters).await;
        report_drops(&counters, &mut reported_drops);
        if stopping {
            break;
        }
    }
    entries.close();
    while entries.recv_many(&mut batch, BATCH).await > 0 {
        write(&mut sink, &mut batch, &counters).await;
    }
    report_drops(&counters, &mut reported_drops);
}

/// Write and empty `batch`; a refused batch is dropped, counted and logged.
async fn write(sink: &mut Sink, batch: &mut Vec<LogEntry>, counters: &Counters) {
    if batch.is_empty() {
        return;
    }
    let count = batch.len();
    counters.in_batch.store(count, Ordering::Relaxed);
    let entries = std::mem::replace(batch, Vec::with_capacity(BATCH));
    if let Err(error) = sink(entries).await {
        counters.dropped.fetch_add(count as u64, Ordering::Relaxed);
        tracing::warn!(entries = count, "cannot write the request log: {error}");
    }
    counters.in_batch.store(0, Ordering::Relaxed);
}

/// Say, once per batch at most, how many entries the full queue turned away.
fn report_drops(counters: &Counters, reported: &mut u64) {
    let dropped = counters.dropped.load(Ordering::Relaxed);
    if dropped > *reported {
        tracing::warn!(
            dropped = dropped - *reported,
            total = dropped,
            "request log entries dropped (queue full or store failing)"
        );
        *reported = dropped;
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
            let sink: Sink = Box::new(move |batch: Vec<LogEntry>| {
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
            log.record(fixture.entry(n));
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
        log.record(fixture.entry(0));
        fixture.clock.until_sleepers(1).await;
        fixture.clock.advance(FLUSH_AFTER - MS);
        log.record(fixture.entry(1));
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fixture.batches(), Vec::<usize>::new(), "not yet");
        fixture.clock.advance(MS);
        fixture.until_written(2).await;
        assert_eq!(fixture.batches(), [2]);

        // The next entry starts a new 250 ms.
        log.record(fixture.entry(2));
        fixture.clock.until_sleepers(1).await;
        fixture.clock.advance(FLUSH_AFTER);
        fixture.until_written(3).await;
        assert_eq!(fixture.batches(), [2, 1]);
        writer.shutdown(Duration::from_secs(3)).await;
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let fixture = Fixture::new();
        let capacity = 1024;
        let (log, writer) = fixture.start(capacity, |_| false);
        // The writer has not run yet (one thread, no await): the queue fills up.
        for n in 0..capacity + 5 {
            log.record(fixture.entry(n));
        }
        assert_eq!(log.dropped(), 5);
        writer.shutdown(Duration::from_secs(3)).await;
        assert_eq!(fixture.written(), paths(0..capacity));
        assert_eq!(log.dropped(), 5);
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_queued() {
        let fixture = Fixture::new();
        let (log, writer) = fixture.start(QUEUE, |_| false);
        for n in 0..1030 {
            log.record(fixture.entry(n));
        }
        // No time passes: the 30 after the first batch are written because of the shutdown.
        writer.shutdown(Duration::from_secs(3)).await;
        assert_eq!(fixture.written(), paths(0..1030));
        assert_eq!(fixture.batches(), [1000, 30]);
        log.record(fixture.entry(1030));
        assert_eq!(log.dropped(), 1, "after shutdown, entries are dropped");
    }

    #[tokio::test]
    async fn a_refused_batch_is_dropped_and_counted() {
        let fixture = Fixture::new();
        let (log, writer) = fixture.start(QUEUE, |batch| batch == 1);
        for n in 0..1050 {
            log.record(fixture.entry(n));
        }
        writer.shutdown(Duration::from_secs(3)).await;
        assert_eq!(fixture.batches(), [1000, 50]);
        assert_eq!(fixture.written(), paths(1000..1050));
        assert_eq!(log.dropped(), 1000);
    }

    #[tokio::test]
    async fn shutdown_gives_up_at_its_deadline() {
        let fixture = Fixture::new();
        let clock = ManualClock::new();
        // A store that never answers.
        let sink: Sink = Box::new(|_| Box::pin(std::future::pending()));
        let (log, writer) = RequestLog::start_with(sink, clock.clone(), 8);
        for n in 0..5 {
            log.record(fixture.entry(n));
        }
        clock.until_sleepers(1).await;
        clock.advance(FLUSH_AFTER);
        // The writer is stuck on those 5; 2 more wait in the queue.
        while log.counters.in_batch.load(Ordering::Relaxed) < 5 {
            tokio::task::yield_now().await;
        }
        for n in 5..7 {
            log.record(fixture.entry(n));
        }
        let shutdown = tokio::spawn(writer.shutdown(Duration::from_secs(3)));
        clock.until_sleepers(1).await;
        clock.advance(Duration::from_secs(3));
        shutdown.await.unwrap();
        assert_eq!(log.dropped(), 7);
    }
}
