//! Tests of the request log (`sqlite/request_log.rs`).

use super::*;

/// How many rows the SQLite backend writes per statement (`sqlite/request_log.rs`): batches
/// around it are where the chunking could go wrong.
const LOG_INSERT_ROWS: usize = 32;

fn log_entries_get_increasing_ids_and_keep_their_fields(backend: Backend) {
    let store = open_store(backend);
    let mut first = log_entry(DEFAULT_VAULT_ID, T0);
    first.id = 999;
    let mut second = log_entry(DEFAULT_VAULT_ID, T0 + 1);
    second.credential_keys = vec![];
    second.matched_service = None;
    second.error_code = Some("no_service".into());
    second.actor = None;
    second.status = 404;
    second.latency_ms = u64::MAX;
    let deleted_vault = log_entry("gone", T0);

    store
        .insert_logs(&[first.clone(), deleted_vault, second.clone()])
        .unwrap();

    let entries = store
        .logs(
            DEFAULT_VAULT_ID,
            &LogQuery {
                before: None,
                after: None,
                limit: 10,
                ..LogQuery::default()
            },
        )
        .unwrap();
    assert_eq!(
        entries.len(),
        2,
        "the entry of a vault that no longer exists is dropped"
    );
    assert!(entries[0].id > entries[1].id);
    first.id = entries[1].id;
    second.id = entries[0].id;
    second.latency_ms = i64::MAX as u64;
    assert_eq!(entries, [second, first]);
}

/// A request-log journal's id, as `request_log/journal.rs` makes them.
const JOURNAL: &str = "6a0f3e1c9b2d4e5f8a7b6c5d4e3f2a1b";

fn the_journal_mark_moves_with_its_rows_and_never_back(backend: Backend) {
    let store = open_store(backend);
    assert_eq!(store.journaled_through(JOURNAL).unwrap(), 0);
    let entry = log_entry(DEFAULT_VAULT_ID, T0);
    store
        .insert_journaled_logs(&[entry.clone(), entry.clone()], JOURNAL, 7)
        .unwrap();
    assert_eq!(store.journaled_through(JOURNAL).unwrap(), 7);
    // A replay of older numbers, or rows from elsewhere, leave it where it is.
    store
        .insert_journaled_logs(std::slice::from_ref(&entry), JOURNAL, 5)
        .unwrap();
    store.insert_logs(&[entry]).unwrap();
    assert_eq!(store.journaled_through(JOURNAL).unwrap(), 7);
    // A batch whose entries all belong to deleted vaults still moves it.
    store
        .insert_journaled_logs(&[log_entry("gone", T0)], JOURNAL, 9)
        .unwrap();
    assert_eq!(store.journaled_through(JOURNAL).unwrap(), 9);
}

fn a_large_batch_is_written_whole_and_in_order(backend: Backend) {
    let store = open_store(backend);
    // Two full multi-row statements and a remainder, with a deleted vault's entry among
    // them.
    let count = 2 * LOG_INSERT_ROWS + 5;
    let mut batch: Vec<LogEntry> = (0..count)
        .map(|n| {
            let mut entry = log_entry(DEFAULT_VAULT_ID, T0);
            entry.path = format!("/v1/items/{n}");
            entry.status = 200 + n as u16;
            entry
        })
        .collect();
    batch.insert(LOG_INSERT_ROWS - 1, log_entry("gone", T0));

    store.insert_logs(&batch).unwrap();

    let query = LogQuery {
        before: None,
        after: None,
        limit: 1000,
        ..LogQuery::default()
    };
    let mut written = store.logs(DEFAULT_VAULT_ID, &query).unwrap();
    written.reverse();
    let paths: Vec<&str> = written.iter().map(|entry| entry.path.as_str()).collect();
    let expected: Vec<String> = (0..count).map(|n| format!("/v1/items/{n}")).collect();
    assert_eq!(paths, expected);
    assert!(written.windows(2).all(|pair| pair[0].id < pair[1].id));
    assert_eq!(written.last().unwrap().status, 200 + count as u16 - 1);
}

fn the_request_log_pages_newest_first_by_id_cursor(backend: Backend) {
    let store = open_store(backend);
    let payments = store.create_vault("payments", None).unwrap();
    let mut batch = Vec::new();
    for n in 0..10 {
        batch.push(log_entry(DEFAULT_VAULT_ID, T0 + n));
        batch.push(log_entry(&payments.id, T0 + n));
    }
    store.insert_logs(&batch).unwrap();
    let all = page(&*store, DEFAULT_VAULT_ID, None, None, 100);
    assert_eq!(all.len(), 10);
    let id = |newest_first: usize| all[newest_first];

    assert_eq!(
        page(&*store, DEFAULT_VAULT_ID, None, None, 3),
        [id(0), id(1), id(2)]
    );
    assert_eq!(
        page(&*store, DEFAULT_VAULT_ID, Some(id(2)), None, 3),
        [id(3), id(4), id(5)]
    );
    assert_eq!(
        page(&*store, DEFAULT_VAULT_ID, Some(id(8)), None, 3),
        [id(9)]
    );
    // Following new entries: the ones right after the cursor, none skipped.
    assert_eq!(
        page(&*store, DEFAULT_VAULT_ID, None, Some(id(6)), 3),
        [id(3), id(4), id(5)]
    );
    assert_eq!(
        page(&*store, DEFAULT_VAULT_ID, None, Some(id(2)), 3),
        [id(0), id(1)]
    );
    assert!(page(&*store, DEFAULT_VAULT_ID, None, Some(id(0)), 3).is_empty());
    assert_eq!(
        page(&*store, DEFAULT_VAULT_ID, Some(id(1)), Some(id(4)), 10),
        [id(2), id(3)]
    );
    assert!(page(&*store, DEFAULT_VAULT_ID, None, None, 0).is_empty());
}

fn pruning_drops_old_entries_then_caps_each_vault(backend: Backend) {
    let store = open_store(backend);
    let payments = store.create_vault("payments", None).unwrap();
    let created = [T0 - 100, T0 - 100, T0, T0, T0, T0];
    let entries: Vec<LogEntry> = created
        .iter()
        .map(|at| log_entry(DEFAULT_VAULT_ID, *at))
        .collect();
    store.insert_logs(&entries).unwrap();
    store
        .insert_logs(&[
            log_entry(&payments.id, T0),
            log_entry(&payments.id, T0),
            log_entry(&payments.id, T0),
        ])
        .unwrap();
    let newest_three = page(&*store, DEFAULT_VAULT_ID, None, None, 3);

    // Two too old, then one over the cap of three in the default vault.
    assert_eq!(store.prune_logs(T0 - 50, 3).unwrap(), 3);
    assert_eq!(
        page(&*store, DEFAULT_VAULT_ID, None, None, 100),
        newest_three
    );
    assert_eq!(page(&*store, &payments.id, None, None, 100).len(), 3);

    assert_eq!(store.prune_logs(T0 - 50, 0).unwrap(), 0, "0: no row cap");
    assert_eq!(store.prune_logs(T0 + 1, 0).unwrap(), 6);
    assert!(page(&*store, &payments.id, None, None, 100).is_empty());
}

fn counts_are_grouped_by_interval_and_status_class(backend: Backend) {
    let store = open_store(backend);
    let payments = store.create_vault("payments", None).unwrap();
    let at = |created_at: UnixTime, status: u16| LogEntry {
        status,
        ..log_entry(DEFAULT_VAULT_ID, created_at)
    };
    store
        .insert_logs(&[
            at(T0 - 1, 200),  // before the first interval
            at(T0, 200),      // interval 0
            at(T0 + 59, 201), // interval 0
            at(T0 + 59, 404), // interval 0
            at(T0 + 60, 503), // interval 1
            at(T0 + 179, 302),
            at(T0 + 180, 200), // after the last interval
            at(T0 + 10, 0),    // no status
            log_entry(&payments.id, T0),
        ])
        .unwrap();
    let buckets = LogBuckets {
        since: T0,
        width: 60,
        count: 3,
    };
    let mut counts: Vec<(u32, u16, u64)> = store
        .log_counts(DEFAULT_VAULT_ID, &buckets)
        .unwrap()
        .into_iter()
        .map(|count| (count.bucket, count.class, count.requests))
        .collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        [(0, 0, 1), (0, 2, 2), (0, 4, 1), (1, 5, 1), (2, 3, 1)]
    );
}

fn pages_can_be_limited_to_a_time_range(backend: Backend) {
    let store = open_store(backend);
    let entries: Vec<LogEntry> = (0..6)
        .map(|n| log_entry(DEFAULT_VAULT_ID, T0 + n * 10))
        .collect();
    store.insert_logs(&entries).unwrap();
    let times = |since, until| -> Vec<UnixTime> {
        let query = LogQuery {
            limit: 100,
            filter: LogFilter {
                since,
                until,
                ..LogFilter::default()
            },
            ..LogQuery::default()
        };
        let found = store.logs(DEFAULT_VAULT_ID, &query).unwrap();
        found.iter().map(|entry| entry.created_at).collect()
    };
    assert_eq!(
        times(Some(T0 + 20), None),
        [T0 + 50, T0 + 40, T0 + 30, T0 + 20]
    );
    assert_eq!(times(None, Some(T0 + 20)), [T0 + 10, T0]);
    assert_eq!(times(Some(T0 + 10), Some(T0 + 30)), [T0 + 20, T0 + 10]);
}

backend_tests!(
    counts_are_grouped_by_interval_and_status_class,
    pages_can_be_limited_to_a_time_range,
    log_entries_get_increasing_ids_and_keep_their_fields,
    the_journal_mark_moves_with_its_rows_and_never_back,
    a_large_batch_is_written_whole_and_in_order,
    the_request_log_pages_newest_first_by_id_cursor,
    pruning_drops_old_entries_then_caps_each_vault,
);
