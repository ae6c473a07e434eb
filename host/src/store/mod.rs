//! Persistent state behind one small trait: vaults, sealed credentials, services, users,
//! agents, vault grants, tokens and device tokens (stored only as SHA-256), user and agent
//! invites, proposals, instance settings, the master key record and the request log.
//!
//! [`Store`] is synchronous: backends do blocking IO, and callers on async threads go through
//! [`Db::run`], which moves the work to the blocking pool. Rules that must hold under
//! concurrency (the last owner, the last vault admin, one first owner) are enforced inside
//! the backend's transactions, not by callers reading then writing. The embedded backend is
//! SQLite (`sqlite.rs`); a PostgreSQL backend implements the same trait.
//!
//! Servers that share a database keep their caches coherent through the store: after a
//! management write, the server that made it calls [`Store::announce_change`], and every
//! server's [`Store::watch_changes`] moves its [`Generation`] when another announces one.
//! SQLite, whose file one server owns, does neither (a CLI command writing to the file next
//! to a running server announces nothing, as before).
//!
//! Nothing here ever sees a plaintext credential: values arrive sealed by `vault::crypto`.

mod contracts;
pub mod migrate;
pub mod postgres;
pub mod sqlite;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::vault::crypto::{KdfParams, Sealed};

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

/// A role on the instance: `owner` > `member` > `no-access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceRole {
    NoAccess,
    Member,
    Owner,
}

/// A role in one vault: `admin` > `member` > `proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultRole {
    Proxy,
    Member,
    Admin,
}

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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(InstanceRole { Owner => "owner", Member => "member", NoAccess => "no-access" });
text_enum!(VaultRole { Admin => "admin", Member => "member", Proxy => "proxy" });
text_enum!(ActorKind { User => "user", Agent => "agent" });
text_enum!(AgentStatus { Active => "active", Revoked => "revoked" });
text_enum!(InviteStatus { Pending => "pending", Accepted => "accepted", Revoked => "revoked" });
text_enum!(AgentInviteStatus { Pending => "pending", Redeemed => "redeemed", Revoked => "revoked" });
text_enum!(ProposalStatus { Pending => "pending", Applied => "applied", Rejected => "rejected" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActorKind {
    User,
    Agent,
}

/// A user or an agent: who holds a grant, minted a token, or made a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActorId {
    pub kind: ActorKind,
    pub id: String,
}

impl ActorId {
    pub fn user(id: impl Into<String>) -> Self {
        ActorId {
            kind: ActorKind::User,
            id: id.into(),
        }
    }

    pub fn agent(id: impl Into<String>) -> Self {
        ActorId {
            kind: ActorKind::Agent,
            id: id.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    pub id: String,
    pub name: String,
    pub created_at: UnixTime,
}

impl Vault {
    /// A new vault named `name`, with a fresh id, created now; not stored yet.
    pub(crate) fn new(name: &str) -> Result<Vault> {
        let mut bytes = [0u8; 16];
        crate::vault::crypto::random(&mut bytes)
            .map_err(|error| StoreError::Database(format!("cannot create a vault id: {error}")))?;
        Ok(Vault {
            id: hex::encode(bytes),
            name: name.to_owned(),
            created_at: now(),
        })
    }
}

/// The name of the vault every instance starts with; it cannot be deleted.
pub const DEFAULT_VAULT: &str = "default";

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// Lower case.
    pub email: String,
    pub role: InstanceRole,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub created_at: UnixTime,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentStatus {
    Active,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub role: InstanceRole,
    pub status: AgentStatus,
    pub created_by: Option<ActorId>,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// An actor's role in a vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub actor: ActorId,
    pub vault_id: String,
    pub role: VaultRole,
}

/// What a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A user's login session, which expires after `idle_seconds` without use.
    Login { user_id: String, idle_seconds: i64 },
    /// An agent's long-lived token.
    Agent { agent_id: String },
    /// A vault-scoped session for one vault and role, with no actor of its own.
    Scoped {
        vault_id: String,
        role: VaultRole,
        label: String,
    },
}

/// A token as stored: only its SHA-256 (`hash`), never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Lower-case hex SHA-256 of the token.
    pub hash: String,
    /// A non-secret id for listing and revoking.
    pub public_id: String,
    pub kind: TokenKind,
    pub created_by: Option<ActorId>,
    pub created_at: UnixTime,
    pub last_used_at: UnixTime,
    /// Absolute expiry, if any.
    pub expires_at: Option<UnixTime>,
}

/// A device token as stored: only its SHA-256 (`hash`). A client that signed in to `user_id`'s
/// account holds the token and shows it at its next sign-ins, which then count apart from
/// other clients' failures (`ratelimit/sign_in.rs`). It authenticates nothing by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Lower-case hex SHA-256 of the token.
    pub hash: String,
    /// A non-secret id for listing and revoking.
    pub public_id: String,
    pub user_id: String,
    /// The token ends after this long without a sign-in.
    pub idle_seconds: i64,
    pub created_at: UnixTime,
    /// The last sign-in with it.
    pub last_used_at: UnixTime,
}

impl DeviceRecord {
    /// Whether the token still counts at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        now < self.last_used_at.saturating_add(self.idle_seconds)
    }
}

/// A credential as stored: its key name and its sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub key: String,
    pub sealed: Sealed,
}

/// How the data key is kept.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyProtection {
    /// Wrapped under Argon2id(master password, salt).
    Password {
        salt: Vec<u8>,
        kdf: KdfParams,
        wrapped: Sealed,
    },
    /// In the clear: whoever reads the database file can decrypt every credential.
    Passwordless { plain: Vec<u8> },
}

impl fmt::Debug for KeyProtection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProtection::Password { kdf, .. } => f
                .debug_struct("Password")
                .field("kdf", kdf)
                .finish_non_exhaustive(),
            KeyProtection::Passwordless { .. } => f.write_str("Passwordless"),
        }
    }
}

/// The one master key record of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRecord {
    pub key_version: u32,
    pub protection: KeyProtection,
}

/// An invitation for a person to become a user, with the vaults they will join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// SHA-256 of the invite token.
    pub hash: String,
    pub email: String,
    pub role: InstanceRole,
    pub vaults: Vec<(String, VaultRole)>,
    pub created_by: Option<ActorId>,
    pub status: InviteStatus,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InviteStatus {
    Pending,
    Accepted,
    Revoked,
}

/// An invitation for an agent to connect itself: redeeming it once creates the agent it
/// names, with its role and vault grants, and hands the agent its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInvite {
    /// SHA-256 of the invite token.
    pub hash: String,
    /// The name the agent will have.
    pub agent_name: String,
    pub role: InstanceRole,
    pub vaults: Vec<(String, VaultRole)>,
    pub created_by: Option<ActorId>,
    pub status: AgentInviteStatus,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// The agent the invite created, while that agent exists.
    pub agent_id: Option<String>,
    pub redeemed_at: Option<UnixTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentInviteStatus {
    Pending,
    Redeemed,
    Revoked,
}

/// An agent's request for services and credential slots, for a human to approve or reject.
/// The proposed services and slots are JSON documents the API validated; they never hold a
/// credential value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub vault_id: String,
    /// Counts up from 1 in each vault.
    pub id: i64,
    pub status: ProposalStatus,
    pub services_json: String,
    pub credentials_json: String,
    pub message: String,
    pub user_message: String,
    /// Who is answerable for the proposal: the user or agent whose token made it, or whoever
    /// minted the vault session it came through. `None` only for proposals stored before
    /// creators were recorded whose session was gone by then; those are never approved.
    pub created_by: Option<ActorId>,
    /// The public id of the vault session it came through, if it did.
    pub created_by_session: Option<String>,
    /// SHA-256 of the approval link's token.
    pub approval_hash: String,
    pub approval_expires_at: UnixTime,
    pub created_at: UnixTime,
    /// A proposal still pending at this time has expired.
    pub expires_at: UnixTime,
    pub reviewed_by: Option<ActorId>,
    pub reviewed_at: Option<UnixTime>,
    pub review_note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProposalStatus {
    Pending,
    Applied,
    Rejected,
}

/// What approving a proposal writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalApplication {
    /// The vault's services document after the merge, and the one the merge started from
    /// (`None`: the vault had none); the write fails if the stored one is no longer that.
    pub services: Option<(String, Option<String>)>,
    /// Credentials to set, sealed.
    pub put: Vec<StoredCredential>,
    /// Credential keys to delete.
    pub delete: Vec<String>,
}

/// The transparent proxy's certificate authority as stored: its certificate and its sealed
/// private key (PKCS#8 DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCa {
    pub common_name: String,
    pub cert_pem: String,
    pub sealed_key: Sealed,
    pub created_at: UnixTime,
}

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

/// A host in the request log, as [`Store::unmatched_hosts`] counts it.
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
}

/// Persistent state. Every method is one transaction.
pub trait Store: Send + Sync + 'static {
    // Other servers on the same database.
    /// Tell every other server on this database that the state their caches hold changed
    /// (called after a management write has committed, where the local [`Generation`]
    /// moves). PostgreSQL counts the change and notifies the listeners; SQLite, whose
    /// database one server owns, does nothing.
    fn announce_change(&self) -> Result<()> {
        Ok(())
    }
    /// Move `generation` whenever another server announces a change, until the returned
    /// watcher is dropped. `None` where no other server can write (SQLite).
    fn watch_changes(&self, generation: Generation) -> Result<Option<ChangeWatcher>> {
        let _ = generation;
        Ok(None)
    }

    // The master key.
    fn master_key(&self) -> Result<Option<MasterKeyRecord>>;
    /// Store the first master key record; `Conflict` if one exists.
    fn init_master_key(&self, record: &MasterKeyRecord) -> Result<()>;
    /// Replace the master key record (a re-wrap); `NotFound` if there is none.
    fn replace_master_key(&self, record: &MasterKeyRecord) -> Result<()>;

    // Vaults.
    /// Create a vault; `admin`, if given, becomes its admin in the same transaction.
    fn create_vault(&self, name: &str, admin: Option<&ActorId>) -> Result<Vault>;
    fn vault(&self, name: &str) -> Result<Option<Vault>>;
    fn vault_by_id(&self, id: &str) -> Result<Option<Vault>>;
    fn vaults(&self) -> Result<Vec<Vault>>;
    /// Delete a vault and everything in it (credentials, services, grants, scoped tokens,
    /// logs, settings).
    fn delete_vault(&self, id: &str) -> Result<()>;
    /// `Conflict` if another vault has the name; `NotFound` if there is no vault `id`.
    fn rename_vault(&self, id: &str, name: &str) -> Result<()>;
    fn vault_setting(&self, vault_id: &str, key: &str) -> Result<Option<String>>;
    /// Set a setting, or remove it with `None`.
    fn set_vault_setting(&self, vault_id: &str, key: &str, value: Option<&str>) -> Result<()>;

    // Instance settings.
    fn instance_setting(&self, key: &str) -> Result<Option<String>>;
    /// Set an instance setting, or remove it (back to its default) with `None`.
    fn set_instance_setting(&self, key: &str, value: Option<&str>) -> Result<()>;

    // Credentials.
    /// Insert or replace credentials, all or none.
    fn put_credentials(&self, vault_id: &str, credentials: &[StoredCredential]) -> Result<()>;
    fn credential(&self, vault_id: &str, key: &str) -> Result<Option<StoredCredential>>;
    /// Key names, sorted.
    fn credential_keys(&self, vault_id: &str) -> Result<Vec<String>>;
    /// Delete the given keys; returns those that existed.
    fn delete_credentials(&self, vault_id: &str, keys: &[String]) -> Result<Vec<String>>;

    // Services: one JSON document per vault.
    fn services(&self, vault_id: &str) -> Result<Option<String>>;
    fn set_services(&self, vault_id: &str, json: &str) -> Result<()>;

    // Users.
    /// Whether any user or active agent has the owner role.
    fn has_owner(&self) -> Result<bool>;
    /// Create the first owner (admin of the default vault); `Conflict` if an owner exists.
    fn create_first_owner(&self, user: &User) -> Result<()>;
    fn user(&self, id: &str) -> Result<Option<User>>;
    fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    fn users(&self) -> Result<Vec<User>>;
    /// `LastOwner` if this demotes the last owner.
    fn set_user_role(&self, id: &str, role: InstanceRole) -> Result<()>;
    /// Set the user's password and end every login session and device token of theirs
    /// (vault tokens they minted stay valid): a new login is the caller's to start.
    fn set_user_password(&self, id: &str, password_hash: &str) -> Result<()>;
    /// Delete a user, its grants, its sessions and device tokens and the scoped tokens it
    /// minted, and revoke the agent invites it created; `LastOwner` if it is the last owner.
    fn delete_user(&self, id: &str) -> Result<()>;

    // Invites.
    fn create_invite(&self, invite: &Invite) -> Result<()>;
    fn invite(&self, hash: &str) -> Result<Option<Invite>>;
    fn invites(&self) -> Result<Vec<Invite>>;
    /// Create `user` from a pending invite with its grants and mark the invite accepted,
    /// atomically; `NotFound` if the invite is not pending.
    fn accept_invite(&self, hash: &str, user: &User) -> Result<()>;
    fn revoke_invite(&self, hash: &str) -> Result<()>;

    // Agent invites.
    /// `Conflict` if an agent has the invite's name or another invite pending at
    /// `invite.created_at` reserves it.
    fn create_agent_invite(&self, invite: &AgentInvite) -> Result<()>;
    fn agent_invite(&self, hash: &str) -> Result<Option<AgentInvite>>;
    fn agent_invites(&self) -> Result<Vec<AgentInvite>>;
    /// Create the agent a pending invite names (id `agent_id`, the invite's role, grants and
    /// creator) with its first `token`, and mark the invite redeemed, atomically.
    /// `NotFound` unless the invite is pending and unexpired at `at`; `Conflict` if an agent
    /// of that name exists.
    fn redeem_agent_invite(
        &self,
        hash: &str,
        agent_id: &str,
        token: &TokenRecord,
        at: UnixTime,
    ) -> Result<Agent>;
    /// `NotFound` unless the invite is pending.
    fn revoke_agent_invite(&self, hash: &str) -> Result<()>;

    // Proposals.
    /// Store a pending proposal under the next id of its vault (its `id` is ignored); the
    /// id. `TooMany` if `max_pending` proposals of the vault are pending and unexpired at
    /// `proposal.created_at`.
    fn create_proposal(&self, proposal: &Proposal, max_pending: usize) -> Result<i64>;
    fn proposal(&self, vault_id: &str, id: i64) -> Result<Option<Proposal>>;
    fn proposal_by_approval(&self, approval_hash: &str) -> Result<Option<Proposal>>;
    /// A vault's proposals, newest first.
    fn proposals(&self, vault_id: &str) -> Result<Vec<Proposal>>;
    /// Write what approving the proposal means and mark it applied by `reviewer`, in one
    /// transaction. `NotFound` unless it is pending and unexpired at `at`; `Conflict` if the
    /// vault's services changed since the application was computed.
    fn apply_proposal(
        &self,
        vault_id: &str,
        id: i64,
        application: &ProposalApplication,
        reviewer: &ActorId,
        at: UnixTime,
    ) -> Result<()>;
    /// Mark the proposal rejected by `reviewer`, with an optional reason; `NotFound` unless it
    /// is pending and unexpired at `at`.
    fn reject_proposal(
        &self,
        vault_id: &str,
        id: i64,
        reviewer: &ActorId,
        reason: Option<&str>,
        at: UnixTime,
    ) -> Result<()>;

    // Agents.
    /// Create an agent with its grants and its first token; `Conflict` if the name is taken
    /// or reserved by an agent invite pending at `agent.created_at`.
    fn create_agent(&self, agent: &Agent, grants: &[Grant], token: &TokenRecord) -> Result<()>;
    fn agent(&self, id: &str) -> Result<Option<Agent>>;
    fn agent_by_name(&self, name: &str) -> Result<Option<Agent>>;
    fn agents(&self) -> Result<Vec<Agent>>;
    /// Mark revoked; delete its tokens and the scoped tokens it minted, and revoke the agent
    /// invites it created. `LastOwner` if it is the last owner.
    fn revoke_agent(&self, id: &str, at: UnixTime) -> Result<()>;
    /// As `revoke_agent`, then delete the agent and its grants.
    fn delete_agent(&self, id: &str) -> Result<()>;
    /// Replace all of the agent's tokens with `token` and make it active again.
    fn rotate_agent_token(&self, id: &str, token: &TokenRecord) -> Result<()>;
    /// `Conflict` if another agent, or a pending invite unexpired at `at`, has the name.
    fn rename_agent(&self, id: &str, name: &str, at: UnixTime) -> Result<()>;
    /// `LastOwner` if this demotes the last active owner.
    fn set_agent_role(&self, id: &str, role: InstanceRole) -> Result<()>;

    // Vault grants.
    fn grants_of(&self, actor: &ActorId) -> Result<Vec<Grant>>;
    fn vault_grants(&self, vault_id: &str) -> Result<Vec<Grant>>;
    /// Insert or change a grant; `LastAdmin` if it demotes the vault's last admin.
    fn set_grant(&self, grant: &Grant) -> Result<()>;
    /// `LastAdmin` if it removes the vault's last admin; `NotFound` if there is no grant.
    fn remove_grant(&self, actor: &ActorId, vault_id: &str) -> Result<()>;

    // Tokens.
    fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    fn touch_token(&self, hash: &str, at: UnixTime) -> Result<()>;
    fn delete_token(&self, hash: &str) -> Result<()>;
    /// Login sessions of a user.
    fn user_sessions(&self, user_id: &str) -> Result<Vec<TokenRecord>>;
    /// Scoped tokens of a vault that have not expired at `now`.
    fn scoped_tokens(&self, vault_id: &str, now: UnixTime) -> Result<Vec<TokenRecord>>;
    /// Delete a scoped token of a vault by public id; whether it existed.
    fn delete_scoped_token(&self, vault_id: &str, public_id: &str) -> Result<bool>;
    /// Delete every expired token and device token; how many.
    fn delete_expired_tokens(&self, now: UnixTime) -> Result<usize>;

    // Device tokens.
    /// Store a device token; past `max_per_user` of its user's, the least recently used of
    /// theirs go. `NotFound` if the user is gone.
    fn insert_device(&self, device: &DeviceRecord, max_per_user: usize) -> Result<()>;
    fn device(&self, hash: &str) -> Result<Option<DeviceRecord>>;
    /// Record a sign-in with the device token at `at`; `NotFound` if it is gone.
    fn touch_device(&self, hash: &str, at: UnixTime) -> Result<()>;
    /// A user's device tokens, oldest first.
    fn user_devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>>;
    /// Delete one of the user's device tokens by public id; whether it existed.
    fn delete_device(&self, user_id: &str, public_id: &str) -> Result<bool>;

    // The transparent proxy's certificate authority.
    fn transparent_ca(&self) -> Result<Option<StoredCa>>;
    /// Store the first one; `Conflict` if there is one (another process made it first).
    fn init_transparent_ca(&self, ca: &StoredCa) -> Result<()>;

    // The request log.
    fn insert_logs(&self, entries: &[LogEntry]) -> Result<()>;
    /// Insert `entries`, the request log journal's entries numbered up to `through`, and
    /// record `through` in the same transaction (it never goes down).
    fn insert_journaled_logs(&self, entries: &[LogEntry], through: JournalSeq) -> Result<()>;
    /// The highest journal number whose entry is in the log (0 before the first).
    fn journaled_through(&self) -> Result<JournalSeq>;
    fn logs(&self, vault_id: &str, query: &LogQuery) -> Result<Vec<LogEntry>>;
    /// The `host:port`s of the vault's logged requests that no service matched and that were
    /// refused for it (`forbidden`), answered 401 or 403, or tunnelled blind: how many, and
    /// when the last was.
    fn unmatched_hosts(&self, vault_id: &str) -> Result<Vec<HostSeen>>;
    /// Delete entries older than `older_than` and all but the newest `max_rows_per_vault` of
    /// each vault (0: no row cap); how many.
    fn prune_logs(&self, older_than: UnixTime, max_rows_per_vault: u32) -> Result<usize>;
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
/// PostgreSQL, whenever another server on the database announces one
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
