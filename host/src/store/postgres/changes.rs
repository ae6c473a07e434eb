//! Servers on one database tell each other about changes, so that every replica's caches
//! (the proxy's directory of tokens and services) follow a write made on any of them within
//! about a second: a token revoked, a service removed or a credential rotated on one server
//! stops working on all.
//!
//! The database announces every change a cache may hold, whoever writes it: triggers
//! (`migrations/002_change_counter.sql`) advance the `change_counter` sequence and send
//! `NOTIFY agent_vault_changes` inside the writing transaction, and PostgreSQL delivers the
//! notification when that transaction commits. No committed change goes unannounced, even
//! when its server dies right after the commit. Every server runs a watcher
//! ([`watch`]): a thread with a connection of its own, outside the pool, that `LISTEN`s and
//! moves the local [`Generation`] on every notification. A notification is only delivered to
//! a connection that was listening when it was sent, so the watcher also reads the counter
//! every [`RECHECK`] and moves the generation when it differs from what it last saw: a
//! missed notification, or changes made while its connection was down, cost at most one
//! re-check after it is back. A lost connection is made again at once, then with a back-off
//! up to [`MAX_BACKOFF`]; the outage is logged once, with the database URL redacted. While
//! the watcher cannot hear, it moves the generation every [`RECHECK`] anyway: the caches
//! then last no longer than that, so a revocation is never missed for longer.
//!
//! The counter is a sequence rather than a one-row table: `nextval` never waits for another
//! transaction nor fails one with a serialization conflict. It is not undone by a rollback,
//! and it moves before the commit: a re-check may drop the caches once too early or for a
//! write that failed, which costs a re-read, and the notification at commit drops them again.
//! Request-log writes and token touches announce nothing: they change nothing a cache holds,
//! and the proxy makes them on every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::errors::describe;
use crate::store::{ChangeWatcher, Generation, Result, StoreError};

/// The channel servers notify and listen on.
const CHANNEL: &str = "agent_vault_changes";

/// How often the watcher reads the counter, whatever it heard.
pub const RECHECK: Duration = Duration::from_millis(500);

/// The longest wait between two attempts to make the watcher's connection again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long the watcher waits for a silent database server before it counts its
/// connection as lost.
const SILENCE: Duration = Duration::from_secs(2);

/// The `application_name` of the watcher's connection, so that an operator (and the tests)
/// can tell it from the pool's in `pg_stat_activity`.
pub const WATCHER_APPLICATION_NAME: &str = "agent-vault changes";

/// The count of changes announced so far.
fn read_count(client: &mut Client) -> std::result::Result<i64, postgres::Error> {
    // A sequence that was never advanced reads `last_value` 1 with `is_called` false.
    client
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM change_counter",
            &[],
        )?
        .try_get(0)
}

/// How the watcher makes its connection: the store's settings, TLS or not.
pub(super) enum Connector {
    Plain(postgres::Config),
    Tls(postgres::Config, MakeRustlsConnect),
}

impl Connector {
    /// A connector for the watcher: `config` under the watcher's application name.
    pub(super) fn new(config: &postgres::Config, tls: Option<MakeRustlsConnect>) -> Self {
        let mut config = config.clone();
        config.application_name(WATCHER_APPLICATION_NAME);
        // A network that goes silent must not leave the watcher believing it listens (and
        // the caches trusted) for the minutes TCP takes to give up: its connection is made,
        // and its unanswered re-check fails, within seconds. Unix sockets ignore both.
        if config
            .get_connect_timeout()
            .is_none_or(|timeout| *timeout > SILENCE)
        {
            config.connect_timeout(SILENCE);
        }
        config.tcp_user_timeout(SILENCE);
        match tls {
            Some(tls) => Connector::Tls(config, tls),
            None => Connector::Plain(config),
        }
    }

    fn connect(&self) -> std::result::Result<Client, postgres::Error> {
        match self {
            Connector::Plain(config) => config.connect(NoTls),
            Connector::Tls(config, tls) => config.connect(tls.clone()),
        }
    }
}

/// Start the watcher thread for the database `shown` (its redacted URL); it moves
/// `generation` until the returned watcher is dropped.
pub(super) fn watch(
    connector: Arc<Connector>,
    shown: String,
    generation: Generation,
) -> Result<ChangeWatcher> {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = Watcher {
        connector,
        shown,
        generation,
        stop: stop.clone(),
    };
    std::thread::Builder::new()
        .name("agent-vault changes".into())
        .spawn(move || watcher.run())
        .map_err(|error| {
            StoreError::Database(format!(
                "cannot start following other servers' changes: {error}"
            ))
        })?;
    Ok(ChangeWatcher::new(stop))
}

struct Watcher {
    connector: Arc<Connector>,
    shown: String,
    generation: Generation,
    stop: Arc<AtomicBool>,
}

impl Watcher {
    fn run(self) {
        let mut connection: Option<Client> = None;
        // The counter as last read; `None` until the first read, which moves nothing.
        let mut seen: Option<i64> = None;
        let mut down_since: Option<Instant> = None;
        let mut next_attempt = Instant::now();
        let mut backoff = RECHECK;
        while !self.stop.load(Ordering::Acquire) {
            let Some(client) = connection.as_mut() else {
                // Deaf to other servers: what the caches hold cannot be trusted for longer
                // than a re-check, so they are dropped at that pace until the watcher hears
                // again.
                self.generation.bump();
                if Instant::now() < next_attempt {
                    std::thread::sleep(RECHECK);
                    continue;
                }
                match self.listen() {
                    Ok(client) => {
                        if let Some(since) = down_since.take() {
                            tracing::info!(
                                "listening again for other servers' changes to the database \
                                 {} (after {} s)",
                                self.shown,
                                since.elapsed().as_secs()
                            );
                        }
                        backoff = RECHECK;
                        connection = Some(client);
                    }
                    Err(error) => {
                        self.lost(&mut down_since, &error);
                        next_attempt = Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                continue;
            };
            match self.recheck_and_wait(client, &mut seen) {
                Ok(()) => {}
                Err(error) => {
                    self.lost(&mut down_since, &error);
                    connection = None;
                    // Made again at once: a server that ended this one connection is
                    // likely still up.
                    next_attempt = Instant::now();
                }
            }
        }
    }

    /// A new connection, listening.
    fn listen(&self) -> std::result::Result<Client, postgres::Error> {
        let mut client = self.connector.connect()?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(client)
    }

    /// Read the counter, moving the generation if it differs from `seen`; then wait up to
    /// [`RECHECK`] for notifications, moving it for each.
    fn recheck_and_wait(
        &self,
        client: &mut Client,
        seen: &mut Option<i64>,
    ) -> std::result::Result<(), postgres::Error> {
        let count = read_count(client)?;
        // The first read moves it too: a change committed after this server's caches were
        // filled and before the watcher first listened is neither heard nor counted as new.
        if seen.is_none_or(|seen| seen != count) {
            self.generation.bump();
        }
        *seen = Some(count);
        let until = Instant::now() + RECHECK;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            match client.notifications().timeout_iter(left).next()? {
                Some(_) => self.generation.bump(),
                None => return Ok(()),
            }
        }
    }

    /// Log the first failure of an outage; the following ones are the same news.
    fn lost(&self, down_since: &mut Option<Instant>, error: &postgres::Error) {
        if down_since.is_none() {
            *down_since = Some(Instant::now());
            tracing::warn!(
                "not listening for other servers' changes to the database {}: {}; retrying \
                 (until then this server's proxy re-reads the database every {} ms)",
                self.shown,
                describe(error),
                RECHECK.as_millis()
            );
        }
    }
}
