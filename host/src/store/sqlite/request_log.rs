//! The request log in SQLite: the `request_logs` table and the journal's mark,
//! `request_log_journal`. [`RequestLogStore`] for [`SqliteStore`], at the end of this file, runs
//! the writes ([`insert`], [`prune`]) on its second connection, the log's own, and the reads on the
//! main one.
//!
//! Entries of a vault deleted since the request are dropped on insert. Pruning deletes by
//! age and then beyond a cap per vault.

use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::errors::{TxResult, misuse};
use super::{actor_at, actor_columns, query_all};
use crate::store::{
    HostSeen, JournalSeq, LogBuckets, LogCount, LogEntry, LogQuery, RequestLogStore, Result,
    UnixTime,
};

const LOG_COLUMNS: &str = "id, vault_id, ingress, method, host, path, matched_service, \
     credential_keys, status, latency_ms, error_code, actor_type, actor_id, created_at";

/// How many request-log rows one `INSERT` statement writes.
pub(super) const LOG_INSERT_ROWS: usize = 32;

/// `INSERT INTO request_logs … VALUES (…), (…), …` for `rows` rows, without their ids.
fn log_insert_sql(rows: usize) -> String {
    let columns = LOG_COLUMNS.trim_start_matches("id, ");
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    format!(
        "INSERT INTO request_logs ({columns}) VALUES {}",
        vec![row; rows].join(", ")
    )
}

/// Bind `entries` to a statement from [`log_insert_sql`] of as many rows.
fn bind_log_rows(
    statement: &mut rusqlite::CachedStatement<'_>,
    entries: &[&LogEntry],
) -> TxResult<()> {
    let mut index = 1;
    for entry in entries {
        let keys = serde_json::to_string(&entry.credential_keys)
            .map_err(|error| misuse(&format!("cannot encode credential key names: {error}")))?;
        let (actor_type, actor_id) = actor_columns(entry.actor.as_ref());
        let latency_ms = i64::try_from(entry.latency_ms).unwrap_or(i64::MAX);
        let values: [&dyn rusqlite::ToSql; 13] = [
            &entry.vault_id,
            &entry.ingress,
            &entry.method,
            &entry.host,
            &entry.path,
            &entry.matched_service,
            &keys,
            &entry.status,
            &latency_ms,
            &entry.error_code,
            &actor_type,
            &actor_id,
            &entry.created_at,
        ];
        for value in values {
            statement.raw_bind_parameter(index, value)?;
            index += 1;
        }
    }
    Ok(())
}

fn log_row(row: &Row<'_>) -> rusqlite::Result<LogEntry> {
    let keys: String = row.get(7)?;
    let credential_keys = serde_json::from_str(&keys)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, error.into()))?;
    Ok(LogEntry {
        id: row.get(0)?,
        vault_id: row.get(1)?,
        ingress: row.get(2)?,
        method: row.get(3)?,
        host: row.get(4)?,
        path: row.get(5)?,
        matched_service: row.get(6)?,
        credential_keys,
        status: row.get(8)?,
        latency_ms: row.get(9)?,
        error_code: row.get(10)?,
        actor: actor_at(row, 11, 12)?,
        created_at: row.get(13)?,
    })
}

/// Insert `entries`; with `through`, the journal's mark moves up to it in the same
/// transaction.
pub(super) fn insert(
    tx: &Transaction<'_>,
    entries: &[LogEntry],
    through: Option<JournalSeq>,
) -> TxResult<()> {
    // Entries of a vault deleted since the request are dropped, as its older entries
    // were. Checked once per vault in the batch (usually one), inside this
    // transaction, so no vault can go between the check and the insert; that is
    // why the log connection needs no foreign-key check per row.
    let mut vaults: Vec<(&str, bool)> = Vec::new();
    let mut exists = tx.prepare_cached("SELECT 1 FROM vaults WHERE id = ?1")?;
    let mut kept = Vec::with_capacity(entries.len());
    for entry in entries {
        let known = match vaults.iter().find(|(id, _)| *id == entry.vault_id) {
            Some((_, known)) => *known,
            None => {
                let known = exists.exists([&entry.vault_id])?;
                vaults.push((&entry.vault_id, known));
                known
            }
        };
        if known {
            kept.push(entry);
        }
    }
    // Rows go in LOG_INSERT_ROWS at a time: with one statement per row, and the
    // foreign-key lookup, inserting cost 20-30% more per row (bench/README.md).
    let mut chunks = kept.chunks_exact(LOG_INSERT_ROWS);
    if chunks.len() > 0 {
        let mut insert = tx.prepare_cached(&log_insert_sql(LOG_INSERT_ROWS))?;
        for chunk in chunks.by_ref() {
            bind_log_rows(&mut insert, chunk)?;
            insert.raw_execute()?;
        }
    }
    if !chunks.remainder().is_empty() {
        let mut insert = tx.prepare_cached(&log_insert_sql(1))?;
        for entry in chunks.remainder() {
            bind_log_rows(&mut insert, std::slice::from_ref(entry))?;
            insert.raw_execute()?;
        }
    }
    if let Some(through) = through {
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        tx.prepare_cached(
            "UPDATE request_log_journal SET through = MAX(through, ?1) WHERE id = 1",
        )?
        .execute([through])?;
    }
    Ok(())
}

pub(super) fn journaled_through(tx: &Transaction<'_>) -> TxResult<JournalSeq> {
    let through: i64 = tx.query_row(
        "SELECT through FROM request_log_journal WHERE id = 1",
        [],
        |row| row.get(0),
    )?;
    Ok(JournalSeq::try_from(through).unwrap_or(0))
}

pub(super) fn logs(
    tx: &Transaction<'_>,
    vault_id: &str,
    query: &LogQuery,
) -> TxResult<Vec<LogEntry>> {
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
             WHERE vault_id = ?1 AND (?2 IS NULL OR id < ?2) AND (?3 IS NULL OR id > ?3)
               AND (?5 IS NULL OR ingress = ?5)
               AND (?6 IS NULL OR status BETWEEN ?6 AND ?7)
               AND (?8 IS NULL OR matched_service = ?8)
               AND (?9 IS NULL OR created_at >= ?9) AND (?10 IS NULL OR created_at < ?10)
             ORDER BY id {order} LIMIT ?4"
        ),
        params![
            vault_id,
            query.before,
            query.after,
            query.limit,
            filter.ingress,
            status_from,
            status_to,
            filter.service,
            filter.since,
            filter.until
        ],
        log_row,
    )?;
    if query.after.is_some() {
        entries.reverse();
    }
    Ok(entries)
}

pub(super) fn log_counts(
    tx: &Transaction<'_>,
    vault_id: &str,
    buckets: &LogBuckets,
) -> TxResult<Vec<LogCount>> {
    // The vault's entries are found by `request_logs_by_vault` and read for their time;
    // there is no index on time (migration 005), and the log keeps 10,000 entries per vault
    // by default, which this reads in a few milliseconds (bench/README.md, "The console").
    query_all(
        tx,
        "SELECT (created_at - ?2) / ?3, status / 100, COUNT(*) FROM request_logs
         WHERE vault_id = ?1 AND created_at >= ?2 AND created_at < ?4
         GROUP BY 1, 2",
        params![vault_id, buckets.since, buckets.width, buckets.until()],
        |row| {
            Ok(LogCount {
                bucket: row.get(0)?,
                class: row.get(1)?,
                requests: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
            })
        },
    )
}

pub(super) fn unmatched_hosts(tx: &Transaction<'_>, vault_id: &str) -> TxResult<Vec<HostSeen>> {
    query_all(
        tx,
        "SELECT host, COUNT(*), MAX(created_at) FROM request_logs
         WHERE vault_id = ?1 AND matched_service IS NULL
           AND (error_code = 'forbidden' OR status IN (401, 403) OR method = 'CONNECT')
         GROUP BY host",
        [vault_id],
        |row| {
            Ok(HostSeen {
                host: row.get(0)?,
                requests: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                last_seen: row.get(2)?,
            })
        },
    )
}

/// Delete the entries older than `older_than`, then those beyond `max_rows_per_vault` in
/// each vault (0: no cap); how many.
pub(super) fn prune(
    tx: &Transaction<'_>,
    older_than: UnixTime,
    max_rows_per_vault: u32,
) -> TxResult<usize> {
    // Entries are written in the order requests finish, so their times rise
    // with their ids: the old ones are those before the first recent one, found
    // by walking ids up from the oldest, which visits no more rows than it deletes.
    let mut deleted = tx.execute(
        "DELETE FROM request_logs WHERE id < COALESCE(
             (SELECT id FROM request_logs WHERE created_at >= ?1 ORDER BY id LIMIT 1),
             (SELECT MAX(id) + 1 FROM request_logs))",
        [older_than],
    )?;
    if max_rows_per_vault == 0 {
        return Ok(deleted);
    }
    let vault_ids: Vec<String> = query_all(
        tx,
        "SELECT DISTINCT vault_id FROM request_logs",
        [],
        |row| row.get(0),
    )?;
    for vault_id in vault_ids {
        // The newest entry beyond the cap: it and everything older goes.
        let first_dropped: Option<i64> = tx
            .query_row(
                "SELECT id FROM request_logs WHERE vault_id = ?1
                 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                params![vault_id, max_rows_per_vault],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = first_dropped {
            deleted += tx.execute(
                "DELETE FROM request_logs WHERE vault_id = ?1 AND id <= ?2",
                params![vault_id, id],
            )?;
        }
    }
    Ok(deleted)
}

impl RequestLogStore for SqliteStore {
    fn insert_logs(&self, entries: &[LogEntry]) -> Result<()> {
        self.log_write("write the request log", |tx| insert(tx, entries, None))
    }

    fn insert_journaled_logs(
        &self,
        entries: &[LogEntry],
        journal: &str,
        through: JournalSeq,
    ) -> Result<()> {
        // One mark: the journal is the one of the data directory that holds the file.
        let _ = journal;
        self.log_write("write the request log", |tx| {
            insert(tx, entries, Some(through))
        })
    }

    fn journaled_through(&self, journal: &str) -> Result<JournalSeq> {
        let _ = journal;
        self.read("read the request log's journal mark", journaled_through)
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
        // On the log's own connection: a commit on the main one would make the log
        // connection drop its page cache and read the log's pages again.
        self.log_write("prune the request log", |tx| {
            prune(tx, older_than, max_rows_per_vault)
        })
    }
}
