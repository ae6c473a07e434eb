//! Opening a PostgreSQL database: [`PostgresStore::open`] reads the database URL
//! ([`ConnectionSettings::parse`]), picks the transport (TLS through rustls for network
//! hosts, plain over a Unix socket or with `sslmode=disable`), connects once to bring the
//! schema up to date ([`migrate`]) and then hands connections to a pool.
//!
//! Migrations are the numbered files of `postgres/migrations/`, applied in one transaction
//! under a transaction-level advisory lock and tracked in `schema_migrations`: replicas that
//! start together queue on the lock, and the ones after the first find the work done. A
//! database written by a newer agent-vault is refused, as with SQLite's `user_version`.
//!
//! The URL's password never appears in a message: errors name the database by
//! [`redact_url`].

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls};
use r2d2::{ManageConnection, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PostgresStore;
use super::changes::Connector;
use super::errors::{Failure, into_store_error};
use super::statements::{CachedClient, CachingManager};
use crate::store::{Result, StoreError, now};

/// The schema, in order: version `n` is the `n`-th entry. Never edit a released migration;
/// add the next number.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    ("001_initial", include_str!("migrations/001_initial.sql")),
    (
        "002_change_counter",
        include_str!("migrations/002_change_counter.sql"),
    ),
    (
        "003_request_log_without_foreign_key",
        include_str!("migrations/003_request_log_without_foreign_key.sql"),
    ),
];

/// The advisory lock that migrations hold: a fixed number, "agent-va" in ASCII, that no
/// other application is likely to use in the same database.
const MIGRATION_LOCK: i64 = 0x6167_656e_742d_7661;

/// How many connections one store keeps open at most.
const POOL_SIZE: u32 = 16;

/// How long an operation waits for a free connection, and a connection for the server,
/// unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a statement waits for a lock another session holds (a backup, an administrator's
/// `LOCK TABLE`) before it fails as unavailable, as SQLite's busy timeout does: without it a
/// write would wait for as long as the lock is held, and the request log and the API with it.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// A database URL as this module reads it: what tokio-postgres understands, plus the
/// certificate authority to trust (`sslrootcert`) that it does not.
pub(super) struct ConnectionSettings {
    config: postgres::Config,
    root_cert: Option<PathBuf>,
}

impl ConnectionSettings {
    /// Read `url` (`postgres://user:password@host:port/database?sslmode=...`).
    ///
    /// `sslmode` is `disable`, `prefer` (the default, as with libpq), `require`, `verify-ca` or
    /// `verify-full`; rustls always verifies the server's certificate and name, so the last
    /// three mean the same: verified TLS, against the web PKI roots or the PEM file
    /// `sslrootcert` names. `prefer` falls back to plain only when the server offers no TLS.
    pub(super) fn parse(url: &str) -> Result<ConnectionSettings> {
        let invalid = |reason: &str| {
            StoreError::Database(format!(
                "the database URL {} is not valid: {reason}",
                redact_url(url)
            ))
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            // Not echoed: a key=value connection string may hold its password anywhere.
            return Err(StoreError::Database(
                "the database URL is not valid: it must start with postgres:// or postgresql://"
                    .into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (key, value) {
                ("sslrootcert", path) => {
                    let path = percent_encoding::percent_decode_str(path)
                        .decode_utf8()
                        .map_err(|_| invalid("sslrootcert is not UTF-8"))?;
                    root_cert = Some(PathBuf::from(path.as_ref()));
                }
                ("sslmode", "verify-ca" | "verify-full") => kept.push("sslmode=require"),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = postgres::Config::from_str(&rebuilt)
            .map_err(|error| invalid(&super::errors::describe(&error)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("agent-vault");
        }
        // First, so that a lock_timeout of the URL's own `options` wins.
        let lock_timeout = format!("-c lock_timeout={}", LOCK_TIMEOUT.as_millis());
        let options = match config.get_options() {
            Some(options) => format!("{lock_timeout} {options}"),
            None => lock_timeout,
        };
        config.options(&options);
        Ok(ConnectionSettings { config, root_cert })
    }

    /// Whether connections go over TLS: not over Unix sockets (PostgreSQL offers none
    /// there), nor with `sslmode=disable`.
    fn uses_tls(&self, url: &str) -> Result<bool> {
        let hosts = self.config.get_hosts();
        let sockets = hosts
            .iter()
            .filter(|host| !matches!(host, Host::Tcp(_)))
            .count();
        let refuse = |reason: &str| {
            Err(StoreError::Database(format!(
                "cannot use the database {}: {reason}",
                redact_url(url)
            )))
        };
        if sockets > 0 && sockets < hosts.len() {
            return refuse("name either Unix sockets or network hosts, not both");
        }
        let over_sockets = sockets > 0;
        match self.config.get_ssl_mode() {
            SslMode::Require if over_sockets => {
                refuse("PostgreSQL offers no TLS over a Unix socket; drop sslmode=require")
            }
            SslMode::Disable => Ok(false),
            _ => Ok(!over_sockets),
        }
    }

    /// rustls with the ring provider, trusting the web PKI roots or the `sslrootcert` file.
    fn tls(&self) -> Result<MakeRustlsConnect> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                let unreadable = |reason: String| {
                    StoreError::Database(format!(
                        "cannot read the database's CA certificate {}: {reason}",
                        path.display()
                    ))
                };
                let certificates = CertificateDer::pem_file_iter(path)
                    .map_err(|error| unreadable(error.to_string()))?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|error| unreadable(error.to_string()))?;
                if certificates.is_empty() {
                    return Err(unreadable("it holds no PEM certificate".into()));
                }
                for certificate in certificates {
                    roots
                        .add(certificate)
                        .map_err(|error| unreadable(error.to_string()))?;
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| StoreError::Database(format!("cannot set up TLS: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// `url` with its password, if any, replaced by `***`: the only way a database URL is shown.
/// Anything but a `scheme://` URL is not shown at all.
pub fn redact_url(url: &str) -> String {
    if !url.contains("://") {
        return "(not a URL)".to_owned();
    }
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

/// The connection pool, over TLS or not (the two have different types). `None` only while
/// it is dropped.
pub(super) struct Pool(Option<Pools>);

enum Pools {
    Plain(r2d2::Pool<CachingManager<NoTls>>),
    Tls(r2d2::Pool<CachingManager<MakeRustlsConnect>>),
}

/// A connection borrowed from the [`Pool`]; back in the pool when dropped.
pub(super) enum Connection {
    Plain(PooledConnection<CachingManager<NoTls>>),
    Tls(PooledConnection<CachingManager<MakeRustlsConnect>>),
}

impl Pool {
    pub(super) fn get(&self) -> std::result::Result<Connection, r2d2::Error> {
        Ok(match &self.0 {
            Some(Pools::Plain(pool)) => Connection::Plain(pool.get()?),
            Some(Pools::Tls(pool)) => Connection::Tls(pool.get()?),
            None => unreachable!("the pool is used only before it is dropped"),
        })
    }
}

impl Drop for Pool {
    /// Each idle connection owns the small runtime that drives it, and tokio refuses to drop
    /// a runtime on a thread that runs async tasks: where the store's last handle goes on one
    /// (the server's state, dropped at shutdown), the connections are closed on a thread of
    /// their own.
    fn drop(&mut self) {
        let pools = self.0.take();
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::spawn(move || drop(pools));
        }
    }
}

impl Deref for Connection {
    type Target = CachedClient;

    fn deref(&self) -> &CachedClient {
        match self {
            Connection::Plain(connection) => connection,
            Connection::Tls(connection) => connection,
        }
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut CachedClient {
        match self {
            Connection::Plain(connection) => connection,
            Connection::Tls(connection) => connection,
        }
    }
}

impl PostgresStore {
    /// Connect to the database `url` names and bring its schema up to date. A database
    /// written by a newer agent-vault is refused; a server that cannot be reached is
    /// `Unavailable`.
    pub fn open(url: &str) -> Result<PostgresStore> {
        let settings = ConnectionSettings::parse(url)?;
        let shown = redact_url(url);
        let (pool, watcher) = if settings.uses_tls(url)? {
            let tls = settings.tls()?;
            let manager = CachingManager(PostgresConnectionManager::new(
                settings.config.clone(),
                tls.clone(),
            ));
            migrate_with(&manager, &shown)?;
            (
                Pool(Some(Pools::Tls(build_pool(manager)))),
                Arc::new(Connector::new(&settings.config, Some(tls))),
            )
        } else {
            let manager = CachingManager(PostgresConnectionManager::new(
                settings.config.clone(),
                NoTls,
            ));
            migrate_with(&manager, &shown)?;
            (
                Pool(Some(Pools::Plain(build_pool(manager)))),
                Arc::new(Connector::new(&settings.config, None)),
            )
        };
        Ok(PostgresStore {
            pool,
            watcher,
            shown,
        })
    }
}

fn build_pool<M: ManageConnection>(manager: M) -> r2d2::Pool<M> {
    // Unchecked: the first connection was just made for the migrations; the others open on
    // demand, so a store costs the server one connection until it is busy.
    r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(0))
        .connection_timeout(CONNECT_TIMEOUT)
        .test_on_check_out(false)
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build_unchecked(manager)
}

/// Connect once, outside the pool (whose errors would wait for its whole timeout), and
/// migrate.
fn migrate_with<M>(manager: &M, shown: &str) -> Result<usize>
where
    M: ManageConnection<Connection = CachedClient, Error = postgres::Error>,
{
    let mut client = manager.connect().map_err(|error| {
        into_store_error(
            &format!("connect to the database {shown}"),
            Failure::Sql(error),
        )
    })?;
    migrate(&mut client.client)
}

/// Apply the migrations the database has not seen, all in one transaction under the
/// migration lock; how many.
pub(super) fn migrate(client: &mut Client) -> Result<usize> {
    let known = MIGRATIONS.len() as i64;
    let mut tx = client
        .transaction()
        .map_err(failed("start the migrations"))?;
    // Held until the commit: another process migrating waits here, then reads the version
    // it wrote (each statement of a READ COMMITTED transaction sees what committed before it).
    // It waits as long as that takes, not the lock timeout of ordinary statements.
    tx.batch_execute("SET LOCAL lock_timeout = 0")
        .map_err(failed("start the migrations"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(failed("take the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at BIGINT NOT NULL
         )",
    )
    .map_err(failed("create the migrations table"))?;
    let version: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(failed("read the schema version"))?;
    if version > known {
        return Err(StoreError::Database(format!(
            "the database was written by a newer agent-vault (schema version {version}, \
             this agent-vault knows up to {known}): upgrade agent-vault to open it"
        )));
    }
    let mut applied = 0;
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate() {
        let target = index as i64 + 1;
        if target <= version {
            continue;
        }
        let what = format!("apply migration {name}");
        tx.batch_execute(sql).map_err(failed(&what))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&target, name, &now()],
        )
        .map_err(failed(&what))?;
        applied += 1;
    }
    tx.commit().map_err(failed("commit the migrations"))?;
    Ok(applied)
}

/// The store's error for a failed step of the migrations.
fn failed(what: &str) -> impl Fn(postgres::Error) -> StoreError + '_ {
    move |error| into_store_error(what, Failure::Sql(error))
}
