//! The request log in PostgreSQL: the `request_logs` table and the journal's mark,
//! `request_log_journal`. [`RequestLogStore`] for [`PostgresStore`], at the end of this file, runs
//! the writes ([`insert`], [`prune`]) as log writes, whose commits do not wait for the server's
//! disk.
//!
//! As in SQLite (`sqlite/request_log.rs`): entries of a vault deleted since the request are
//! dropped on insert, and pruning deletes by age and then beyond a cap per vault. A batch goes
//! in as one `COPY`, one round trip however long it is.
//!
//! Ids come from a sequence, and rise in commit order as in SQLite, also with several
//! servers writing: an insert takes [`INSERT_LOCK`] before its ids and holds it until its
//! commit, so a reader following the log with `after` never passes an id that a slower
//! writer has yet to commit. Batches are up to a thousand entries and take about a
//! millisecond, so taking turns costs little.
//!
//! **Vaults deleted meanwhile.** `request_logs.vault_id` has no foreign key (migration 003:
//! checking it for every row was half of the database's work per proxied request). What it
//! guaranteed, that no entry outlives its vault, comes from the table lock instead, taken
//! before anything is read: an insert takes `request_logs` in `ROW EXCLUSIVE` mode and then
//! checks its vaults; a vault's deletion (`vaults.rs`) takes it in `SHARE ROW EXCLUSIVE`
//! mode, which waits for the inserts under way and holds off new ones. So either an insert
//! commits first, and the deletion, whose snapshot is taken after its lock, deletes its rows;
//! or the deletion commits first, and the insert's check no longer finds the vault.

use postgres::Row;
use postgres::types::{ToSql, Type};

use super::Tx;

use super::PostgresStore;
use super::errors::{TxResult, misuse};
use super::{actor_at, actor_columns, column, narrow, query_all, query_opt};
use crate::store::{
    HostSeen, JournalSeq, LogBuckets, LogCount, LogEntry, LogQuery, RequestLogStore, Result,
    UnixTime,
};

/// The transaction-level advisory lock every insert into `request_logs` holds from taking
/// its ids to its commit: "av-log" in ASCII.
pub(super) const INSERT_LOCK: i64 = 0x61_76_2d_6c_6f_67;

const LOG_COLUMNS: &str = "id, vault_id, ingress, method, host, path, matched_service, \
     credential_keys, status, latency_ms, error_code, actor_type, actor_id, created_at";

fn log_row(row: &Row) -> TxResult<LogEntry> {
    let keys: String = column(row, 7)?;
    let credential_keys = serde_json::from_str(&keys).map_err(|error| {
        super::errors::Failure::Data(format!("column 7 holds unreadable key names: {error}"))
    })?;
    Ok(LogEntry {
        id: column(row, 0)?,
        vault_id: column(row, 1)?,
        ingress: column(row, 2)?,
        method: column(row, 3)?,
        host: column(row, 4)?,
        path: column(row, 5)?,
        matched_service: column(row, 6)?,
        credential_keys,
        status: narrow(row, 8)?,
        latency_ms: narrow(row, 9)?,
        error_code: column(row, 10)?,
        actor: actor_at(row, 11, 12)?,
        created_at: column(row, 13)?,
    })
}

/// The columns a batch's `COPY` fills, and their types: all but `id`, which the table
/// numbers.
const COPY_ENTRIES: &str = "COPY request_logs (vault_id, ingress, method, host, path,
     matched_service, credential_keys, status, latency_ms, error_code, actor_type, actor_id,
     created_at) FROM STDIN (FORMAT binary)";
const COPY_TYPES: [Type; 13] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
];

/// An entry's values that are not in it as they are stored.
struct Converted<'a> {
    credential_keys: String,
    status: i64,
    latency_ms: i64,
    actor_type: Option<&'static str>,
    actor_id: Option<&'a str>,
}

impl<'a> Converted<'a> {
    fn of(entry: &'a LogEntry) -> TxResult<Self> {
        let credential_keys = serde_json::to_string(&entry.credential_keys)
            .map_err(|error| misuse(&format!("cannot encode credential key names: {error}")))?;
        let (actor_type, actor_id) = actor_columns(entry.actor.as_ref());
        Ok(Converted {
            credential_keys,
            status: i64::from(entry.status),
            latency_ms: i64::try_from(entry.latency_ms).unwrap_or(i64::MAX),
            actor_type,
            actor_id,
        })
    }
}

/// Insert `entries`; with `through`, the journal's mark moves up to it in the same
/// transaction.
pub(super) fn insert(
    tx: &mut Tx<'_>,
    entries: &[LogEntry],
    through: Option<(&str, JournalSeq)>,
) -> TxResult<()> {
    // The table lock first, before the vaults are read (see "Vaults deleted meanwhile"
    // above), and the ids' turn; one round trip for both.
    tx.batch_execute(&format!(
        "LOCK TABLE request_logs IN ROW EXCLUSIVE MODE;
         SELECT pg_advisory_xact_lock({INSERT_LOCK})"
    ))?;
    // Entries of a vault deleted since the request are dropped, as its older entries were.
    let mut named: Vec<&str> = entries
        .iter()
        .map(|entry| entry.vault_id.as_str())
        .collect();
    named.sort_unstable();
    named.dedup();
    let vaults: Vec<String> = query_all(
        tx,
        "SELECT id FROM vaults WHERE id = ANY($1)",
        &[&named],
        |row| column(row, 0),
    )?;
    let kept = entries
        .iter()
        .filter(|entry| vaults.contains(&entry.vault_id))
        .map(|entry| Ok((entry, Converted::of(entry)?)))
        .collect::<TxResult<Vec<_>>>()?;
    if !kept.is_empty() {
        // COPY rather than INSERT: PostgreSQL writes its rows a page at a time.
        let rows = kept.iter().map(|(entry, converted)| {
            let row: Vec<&(dyn ToSql + Sync)> = vec![
                &entry.vault_id,
                &entry.ingress,
                &entry.method,
                &entry.host,
                &entry.path,
                &entry.matched_service,
                &converted.credential_keys,
                &converted.status,
                &converted.latency_ms,
                &entry.error_code,
                &converted.actor_type,
                &converted.actor_id,
                &entry.created_at,
            ];
            row
        });
        tx.copy_in_binary(COPY_ENTRIES, &COPY_TYPES, rows)?;
    }
    if let Some((journal, through)) = through {
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO request_log_journal (journal, through) VALUES ($1, $2)
             ON CONFLICT (journal) DO UPDATE
             SET through = GREATEST(request_log_journal.through, excluded.through)",
            &[&journal, &through],
        )?;
    }
    Ok(())
}

pub(super) fn journaled_through(tx: &mut Tx<'_>, journal: &str) -> TxResult<JournalSeq> {
    let row = tx.query_opt(
        "SELECT through FROM request_log_journal WHERE journal = $1",
        &[&journal],
    )?;
    let through: i64 = match row {
        Some(row) => column(&row, 0)?,
        None => 0,
    };
    Ok(JournalSeq::try_from(through).unwrap_or(0))
}

pub(super) fn logs(tx: &mut Tx<'_>, vault_id: &str, query: &LogQuery) -> TxResult<Vec<LogEntry>> {
    // With `after`, the page is the `limit` entries right after the cursor (then shown
    // newest first), so that following new entries never skips any; otherwise the
    // newest entries before `before`.
    let order = if query.after.is_some() { "ASC" } else { "DESC" };
    let filter = &query.filter;
    let (status_from, status_to) = filter.status.unzip();
    let mut entries = query_all(
        tx,
        &format!(
            "SELECT {LOG_COLUMNS} FROM request_logs
             WHERE vault_id = $1 AND ($2::BIGINT IS NULL OR id < $2)
               AND ($3::BIGINT IS NULL OR id > $3)
               AND ($5::TEXT IS NULL OR ingress = $5)
               AND ($6::BIGINT IS NULL OR status BETWEEN $6 AND $7::BIGINT)
               AND ($8::TEXT IS NULL OR matched_service = $8)
               AND ($9::BIGINT IS NULL OR created_at >= $9)
               AND ($10::BIGINT IS NULL OR created_at < $10)
             ORDER BY id {order} LIMIT $4"
        ),
        &[
            &vault_id,
            &query.before,
            &query.after,
            &i64::from(query.limit),
            &filter.ingress,
            &status_from.map(i64::from),
            &status_to.map(i64::from),
            &filter.service,
            &filter.since,
            &filter.until,
        ],
        log_row,
    )?;
    if query.after.is_some() {
        entries.reverse();
    }
    Ok(entries)
}

pub(super) fn log_counts(
    tx: &mut Tx<'_>,
    vault_id: &str,
    buckets: &LogBuckets,
) -> TxResult<Vec<LogCount>> {
    // As in SQLite: the vault's entries by `request_logs_by_vault`, read for their time.
    query_all(
        tx,
        "SELECT (created_at - $2) / $3, status / 100, COUNT(*) FROM request_logs
         WHERE vault_id = $1 AND created_at >= $2 AND created_at < $4
         GROUP BY 1, 2",
        &[&vault_id, &buckets.since, &buckets.width, &buckets.until()],
        |row| {
            Ok(LogCount {
                bucket: narrow(row, 0)?,
                class: narrow(row, 1)?,
                requests: narrow(row, 2)?,
            })
        },
    )
}

pub(super) fn unmatched_hosts(tx: &mut Tx<'_>, vault_id: &str) -> TxResult<Vec<HostSeen>> {
    query_all(
        tx,
        "SELECT host, COUNT(*), MAX(created_at) FROM request_logs
         WHERE vault_id = $1 AND matched_service IS NULL
           AND (error_code = 'forbidden' OR status IN (401, 403) OR method = 'CONNECT')
         GROUP BY host ORDER BY host",
        &[&vault_id],
        |row| {
            Ok(HostSeen {
                host: column(row, 0)?,
                requests: narrow(row, 1)?,
                last_seen: column(row, 2)?,
            })
        },
    )
}

/// Delete the entries older than `older_than`, then those beyond `max_rows_per_vault` in
/// each vault (0: no cap); how many.
pub(super) fn prune(
    tx: &mut Tx<'_>,
    older_than: UnixTime,
    max_rows_per_vault: u32,
) -> TxResult<usize> {
    // As in SQLite: times rise with ids, so the old entries are those before the first
    // recent one.
    let mut deleted = tx.execute(
        "DELETE FROM request_logs WHERE id < COALESCE(
             (SELECT id FROM request_logs WHERE created_at >= $1 ORDER BY id LIMIT 1),
             (SELECT MAX(id) + 1 FROM request_logs))",
        &[&older_than],
    )?;
    if max_rows_per_vault > 0 {
        // The vaults table, not the log's distinct vault ids: a scan of the whole log (and
        // of the rows deleted since the last vacuum) every second is what this replaces.
        let vault_ids: Vec<String> =
            query_all(tx, "SELECT id FROM vaults", &[], |row| column(row, 0))?;
        for vault_id in vault_ids {
            // The newest entry beyond the cap: it and everything older goes.
            let first_dropped: Option<i64> = query_opt(
                tx,
                "SELECT id FROM request_logs WHERE vault_id = $1
                 ORDER BY id DESC LIMIT 1 OFFSET $2",
                &[&vault_id, &i64::from(max_rows_per_vault)],
                |row| column(row, 0),
            )?;
            if let Some(id) = first_dropped {
                deleted += tx.execute(
                    "DELETE FROM request_logs WHERE vault_id = $1 AND id <= $2",
                    &[&vault_id, &id],
                )?;
            }
        }
    }
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}

impl RequestLogStore for PostgresStore {
    fn insert_logs(&self, entries: &[LogEntry]) -> Result<()> {
        self.log_write("write the request log", |tx| insert(tx, entries, None))
    }

    fn insert_journaled_logs(
        &self,
        entries: &[LogEntry],
        journal: &str,
        through: JournalSeq,
    ) -> Result<()> {
        self.log_write("write the request log", |tx| {
            insert(tx, entries, Some((journal, through)))
        })
    }

    fn journaled_through(&self, journal: &str) -> Result<JournalSeq> {
        self.read("read the request log's journal mark", |tx| {
            journaled_through(tx, journal)
        })
    }

    fn logs(&self, vault_id: &str, query: &LogQuery) -> Result<Vec<LogEntry>> {
        self.read("read the request log", |tx| logs(tx, vault_id, query))
    }

    fn log_counts(&self, vault_id: &str, buckets: &LogBuckets) -> Result<Vec<LogCount>> {
        self.read("count the request log", |tx| {
            log_counts(tx, vault_id, buckets)
        })
    }

    fn unmatched_hosts(&self, vault_id: &str) -> Result<Vec<HostSeen>> {
        self.read("read the request log", |tx| unmatched_hosts(tx, vault_id))
    }

    fn prune_logs(&self, older_than: UnixTime, max_rows_per_vault: u32) -> Result<usize> {
        self.log_write("prune the request log", |tx| {
            prune(tx, older_than, max_rows_per_vault)
        })
    }
}
