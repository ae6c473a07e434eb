//! The request log's journal: every entry is appended to a file in the data directory before
//! the response it records leaves, so that a server killed before the batch writer
//! (`mod.rs`) reached the database loses no row. The next start replays the journal
//! ([`Journal::recover`]) before it serves anything.
//!
//! The promise is about the process dying (SIGKILL, a crash, the OOM killer), not the
//! machine: an append is one `write` to a file opened with `O_APPEND`, which puts it in the
//! kernel's page cache; there is no `fsync`.
//!
//! The files live in `request-log-journal/` in the data directory (0700), each 0600:
//! `journal-{generation}.jsonl`, a header line, then one JSON line per entry with its
//! sequence number. Numbers are given under the lock that also hands the entry to the
//! writer's queue, so the queue, the file and the numbers share one order, and "every entry
//! up to N is in the database" is a single number, which the store moves in the same
//! transaction as the rows (`request_log_journal.through`). Replay inserts the entries above
//! it, so a row is never written twice, then empties the directory but for `id`: the
//! journal's name, under which PostgreSQL keeps one such number per server sharing it.
//!
//! Bounds: once the active file passes its rotation size (1 MiB), the writer, after a
//! batch, opens a new file and swaps it in under the same lock, so each append goes wholly
//! to one file or the other; the old file is sealed with the last number it holds and
//! deleted after the first batch that takes the database to that number. The request log
//! waits for room in its queue before appending, so the database lacks at most the queue
//! and one batch (16,384 + 1,000 entries). A file is swapped out at most one batch cycle
//! after it passes its size, and a cycle appends at most that many entries, so the journal
//! holds at most the rotation size plus twice that many entries
//! (`the_journal_holds_at_most_a_file_and_what_the_store_lacks` in `tests.rs`).
//!
//! A failed append (a full disk, an I/O error) abandons the file, whose last line may be
//! torn, and marks the journal failing: the proxy refuses new requests, as when the database
//! refuses a batch, until the writer has opened a new file and written its header.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::auth::tokens::random_id;
use crate::store::{ActorId, ActorKind, JournalSeq, LogEntry, Store, StoreError};

/// The journal's directory, inside the data directory.
pub const DIR: &str = "request-log-journal";
/// The file in [`DIR`] that names this journal to the database (see [`Journal::id`]).
const ID_FILE: &str = "id";
/// The first line of every journal file: what it is and the format of its lines.
pub(super) const HEADER: &[u8] = b"{\"agent_vault_request_log_journal\":1}\n";
/// The size past which the active file is replaced by a new one.
pub(super) const ROTATE_AT: u64 = 1024 * 1024;
/// The most entries replay writes in one transaction.
const REPLAY_BATCH: usize = 1000;

/// The journal of a running server; shared by the request path (appends) and the writer
/// (rotation, deletion, reopening after a failure).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// Names this journal's mark in the database ([`Journal::id`]).
    id: String,
    rotate_at: u64,
    active: Mutex<Active>,
    /// Files rotated out, oldest first; only the writer touches these.
    sealed: Mutex<VecDeque<Sealed>>,
    /// An append or a rotation failed; cleared when a new file takes over. Written under the
    /// `active` lock.
    failing: AtomicBool,
    next_generation: AtomicU64,
    /// Files opened since start (the first included).
    opened: AtomicU64,
}

/// The file appends go to, and the numbering.
#[derive(Debug)]
struct Active {
    /// `None` once a write to it failed: it is never written again.
    file: Option<File>,
    path: PathBuf,
    bytes: u64,
    next_seq: JournalSeq,
    /// The encoding buffer, reused for every entry.
    line: Vec<u8>,
}

/// A file no longer appended to, and the last number it may hold.
#[derive(Debug)]
struct Sealed {
    path: PathBuf,
    last: JournalSeq,
}

/// Why the journal cannot be opened or replayed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot write the journal's entries to the database: {0}")]
    Store(#[from] StoreError),
}

/// The entry did not reach the journal (it was still queued for the database).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request log's journal cannot be written")]
pub struct Unjournaled;

/// One entry as a journal line. The fields are borrowed from the entry when appending and
/// owned when replaying.
#[derive(Debug, Serialize, Deserialize)]
struct Line<'a> {
    seq: JournalSeq,
    vault_id: Cow<'a, str>,
    ingress: Cow<'a, str>,
    method: Cow<'a, str>,
    host: Cow<'a, str>,
    path: Cow<'a, str>,
    service: Option<Cow<'a, str>>,
    keys: Cow<'a, [String]>,
    status: u16,
    latency_ms: u64,
    error: Option<Cow<'a, str>>,
    actor: Option<(ActorKind, Cow<'a, str>)>,
    at: i64,
}

impl<'a> Line<'a> {
    fn of(seq: JournalSeq, entry: &'a LogEntry) -> Self {
        Line {
            seq,
            vault_id: Cow::Borrowed(&entry.vault_id),
            ingress: Cow::Borrowed(&entry.ingress),
            method: Cow::Borrowed(&entry.method),
            host: Cow::Borrowed(&entry.host),
            path: Cow::Borrowed(&entry.path),
            service: entry.matched_service.as_deref().map(Cow::Borrowed),
            keys: Cow::Borrowed(&entry.credential_keys),
            status: entry.status,
            latency_ms: entry.latency_ms,
            error: entry.error_code.as_deref().map(Cow::Borrowed),
            actor: entry
                .actor
                .as_ref()
                .map(|actor| (actor.kind, Cow::Borrowed(actor.id.as_str()))),
            at: entry.created_at,
        }
    }

    fn into_entry(self) -> LogEntry {
        LogEntry {
            id: 0,
            vault_id: self.vault_id.into_owned(),
            ingress: self.ingress.into_owned(),
            method: self.method.into_owned(),
            host: self.host.into_owned(),
            path: self.path.into_owned(),
            matched_service: self.service.map(Cow::into_owned),
            credential_keys: self.keys.into_owned(),
            status: self.status,
            latency_ms: self.latency_ms,
            error_code: self.error.map(Cow::into_owned),
            actor: self.actor.map(|(kind, id)| ActorId {
                kind,
                id: id.into_owned(),
            }),
            created_at: self.at,
        }
    }
}

impl Journal {
    /// Open the journal in `data_dir` for a server about to serve: first every entry a
    /// previous run left that the database lacks is written to it (in order, each once),
    /// then the old files are deleted and a new one is opened. Blocking.
    pub fn recover(data_dir: &Path, store: &dyn Store) -> Result<Journal, JournalError> {
        Journal::recover_with(data_dir, store, ROTATE_AT)
    }

    pub(super) fn recover_with(
        data_dir: &Path,
        store: &dyn Store,
        rotate_at: u64,
    ) -> Result<Journal, JournalError> {
        let dir = journal_dir(data_dir)?;
        let id = journal_id(&dir)?;
        let through = store.journaled_through(&id)?;
        let (files, highest_generation) = journal_files(&dir)?;
        let left = read_files(&files, through)?;
        replay(store, &id, left.entries, through)?;
        for file in &files {
            set_aside_or_remove(&file.path, left.unreadable.contains(&file.path))?;
        }
        let generation = highest_generation + 1;
        let (file, path) = create_file(&dir, generation)?;
        Ok(Journal {
            dir,
            id,
            rotate_at,
            active: Mutex::new(Active {
                file: Some(file),
                path,
                bytes: HEADER.len() as u64,
                next_seq: left.highest.max(through) + 1,
                line: Vec::with_capacity(512),
            }),
            sealed: Mutex::new(VecDeque::new()),
            failing: AtomicBool::new(false),
            next_generation: AtomicU64::new(generation + 1),
            opened: AtomicU64::new(1),
        })
    }

    /// The id of the journal in `data_dir` (see [`Journal::id`]), made if it has none yet:
    /// for `migrate-db`, which hands the SQLite database's mark on to it.
    pub fn id_in(data_dir: &Path) -> Result<String, JournalError> {
        journal_id(&journal_dir(data_dir)?)
    }

    /// The name this journal's mark goes by in the database: servers sharing a PostgreSQL
    /// database each have a journal of their own, numbered on its own.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Append `entry` under the next number, then, still under the lock, hand both to
    /// `queue`, so that the queue receives entries in number order. The entry is handed on
    /// even when it cannot be appended (its request was served, and the database can still
    /// record it); the journal is then failing until the writer [`reopen`](Self::reopen)s it.
    pub fn append(
        &self,
        entry: LogEntry,
        queue: impl FnOnce(JournalSeq, LogEntry),
    ) -> Result<(), Unjournaled> {
        let mut active = self.lock_active();
        let seq = active.next_seq;
        active.next_seq += 1;
        let written = active.write(seq, &entry);
        queue(seq, entry);
        match written {
            Ok(()) => Ok(()),
            Err(error) => {
                let newly = !self.failing.swap(true, Ordering::Relaxed);
                let path = active.path.clone();
                drop(active);
                if newly {
                    tracing::error!(
                        file = %path.display(),
                        "cannot write the request log's journal: {error}; proxy requests are \
                         refused until it can be written"
                    );
                }
                Err(Unjournaled)
            }
        }
    }

    /// Whether the journal cannot take appends now (the proxy then refuses requests).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Whether [`committed`](Self::committed) has work to do for `through`: a sealed file to
    /// delete, or an active file to rotate. Cheap; the writer asks after every batch.
    pub fn needs_upkeep(&self, through: JournalSeq) -> bool {
        let deletable = self
            .lock_sealed()
            .front()
            .is_some_and(|sealed| sealed.last <= through);
        deletable || self.lock_active().bytes >= self.rotate_at
    }

    /// The database now has every entry up to `through`: delete the sealed files it covers,
    /// and rotate the active file if it has grown past its size. Blocking.
    pub fn committed(&self, through: JournalSeq) {
        {
            let mut sealed = self.lock_sealed();
            while sealed.front().is_some_and(|file| file.last <= through) {
                let Some(file) = sealed.pop_front() else {
                    break;
                };
                if let Err(error) = fs::remove_file(&file.path) {
                    // Replay would skip its entries, all in the database: nothing is lost.
                    tracing::warn!(
                        file = %file.path.display(),
                        "cannot remove a request log journal file already written: {error}"
                    );
                }
            }
        }
        if self.lock_active().bytes >= self.rotate_at
            && let Err(error) = self.rotate()
        {
            let newly = {
                let _active = self.lock_active();
                !self.failing.swap(true, Ordering::Relaxed)
            };
            if newly {
                tracing::error!(
                    "cannot start a new request log journal file: {error}; proxy requests \
                     are refused until one can be written"
                );
            }
        }
    }

    /// Open a new file for appends after a failure; whether it worked (the journal is then
    /// no longer failing). Blocking.
    pub fn reopen(&self) -> bool {
        match self.rotate() {
            Ok(()) => {
                tracing::info!("the request log's journal is written again");
                true
            }
            Err(error) => {
                tracing::warn!("still cannot write the request log's journal: {error}");
                false
            }
        }
    }

    /// Swap a new file in for the active one, which is sealed with the last number given.
    fn rotate(&self) -> Result<(), JournalError> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (file, path) = create_file(&self.dir, generation)?;
        let (old_file, sealed) = {
            let mut active = self.lock_active();
            let old_file = active.file.replace(file);
            let old_path = std::mem::replace(&mut active.path, path);
            active.bytes = HEADER.len() as u64;
            self.failing.store(false, Ordering::Relaxed);
            let last = active.next_seq - 1;
            (
                old_file,
                Sealed {
                    path: old_path,
                    last,
                },
            )
        };
        drop(old_file);
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.lock_sealed().push_back(sealed);
        Ok(())
    }

    /// How many files were opened since start, the first included.
    pub fn files_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn lock_active(&self) -> MutexGuard<'_, Active> {
        // Nothing under this lock leaves `Active` half-changed if it panics.
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_sealed(&self) -> MutexGuard<'_, VecDeque<Sealed>> {
        self.sealed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Active {
    /// Encode and write one line; a failed or short write abandons the file.
    fn write(&mut self, seq: JournalSeq, entry: &LogEntry) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Err(io::Error::other("an earlier write to this file failed"));
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &Line::of(seq, entry)).map_err(io::Error::other)?;
        self.line.push(b'\n');
        // One `write` for the line: `write_all` only loops after a short write, and a short
        // write to a regular file means it failed (a full disk).
        let mut writer = file;
        match writer.write_all(&self.line) {
            Ok(()) => {
                self.bytes += self.line.len() as u64;
                Ok(())
            }
            Err(error) => {
                self.file = None;
                Err(error)
            }
        }
    }
}

/// What a previous run left in the journal.
#[derive(Debug, Default)]
struct Left {
    /// The entries numbered above what the database has, in number order, each once.
    entries: Vec<(JournalSeq, LogEntry)>,
    /// The highest number in any file.
    highest: JournalSeq,
    /// Files with lines that cannot be read.
    unreadable: Vec<PathBuf>,
}

/// Read `files`, keeping the entries numbered above `through`; what cannot be read is
/// logged (a line cut short by a kill is expected; anything else is damage).
fn read_files(files: &[JournalFile], through: JournalSeq) -> Result<Left, JournalError> {
    let mut left = Left::default();
    for file in files {
        let contents = read_file(&file.path)?;
        if contents.torn_bytes > 0 {
            tracing::warn!(
                file = %file.path.display(),
                bytes = contents.torn_bytes,
                "the request log's journal ends in an entry cut short (the server stopped \
                 while writing it, before it answered); that entry is skipped"
            );
        }
        if let Some((lines, offset)) = contents.unreadable {
            tracing::error!(
                file = %file.path.display(),
                lines,
                offset,
                "the request log's journal holds lines that cannot be read; the others are \
                 replayed, and the file is kept with `.unreadable` added to its name"
            );
            left.unreadable.push(file.path.clone());
        }
        for (seq, entry) in contents.entries {
            left.highest = left.highest.max(seq);
            if seq > through {
                left.entries.push((seq, entry));
            }
        }
    }
    // Files and lines are in number order already; sorting makes replay depend on nothing
    // but the numbers.
    left.entries.sort_by_key(|(seq, _)| *seq);
    left.entries.dedup_by_key(|(seq, _)| *seq);
    Ok(left)
}

/// Write `entries` (numbered above `through`, in order) to the store, in batches, each
/// with the number of its last entry: a replay cut short is resumed, not repeated.
fn replay(
    store: &dyn Store,
    journal: &str,
    entries: Vec<(JournalSeq, LogEntry)>,
    through: JournalSeq,
) -> Result<(), JournalError> {
    let count = entries.len();
    let (seqs, entries): (Vec<JournalSeq>, Vec<LogEntry>) = entries.into_iter().unzip();
    for (seqs, entries) in seqs.chunks(REPLAY_BATCH).zip(entries.chunks(REPLAY_BATCH)) {
        let last = seqs.last().copied().unwrap_or(through);
        store.insert_journaled_logs(entries, journal, last)?;
    }
    if count > 0 {
        tracing::info!(
            entries = count,
            "request log entries the last run had not written were replayed from its journal"
        );
    }
    Ok(())
}

/// Remove a replayed file, or keep one with unreadable lines under another name.
fn set_aside_or_remove(path: &Path, unreadable: bool) -> Result<(), JournalError> {
    let outcome = if unreadable {
        let mut aside = path.to_owned().into_os_string();
        aside.push(".unreadable");
        fs::rename(path, aside)
    } else {
        fs::remove_file(path)
    };
    outcome.map_err(|source| JournalError::Io {
        action: if unreadable {
            "set aside the journal file"
        } else {
            "remove the replayed journal file"
        },
        path: path.to_owned(),
        source,
    })
}

/// A journal file in the directory, by generation.
#[derive(Debug)]
struct JournalFile {
    generation: u64,
    path: PathBuf,
}

/// The journal files in `dir`, oldest first, and the highest generation any name in it
/// carries (files set aside as `.unreadable` included, so that no generation is reused).
/// Other names are left alone.
/// The journal directory in `data_dir`, made (0700) if missing.
fn journal_dir(data_dir: &Path) -> Result<PathBuf, JournalError> {
    let dir = data_dir.join(DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| JournalError::Io {
            action: "create the request log's journal directory",
            path: dir.clone(),
            source,
        })?;
    Ok(dir)
}

/// The journal's id, kept in [`ID_FILE`] in `dir`: made (32 random hex digits) the first
/// time, then read. Not secret: it only tells two servers' journal marks apart.
fn journal_id(dir: &Path) -> Result<String, JournalError> {
    let path = dir.join(ID_FILE);
    let io = |action| {
        move |source| JournalError::Io {
            action,
            path: dir.join(ID_FILE),
            source,
        }
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                Ok(id.to_owned())
            } else {
                Err(io("read the journal's id from")(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not 32 hex digits; remove the file only if the journal directory holds \
                     no other file",
                )))
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let id = random_id().map_err(|error| {
                io("make the journal's id for")(io::Error::other(error.to_string()))
            })?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io("create"))?;
            file.write_all(format!("{id}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io("write"))?;
            Ok(id)
        }
        Err(error) => Err(io("read the journal's id from")(error)),
    }
}

fn journal_files(dir: &Path) -> Result<(Vec<JournalFile>, u64), JournalError> {
    let cannot_list = |source| JournalError::Io {
        action: "list the request log's journal directory",
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    let mut highest = 0;
    for item in fs::read_dir(dir).map_err(cannot_list)? {
        let item = item.map_err(cannot_list)?;
        let name = item.file_name();
        let Some((generation, rest)) = name
            .to_str()
            .and_then(|name| name.strip_prefix("journal-"))
            .and_then(|name| name.split_once('.'))
        else {
            continue;
        };
        let Ok(generation) = generation.parse::<u64>() else {
            continue;
        };
        highest = highest.max(generation);
        if rest == "jsonl" {
            files.push(JournalFile {
                generation,
                path: item.path(),
            });
        }
    }
    files.sort_by_key(|file| file.generation);
    Ok((files, highest))
}

/// What a journal file holds.
#[derive(Debug, Default)]
struct Contents {
    entries: Vec<(JournalSeq, LogEntry)>,
    /// Bytes of a last line without its newline: an append cut short by the process dying.
    torn_bytes: usize,
    /// Lines that cannot be read (the file was damaged, or is not a journal): how many, and
    /// where the first starts.
    unreadable: Option<(usize, usize)>,
}

fn read_file(path: &Path) -> Result<Contents, JournalError> {
    let bytes = fs::read(path).map_err(|source| JournalError::Io {
        action: "read the request log's journal file",
        path: path.to_owned(),
        source,
    })?;
    let mut contents = Contents::default();
    let Some(mut rest) = bytes.strip_prefix(HEADER) else {
        if !HEADER.starts_with(&bytes) {
            contents.unreadable = Some((1, 0));
        }
        // Otherwise the process died before the header was whole: the file holds nothing.
        return Ok(contents);
    };
    let mut offset = HEADER.len();
    while !rest.is_empty() {
        let Some(end) = memchr::memchr(b'\n', rest) else {
            contents.torn_bytes = rest.len();
            break;
        };
        match serde_json::from_slice::<Line<'_>>(&rest[..end]) {
            Ok(line) => contents.entries.push((line.seq, line.into_entry())),
            Err(_) => {
                let (count, _) = contents.unreadable.get_or_insert((0, offset));
                *count += 1;
            }
        }
        rest = &rest[end + 1..];
        offset += end + 1;
    }
    Ok(contents)
}

/// Create journal file `generation` in `dir` (0600, appends only) and write its header.
fn create_file(dir: &Path, generation: u64) -> Result<(File, PathBuf), JournalError> {
    let path = dir.join(format!("journal-{generation}.jsonl"));
    let failed = |action, source| JournalError::Io {
        action,
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| failed("create the request log's journal file", source))?;
    if let Err(source) = (&file).write_all(HEADER) {
        let _ = fs::remove_file(&path);
        return Err(failed("write the request log's journal file", source));
    }
    Ok((file, path))
}

#[cfg(test)]
impl Journal {
    /// Make `file` the one appends go to (a test's `/dev/full`).
    pub(super) fn append_to(&self, file: File) {
        self.lock_active().file = Some(file);
    }

    /// The active file's path.
    pub(super) fn active_path(&self) -> PathBuf {
        self.lock_active().path.clone()
    }
}
