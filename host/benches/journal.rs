//! Per-request cost of the request log's journal: one entry appended (numbered, encoded as
//! a JSON line under the journal's lock, written with one `write` to a file opened
//! `O_APPEND`), next to the bare `write` of a line of the same size to a file of its own:
//! the difference is the lock and the encoding. Files are in the system's temporary
//! directory (say which file system it is when quoting figures); the journal is told every
//! 10,000 entries that they are written, so that it rotates and deletes as it does in the
//! server.
//!
//! Run: `cargo bench --bench journal`.

use std::hint::black_box;
use std::io::Write as _;

use agent_vault::request_log::Journal;
use agent_vault::store::sqlite::SqliteStore;
use agent_vault::store::{ActorId, LogEntry};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

/// A request as the proxy logs it: a bearer service, an agent's session.
fn entry() -> LogEntry {
    LogEntry {
        id: 0,
        vault_id: "00000000000000000000000000000000".into(),
        ingress: "explicit".into(),
        method: "POST".into(),
        host: "api.openai.com:443".into(),
        path: "/v1/chat/completions".into(),
        matched_service: Some("openai".into()),
        credential_keys: vec!["OPENAI_API_KEY".into()],
        status: 200,
        latency_ms: 412,
        error_code: None,
        actor: Some(ActorId::agent("3f2b7c1e9a0d4a418d0e3f1c2b4a6e77")),
        created_at: 1_795_000_000,
    }
}

fn journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("agent-vault.db")).unwrap();
    let journal = Journal::recover(dir.path(), &store).unwrap();
    let mut appended = 0u64;
    let mut last = 0;
    c.bench_function("journal append (encode + write)", |b| {
        b.iter_batched(
            entry,
            |entry| {
                journal
                    .append(entry, |seq, entry| {
                        last = seq;
                        black_box(entry);
                    })
                    .unwrap();
                appended += 1;
                if appended.is_multiple_of(10_000) {
                    journal.committed(last);
                }
            },
            BatchSize::SmallInput,
        )
    });

    // The same number of bytes, written bare.
    let line_len = {
        let probe = tempfile::tempdir().unwrap();
        let probe_store = SqliteStore::open(&probe.path().join("agent-vault.db")).unwrap();
        let probe_journal = Journal::recover(probe.path(), &probe_store).unwrap();
        let header = dir_size(&probe.path().join("request-log-journal"));
        probe_journal.append(entry(), |_, _| {}).unwrap();
        dir_size(&probe.path().join("request-log-journal")) - header
    };
    let line = vec![b'x'; line_len as usize];
    let path = dir.path().join("bare");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let mut written = 0u64;
    c.bench_function(&format!("bare write of {line_len} bytes"), |b| {
        b.iter(|| {
            file.write_all(black_box(&line)).unwrap();
            written += 1;
            if written.is_multiple_of(10_000) {
                file.set_len(0).unwrap();
            }
        })
    });
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|item| item.unwrap().metadata().unwrap().len())
        .sum()
}

criterion_group!(benches, journal);
criterion_main!(benches);
