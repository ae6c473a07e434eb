//! The request log's tests: batching, waiting for room, refused batches and shutdown
//! (through a real store in a temporary directory), and the journal: appends, rotation
//! under concurrent appends, replay after a simulated kill, a journal that cannot be
//! written.

use super::*;

use std::sync::Mutex;

use crate::ratelimit::manual::ManualClock;
use crate::store::sqlite::SqliteStore;
use crate::store::{JournalSeq, LogQuery, RequestLogStore, StoreError, VaultStore};

const MS: Duration = Duration::from_millis(1);

/// A real store in a temporary directory (the data directory, with the journal's), and the
/// batches offered to it (their sizes and last journal numbers).
struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    vault_id: String,
    batches: Arc<Mutex<Vec<(usize, JournalSeq)>>>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("agent-vault.db")).unwrap());
        let vault_id = store.vault("default").unwrap().unwrap().id;
        Fixture {
            dir,
            store,
            vault_id,
            batches: Arc::default(),
            clock: ManualClock::new(),
        }
    }

    /// Start a writer whose batches go to the store, failing those `fail` picks, after
    /// replaying the journal.
    fn start(
        &self,
        capacity: usize,
        fail: impl Fn(usize) -> bool + Send + 'static,
    ) -> (RequestLog, LogWriter) {
        self.start_rotating_at(journal::ROTATE_AT, capacity, fail)
    }

    fn start_rotating_at(
        &self,
        rotate_at: u64,
        capacity: usize,
        fail: impl Fn(usize) -> bool + Send + 'static,
    ) -> (RequestLog, LogWriter) {
        let journal = self.recover(rotate_at);
        let journal_id: Arc<str> = journal.id().into();
        let db = Db::new(self.store.clone());
        let batches = self.batches.clone();
        let sink: Sink = Box::new(move |batch: Arc<Batch>| {
            let number = {
                let mut batches = batches.lock().unwrap();
                batches.push((batch.entries.len(), batch.through));
                batches.len()
            };
            let (db, journal_id) = (db.clone(), journal_id.clone());
            let fails = fail(number);
            Box::pin(async move {
                if fails {
                    return Err(StoreError::Database("disk I/O error".into()));
                }
                db.run(move |store| {
                    store.insert_journaled_logs(&batch.entries, &journal_id, batch.through)
                })
                .await
            })
        });
        RequestLog::start_with(sink, Arc::new(journal), self.clock.clone(), capacity)
    }

    /// Open the journal as a starting server does, replaying what it holds.
    fn recover(&self, rotate_at: u64) -> Journal {
        Journal::recover_with(self.dir.path(), &*self.store, rotate_at).unwrap()
    }

    /// The journal's files and their sizes, by name.
    /// The journal's files and their sizes, but for its id (`id`, 33 bytes).
    fn journal_files(&self) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(self.dir.path().join(JOURNAL_DIR))
            .unwrap()
            .filter(|item| item.as_ref().unwrap().file_name() != "id")
            .map(|item| {
                let item = item.unwrap();
                let name = item.file_name().into_string().unwrap();
                (name, item.metadata().unwrap().len())
            })
            .collect();
        files.sort();
        files
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
            limit: 100_000,
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

    /// What SIGKILL leaves: the journal's files and the store as they are, nothing else.
    /// Waits for the writer's blocking work (on the journal, a store transaction) to end,
    /// as it would have either ended or never happened in a killed process.
    async fn kill(&self, log: RequestLog, writer: LogWriter) {
        let journal = Arc::downgrade(&log.journal);
        writer.task.abort();
        drop(log);
        while journal.strong_count() > 0 || Arc::strong_count(&self.store) > 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Wait (bounded) for `count` sleeps on the clock, letting threads run meanwhile: the
    /// writer's work on the journal and the store happens on the blocking pool.
    async fn until_sleeping(&self, count: usize) {
        for _ in 0..10_000 {
            if self.clock.sleepers() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{count} sleepers never appeared");
    }

    fn batches(&self) -> Vec<usize> {
        let batches = self.batches.lock().unwrap();
        batches.iter().map(|(size, _)| *size).collect()
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
    let journal = Arc::new(fixture.recover(journal::ROTATE_AT));
    let (log, writer) = RequestLog::start_with(sink, journal, clock.clone(), 8);
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

// The journal.

/// The journal's files after a start: one, holding its header only.
fn fresh_journal(generation: u64) -> Vec<(String, u64)> {
    vec![(
        format!("journal-{generation}.jsonl"),
        journal::HEADER.len() as u64,
    )]
}

#[tokio::test]
async fn an_entry_survives_a_kill_once_record_returns() {
    let fixture = Fixture::new();
    // A store that never answers: nothing reaches it before the kill.
    let sink: Sink = Box::new(|_| Box::pin(std::future::pending()));
    let journal = Arc::new(fixture.recover(journal::ROTATE_AT));
    let (log, writer) = RequestLog::start_with(sink, journal, fixture.clock.clone(), QUEUE);
    for n in 0..1500 {
        log.record(fixture.entry(n)).await;
    }
    fixture.kill(log, writer).await;
    assert!(fixture.written().is_empty());
    // Private to the user who runs the server, like the database.
    let dir = fixture.dir.path().join(JOURNAL_DIR);
    let mode = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&dir), 0o700);
    for (name, _) in fixture.journal_files() {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
    }

    // The next start writes them, in order, and empties the journal.
    let _journal = fixture.recover(journal::ROTATE_AT);
    assert_eq!(fixture.written(), paths(0..1500));
    assert_eq!(fixture.journal_files(), fresh_journal(2));
}

#[test]
fn replay_writes_each_entry_the_store_lacks_once() {
    let fixture = Fixture::new();
    let journal = fixture.recover(journal::ROTATE_AT);
    let mut queued = Vec::new();
    for n in 0..10 {
        journal
            .append(fixture.entry(n), |seq, entry| queued.push((seq, entry)))
            .unwrap();
    }
    // The writer had written the first four when the server was killed, in the middle of
    // appending an eleventh entry.
    let entries: Vec<LogEntry> = queued[..4].iter().map(|(_, e)| e.clone()).collect();
    fixture
        .store
        .insert_journaled_logs(&entries, journal.id(), queued[3].0)
        .unwrap();
    let active = journal.active_path();
    drop(journal);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    std::io::Write::write_all(&mut file, br#"{"seq":11,"vault_id":"0000"#).unwrap();
    let left = std::fs::read(&active).unwrap();

    let _journal = fixture.recover(journal::ROTATE_AT);
    assert_eq!(fixture.written(), paths(0..10));
    assert_eq!(fixture.journal_files(), fresh_journal(2));

    // Killed again, after the replay's insert but before its file was deleted: the next
    // start writes nothing twice.
    std::fs::write(&active, &left).unwrap();
    let _journal = fixture.recover(journal::ROTATE_AT);
    assert_eq!(fixture.written(), paths(0..10));
    assert_eq!(fixture.journal_files(), fresh_journal(3));
}

#[test]
fn a_journal_line_keeps_every_field() {
    let fixture = Fixture::new();
    let journal = fixture.recover(journal::ROTATE_AT);
    let mut entry = fixture.entry(0);
    entry.path = "/v1/\"quoted\"/back\\slash/\u{e9}t\u{e9}/tab\t/line\nbreak".into();
    entry.host = "xn--bcher-kva.example:8443".into();
    entry.credential_keys = vec!["A_KEY".into(), "ANOTHER_KEY".into()];
    entry.error_code = Some("upstream_error".into());
    entry.actor = Some(crate::store::ActorId::agent("agent-7"));
    entry.latency_ms = u64::MAX;
    entry.status = 502;
    let mut bare = fixture.entry(1);
    bare.matched_service = None;
    bare.credential_keys = Vec::new();
    bare.actor = None;
    for entry in [entry.clone(), bare.clone()] {
        journal.append(entry, |_, _| {}).unwrap();
    }
    drop(journal);
    let _journal = fixture.recover(journal::ROTATE_AT);

    let query = LogQuery {
        before: None,
        after: Some(0),
        limit: 10,
        ..LogQuery::default()
    };
    let mut written = fixture.store.logs(&fixture.vault_id, &query).unwrap();
    written.reverse();
    for row in &mut written {
        row.id = 0;
    }
    // The store keeps latencies as SQLite integers.
    entry.latency_ms = i64::MAX as u64;
    assert_eq!(written, [entry, bare]);
}

#[test]
fn a_damaged_journal_file_is_replayed_where_readable_and_kept() {
    let fixture = Fixture::new();
    let journal = fixture.recover(journal::ROTATE_AT);
    for n in 0..3 {
        journal.append(fixture.entry(n), |_, _| {}).unwrap();
    }
    let active = journal.active_path();
    drop(journal);
    // The middle line is damaged (as a disk might do; a kill cannot).
    let text = std::fs::read_to_string(&active).unwrap();
    let damaged = text.replacen(r#""path":"/v1/charges/1""#, r#""path":/v1/charges/1""#, 1);
    assert_ne!(damaged, text);
    std::fs::write(&active, damaged).unwrap();

    let _journal = fixture.recover(journal::ROTATE_AT);
    assert_eq!(fixture.written(), ["/v1/charges/0", "/v1/charges/2"]);
    assert_eq!(
        fixture.journal_files(),
        [
            (
                "journal-1.jsonl.unreadable".to_owned(),
                std::fs::metadata(format!("{}.unreadable", active.display()))
                    .unwrap()
                    .len()
            ),
            ("journal-2.jsonl".to_owned(), journal::HEADER.len() as u64),
        ]
    );
    // The file set aside is not read again, and its generation is not reused.
    drop(_journal);
    let _journal = fixture.recover(journal::ROTATE_AT);
    assert_eq!(fixture.written(), ["/v1/charges/0", "/v1/charges/2"]);
    assert_eq!(fixture.journal_files()[1].0, "journal-3.jsonl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_concurrent_appends_loses_nothing() {
    let fixture = Fixture::new();
    // Rotate after every batch: files are swapped and deleted while four threads append,
    // each from a runtime of its own, as the connection workers do.
    let (log, writer) = fixture.start_rotating_at(1, QUEUE, |_| false);
    const THREADS: usize = 4;
    const EACH: usize = 6_000;
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (log, fixture) = (log.clone(), &fixture);
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    for n in 0..EACH {
                        let mut entry = fixture.entry(n);
                        entry.path = format!("/t{thread}/{n}");
                        log.record(entry).await;
                    }
                });
            });
        }
    });
    // The queue hands entries on in journal order, each number once: every batch ends
    // where the one before it ended plus its size (what lets the store keep one number).
    let offered = fixture.batches.lock().unwrap().clone();
    let mut through = 0;
    for (size, last) in offered {
        if last != through {
            // A batch offered again after a refusal is the same batch.
            through += size as JournalSeq;
        }
        assert_eq!(last, through, "a batch of {size} ending at {last}");
    }
    let rotations = log.journal.files_opened() - 1;
    let written_before_the_kill = fixture.written().len();
    fixture.kill(log, writer).await;
    assert!(
        rotations >= 3,
        "the test needs rotations to race with appends; there were {rotations}"
    );

    let _journal = fixture.recover(journal::ROTATE_AT);
    let written = fixture.written();
    assert_eq!(written.len(), THREADS * EACH, "each entry once");
    for thread in 0..THREADS {
        let prefix = format!("/t{thread}/");
        let of_thread: Vec<&str> = written
            .iter()
            .filter_map(|path| path.strip_prefix(&prefix))
            .collect();
        let expected: Vec<String> = (0..EACH).map(|n| n.to_string()).collect();
        assert_eq!(of_thread, expected, "thread {thread}'s entries, in order");
    }
    assert!(
        written_before_the_kill < THREADS * EACH,
        "the kill came before the writer was done ({written_before_the_kill} written), so \
         the journal had to supply the rest"
    );
}

#[tokio::test]
async fn the_journal_holds_at_most_a_file_and_what_the_store_lacks() {
    let fixture = Fixture::new();
    let rotate_at = 16 * 1024;
    let capacity = 1024;
    let (log, writer) = fixture.start_rotating_at(rotate_at, capacity, |_| false);
    let longest_line = {
        let elsewhere = Fixture::new();
        let journal = elsewhere.recover(journal::ROTATE_AT);
        journal.append(elsewhere.entry(99_999), |_, _| {}).unwrap();
        std::fs::metadata(journal.active_path()).unwrap().len() - journal::HEADER.len() as u64
    };
    // The bound (journal.rs): a file's worth, and twice the entries the store may lack
    // (queued, and in the batch being written), with the headers of the files they
    // spread over.
    let lacking = (capacity + BATCH) as u64;
    let bound = rotate_at + 2 * lacking * longest_line + 8 * journal::HEADER.len() as u64;
    let total = || -> u64 { fixture.journal_files().iter().map(|(_, size)| size).sum() };
    let mut largest = 0;
    for n in 0..20_000 {
        log.record(fixture.entry(n)).await;
        if n % 100 == 0 {
            largest = largest.max(total());
        }
    }
    assert!(
        largest <= bound,
        "{largest} bytes, over the bound of {bound}"
    );
    writer.shutdown(Duration::from_secs(3)).await;
    assert_eq!(fixture.written(), paths(0..20_000));
    assert!(
        total() <= rotate_at + longest_line + 2 * journal::HEADER.len() as u64,
        "once all is written, at most the active file is left: {:?}",
        fixture.journal_files()
    );
}

#[tokio::test]
async fn a_journal_that_cannot_be_written_refuses_requests_until_a_new_file_opens() {
    let fixture = Fixture::new();
    let (log, writer) = fixture.start(QUEUE, |_| false);
    log.record(fixture.entry(0)).await;
    fixture.until_sleeping(1).await;
    fixture.clock.advance(FLUSH_AFTER);
    fixture.until_written(1).await;
    assert!(log.accepting().is_ok());

    // The disk fills up: the next append fails, and so does making a new file.
    let dir = fixture.dir.path().join(JOURNAL_DIR);
    let aside = fixture.dir.path().join("journal-aside");
    std::fs::rename(&dir, &aside).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    log.journal.append_to(full);
    log.record(fixture.entry(1)).await;
    assert!(log.accepting().is_err(), "no requests while appends fail");
    // The entry whose append failed (its request was served) still reaches the store.
    fixture.until_sleeping(1).await;
    fixture.clock.advance(FLUSH_AFTER);
    fixture.until_written(2).await;

    // The writer tries a new file, a little later each time; each try fails.
    for _ in 0..3 {
        fixture.until_sleeping(1).await;
        fixture.clock.advance(RETRY_AT_MOST);
    }
    fixture.until_sleeping(1).await;
    assert!(log.accepting().is_err());

    // Space comes back: the next try opens a file, and requests are accepted again.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
    fixture.clock.advance(RETRY_AT_MOST);
    for _ in 0..10_000 {
        if log.accepting().is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(log.accepting().is_ok());
    log.record(fixture.entry(2)).await;
    fixture.kill(log, writer).await;
    let _journal = fixture.recover(journal::ROTATE_AT);
    assert_eq!(fixture.written(), paths(0..3));
}
