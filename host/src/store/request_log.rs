//! The request log: one entry per proxied request, metadata only, and the mark of how far
//! the request log's journal (`request_log/journal.rs`) has reached the store.

use super::{ActorId, Result, UnixTime};

/// One proxied request, as the request log keeps it: metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Assigned by the store; increasing.
    pub id: i64,
    pub vault_id: String,
    /// `explicit` (`/proxy/...`) or `transparent` (the forward proxy).
    pub ingress: String,
    pub method: String,
    pub host: String,
    /// Without the query string.
    pub path: String,
    pub matched_service: Option<String>,
    /// Names of the credentials the request used, never their values.
    pub credential_keys: Vec<String>,
    pub status: u16,
    pub latency_ms: u64,
    pub error_code: Option<String>,
    pub actor: Option<ActorId>,
    pub created_at: UnixTime,
}

/// The number the request log's journal gives each entry it appends, increasing
/// (`request_log/journal.rs`).
pub type JournalSeq = u64;

/// A page of the request log: newest first, before or after an id, of the entries that
/// pass `filter`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: u32,
    pub filter: LogFilter,
}

/// A host in the request log, as [`RequestLogStore::unmatched_hosts`] counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSeen {
    /// `host:port`, as logged.
    pub host: String,
    pub requests: u64,
    pub last_seen: UnixTime,
}

/// Which entries a page holds; every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// `explicit` or `transparent`.
    pub ingress: Option<String>,
    /// Statuses from the first to the second, both included.
    pub status: Option<(u16, u16)>,
    /// The matched service's name.
    pub service: Option<String>,
    /// Entries made at or after this time.
    pub since: Option<UnixTime>,
    /// Entries made before this time.
    pub until: Option<UnixTime>,
}

/// The intervals [`RequestLogStore::log_counts`] counts in: `count` of `width` seconds each,
/// the first starting at `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBuckets {
    pub since: UnixTime,
    pub width: i64,
    pub count: u32,
}

impl LogBuckets {
    /// The end of the last interval (excluded).
    pub fn until(&self) -> UnixTime {
        self.since + self.width * i64::from(self.count)
    }
}

/// How many of a vault's entries in one interval have statuses of one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCount {
    /// The interval, from 0 (the one starting at [`LogBuckets::since`]).
    pub bucket: u32,
    /// The status divided by 100: 2 for 2xx, and so on (0 for an entry without a status).
    pub class: u16,
    pub requests: u64,
}

/// The request log. Every method is one transaction.
pub trait RequestLogStore {
    fn insert_logs(&self, entries: &[LogEntry]) -> Result<()>;
    /// Insert `entries`, the entries of the request log journal `journal` numbered up to
    /// `through`, and record `through` as its mark in the same transaction (a mark never
    /// goes down). Each server has its own journal (`request_log/journal.rs`); SQLite, whose
    /// file one server's data directory holds, keeps one mark.
    fn insert_journaled_logs(
        &self,
        entries: &[LogEntry],
        journal: &str,
        through: JournalSeq,
    ) -> Result<()>;
    /// The highest number of `journal` whose entry is in the log (0 before the first).
    fn journaled_through(&self, journal: &str) -> Result<JournalSeq>;
    fn logs(&self, vault_id: &str, query: &LogQuery) -> Result<Vec<LogEntry>>;
    /// How many of the vault's entries made in each of `buckets`' intervals have statuses
    /// of each class: one row per interval and class that has any, in no set order. One
    /// grouped query over the vault's entries of that time.
    fn log_counts(&self, vault_id: &str, buckets: &LogBuckets) -> Result<Vec<LogCount>>;
    /// The `host:port`s of the vault's logged requests that no service matched and that were
    /// refused for it (`forbidden`), answered 401 or 403, or tunnelled blind: how many, and
    /// when the last was.
    fn unmatched_hosts(&self, vault_id: &str) -> Result<Vec<HostSeen>>;
    /// Delete entries older than `older_than` and all but the newest `max_rows_per_vault` of
    /// each vault (0: no row cap); how many.
    fn prune_logs(&self, older_than: UnixTime, max_rows_per_vault: u32) -> Result<usize>;
}
