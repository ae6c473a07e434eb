//! Persistent state behind one [`Store`] trait made of one trait per entity, each in its own
//! file with its record types: vaults and settings (`vaults.rs`), credentials, services,
//! users, agents, vault grants, tokens and sessions, device tokens (the last two stored only
//! as SHA-256), user and agent invites (`invites.rs`), proposals, the request log, and keys
//! (the master key record and the transparent proxy's CA, `keys.rs`). Who acts and with what
//! role (`actors.rs`) is shared by all of them.
//!
//! [`Store`] is synchronous: backends do blocking IO, and callers on async threads go through
//! [`Db::run`], which moves the work to the blocking pool. Rules that must hold under
//! concurrency (the last owner, the last vault admin, one first owner) are enforced inside
//! the backend's transactions, not by callers reading then writing. The embedded backend is
//! SQLite (`sqlite/`); a PostgreSQL backend (`postgres/`) implements the same traits. Each
//! backend's `mod.rs` holds its handle and its transactions, and each entity's trait is
//! implemented in the backend's file of the same name (`sqlite/vaults.rs` implements
//! [`VaultStore`], and so on).
//!
//! Servers that share a database keep their caches coherent through the store: every
//! server's [`Store::watch_changes`] moves its [`Generation`] when a change commits, which
//! PostgreSQL announces from the writing transaction itself. SQLite, whose file one server
//! owns, does not watch (a CLI command writing to the file next to a running server is not
//! seen before the proxy's cache expires, as before).
//!
//! Nothing here ever sees a plaintext credential: values arrive sealed by `vault::crypto`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `as_str`, `FromStr` and `Display` for an enum stored as text.
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "{other:?} is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod actors;
mod agents;
mod contracts;
mod credentials;
mod devices;
mod grants;
mod invites;
mod keys;
pub mod migrate;
pub mod postgres;
mod proposals;
mod request_log;
mod services;
pub mod sqlite;
mod tokens;
mod users;
mod vaults;

#[cfg(test)]
mod tests;

pub use actors::{ActorId, ActorKind, InstanceRole, VaultRole};
pub use agents::{Agent, AgentStatus, AgentStore};
pub use credentials::{CredentialStore, StoredCredential};
pub use devices::{DeviceRecord, DeviceStore};
pub use grants::{Grant, GrantStore};
pub use invites::{AgentInvite, AgentInviteStatus, Invite, InviteStatus, InviteStore};
pub use keys::{KeyProtection, KeyStore, MasterKeyRecord, StoredCa};
pub use proposals::{Proposal, ProposalApplication, ProposalStatus, ProposalStore};
pub use request_log::{
    HostSeen, JournalSeq, LogBuckets, LogCount, LogEntry, LogFilter, LogQuery, RequestLogStore,
};
pub use services::ServiceStore;
pub use tokens::{TokenKind, TokenRecord, TokenStore};
pub use users::{User, UserStore};
pub use vaults::{DEFAULT_VAULT, Vault, VaultStore};

/// Seconds since the Unix epoch, UTC.
pub type UnixTime = i64;

/// The current time as [`UnixTime`].
pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("this would leave the instance without an owner")]
    LastOwner,
    #[error("this would leave the vault without an admin")]
    LastAdmin,
    /// A cap on how many of something may exist (e.g. pending proposals) is reached.
    #[error("too many {0}")]
    TooMany(String),
    #[error("database error: {0}")]
    Database(String),
    /// The database cannot take the operation now: another process holds its write lock
    /// past the busy timeout, or the disk is full. The same call can succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Persistent state: every entity's trait, and what the store as a whole does for servers
/// sharing its database. Every method is one transaction.
///
/// Callers hold an `Arc<dyn Store>` or a `&dyn Store` and call any entity's methods on it; a
/// caller holding a backend itself (`SqliteStore`, `PostgresStore`) imports the entity
/// traits it calls.
pub trait Store:
    VaultStore
    + CredentialStore
    + ServiceStore
    + UserStore
    + AgentStore
    + GrantStore
    + TokenStore
    + DeviceStore
    + InviteStore
    + ProposalStore
    + RequestLogStore
    + KeyStore
    + Send
    + Sync
    + 'static
{
    /// Move `generation` whenever a change committed on the database, by this server or any
    /// other writer, until the returned watcher is dropped. `None` where no other server can write (SQLite).
    fn watch_changes(&self, generation: Generation) -> Result<Option<ChangeWatcher>> {
        let _ = generation;
        Ok(None)
    }
}

/// The store as the async parts of the server use it: cheap to clone, blocking work moved
/// off the async threads.
#[derive(Clone)]
pub struct Db {
    store: Arc<dyn Store>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Db { store }
    }

    /// Run `work` against the store on the blocking pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|error| StoreError::Database(format!("store task failed: {error}")))?
    }

    /// The store, for synchronous callers (the CLI, tests).
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// A counter bumped after every successful write through the management API, and, with
/// PostgreSQL, whenever the database announces a committed change
/// ([`Store::watch_changes`]); readers that cache what they read (the proxy's directory) drop
/// their cache when it moves.
#[derive(Debug, Clone, Default)]
pub struct Generation(Arc<AtomicU64>);

impl Generation {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Keeps a backend following other servers' changes ([`Store::watch_changes`]); the
/// following stops soon after it is dropped.
#[derive(Debug)]
pub struct ChangeWatcher {
    stop: Arc<AtomicBool>,
}

impl ChangeWatcher {
    /// A watcher whose `stop` flag becomes true when it is dropped.
    pub fn new(stop: Arc<AtomicBool>) -> Self {
        ChangeWatcher { stop }
    }
}

impl Drop for ChangeWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Whether the instance has an owner, cached once it has (an instance never loses its last
/// owner). Shared by the management API and the proxy, which both answer 503 before.
#[derive(Debug, Clone, Default)]
pub struct OwnerKnown(Arc<AtomicBool>);

impl OwnerKnown {
    pub async fn check(&self, db: &Db) -> Result<bool> {
        if self.0.load(Ordering::Acquire) {
            return Ok(true);
        }
        let has_owner = db.run(|store| store.has_owner()).await?;
        if has_owner {
            self.0.store(true, Ordering::Release);
        }
        Ok(has_owner)
    }
}
