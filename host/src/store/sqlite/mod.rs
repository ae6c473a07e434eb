//! The embedded backend of [`Store`]: one SQLite file in WAL mode, private to the user who
//! runs agent-vault, behind one connection.
//!
//! Start at [`SqliteStore::open`] (in `sqlite/open.rs`): it creates the file (0600, in a 0700
//! directory when it makes one) before SQLite touches it, so the `-wal` and `-shm` files
//! SQLite creates later inherit that mode; it sets the pragmas that make an acknowledged write
//! durable (`synchronous=FULL`) and let the CLI share the file with a running server
//! (`busy_timeout`); and it applies the numbered migrations of `migrations/`, tracked by
//! `PRAGMA user_version`.
//!
//! Every trait method is one transaction; writes start with `BEGIN IMMEDIATE`, so a rule
//! checked inside one (the last owner, the last vault admin, one first owner) cannot be
//! invalidated by another connection between the check and the write. This module does not
//! decide who may call what (that is `auth`), and never sees a plaintext credential.
//!
//! This file holds the store, its transactions and the trait's methods; each method names
//! its operation (for the error message) and runs a function of the entity's file under
//! `sqlite/` (`vaults.rs`, `users.rs`, `tokens.rs`, …) inside the transaction.

mod agent_invites;
mod agents;
mod credentials;
mod devices;
mod errors;
mod grants;
mod invite_rules;
mod invites;
mod keys;
mod open;
mod proposals;
mod request_log;
mod roles;
mod services;
mod settings;
mod tokens;
mod transparent_ca;
mod users;
mod vaults;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, Row, Transaction, TransactionBehavior};

use self::errors::{Failure, TxResult, describe, is_temporary};
use super::{
    ActorId, ActorKind, Agent, AgentInvite, DeviceRecord, Grant, HostSeen, InstanceRole, Invite,
    JournalSeq, LogEntry, LogQuery, MasterKeyRecord, Proposal, ProposalApplication, Result, Store,
    StoreError, StoredCa, StoredCredential, TokenRecord, UnixTime, User, Vault, contracts, now,
};

/// How long a statement waits for another connection (the CLI next to a running server)
/// to release the database before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// The id the first migration gives the [`DEFAULT_VAULT`](super::DEFAULT_VAULT).
pub const DEFAULT_VAULT_ID: &str = "00000000000000000000000000000000";

/// The SQLite [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
    /// A second connection for the request log only, with `synchronous=NORMAL`: its commits
    /// do not wait for the disk (they reach it with the next checkpoint or the next commit of
    /// the main connection). A power loss may lose the last moments of the log; a crash of
    /// the process loses nothing. Everything else keeps `FULL`.
    log_connection: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLite's `PRAGMA integrity_check`: its first row, `ok` when the file is healthy.
    pub fn integrity_check(&self) -> Result<String> {
        self.read("check the database", |tx| {
            Ok(tx.query_row("PRAGMA integrity_check", [], |row| row.get(0))?)
        })
    }

    fn read<T>(
        &self,
        operation: &str,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        self.transaction(operation, TransactionBehavior::Deferred, work)
    }

    fn write<T>(
        &self,
        operation: &str,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        self.transaction(operation, TransactionBehavior::Immediate, work)
    }

    fn transaction<T>(
        &self,
        operation: &str,
        behavior: TransactionBehavior,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        Self::transaction_on(&self.connection, operation, behavior, work)
    }

    fn transaction_on<T>(
        connection: &Mutex<Connection>,
        operation: &str,
        behavior: TransactionBehavior,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        // A panic while the lock was held unwound through the `Transaction`, whose drop
        // rolled it back: the connection is consistent and safe to reuse.
        let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = (|| {
            let tx = connection.transaction_with_behavior(behavior)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        outcome.map_err(|failure| match failure {
            Failure::Store(error) => error,
            Failure::Sql(error) => {
                let message = format!("cannot {operation}: {}", describe(&error));
                if is_temporary(&error) {
                    StoreError::Unavailable(message)
                } else {
                    StoreError::Database(message)
                }
            }
        })
    }

    /// A write on the request log's own connection.
    fn log_write<T>(
        &self,
        operation: &str,
        work: impl FnOnce(&Transaction<'_>) -> TxResult<T>,
    ) -> Result<T> {
        let behavior = TransactionBehavior::Immediate;
        Self::transaction_on(&self.log_connection, operation, behavior, work)
    }
}

// Reading and writing rows, for every entity.

fn text_enum<T: FromStr<Err = String>>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    text.parse().map_err(|message: String| {
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, message.into())
    })
}

/// An optional actor stored as a (type, id) pair of columns.
fn actor_at(row: &Row<'_>, kind: usize, id: usize) -> rusqlite::Result<Option<ActorId>> {
    let Some(id_text) = row.get::<_, Option<String>>(id)? else {
        return Ok(None);
    };
    let kind: ActorKind = text_enum(row, kind)?;
    Ok(Some(ActorId { kind, id: id_text }))
}

fn actor_columns(actor: Option<&ActorId>) -> (Option<&'static str>, Option<&str>) {
    (
        actor.map(|actor| actor.kind.as_str()),
        actor.map(|actor| actor.id.as_str()),
    )
}

fn query_all<T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> TxResult<Vec<T>> {
    let mut statement = tx.prepare_cached(sql)?;
    let rows = statement.query_map(params, map)?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

impl Store for SqliteStore {
    fn master_key(&self) -> Result<Option<MasterKeyRecord>> {
        self.read("read the master key", keys::get)
    }

    fn init_master_key(&self, record: &MasterKeyRecord) -> Result<()> {
        self.write("store the master key", |tx| keys::init(tx, record))
    }

    fn replace_master_key(&self, record: &MasterKeyRecord) -> Result<()> {
        self.write("replace the master key", |tx| keys::replace(tx, record))
    }

    fn create_vault(&self, name: &str, admin: Option<&ActorId>) -> Result<Vault> {
        let vault = Vault::new(name)?;
        self.write("create the vault", |tx| vaults::insert(tx, &vault, admin))?;
        Ok(vault)
    }

    fn vault(&self, name: &str) -> Result<Option<Vault>> {
        self.read("read the vault", |tx| vaults::by_name(tx, name))
    }

    fn vault_by_id(&self, id: &str) -> Result<Option<Vault>> {
        self.read("read the vault", |tx| vaults::by_id(tx, id))
    }

    fn vaults(&self) -> Result<Vec<Vault>> {
        self.read("list the vaults", vaults::list)
    }

    fn rename_vault(&self, id: &str, name: &str) -> Result<()> {
        self.write("rename the vault", |tx| vaults::rename(tx, id, name))
    }

    fn delete_vault(&self, id: &str) -> Result<()> {
        self.write("delete the vault", |tx| vaults::delete(tx, id))
    }

    fn vault_setting(&self, vault_id: &str, key: &str) -> Result<Option<String>> {
        self.read("read the vault setting", |tx| {
            settings::vault_setting(tx, vault_id, key)
        })
    }

    fn set_vault_setting(&self, vault_id: &str, key: &str, value: Option<&str>) -> Result<()> {
        self.write("change the vault setting", |tx| {
            settings::set_vault_setting(tx, vault_id, key, value)
        })
    }

    fn instance_setting(&self, key: &str) -> Result<Option<String>> {
        self.read("read the instance setting", |tx| {
            settings::instance_setting(tx, key)
        })
    }

    fn set_instance_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.write("change the instance setting", |tx| {
            settings::set_instance_setting(tx, key, value)
        })
    }

    fn put_credentials(&self, vault_id: &str, credentials: &[StoredCredential]) -> Result<()> {
        let updated_at = now();
        self.write("store the credentials", |tx| {
            credentials::write_credentials(tx, vault_id, credentials, updated_at)
        })
    }

    fn credential(&self, vault_id: &str, key: &str) -> Result<Option<StoredCredential>> {
        self.read("read the credential", |tx| {
            credentials::get(tx, vault_id, key)
        })
    }

    fn credential_keys(&self, vault_id: &str) -> Result<Vec<String>> {
        self.read("list the credentials", |tx| credentials::keys(tx, vault_id))
    }

    fn delete_credentials(&self, vault_id: &str, keys: &[String]) -> Result<Vec<String>> {
        self.write("delete the credentials", |tx| {
            credentials::remove_credentials(tx, vault_id, keys)
        })
    }

    fn services(&self, vault_id: &str) -> Result<Option<String>> {
        self.read("read the services", |tx| {
            services::read_services(tx, vault_id)
        })
    }

    fn set_services(&self, vault_id: &str, json: &str) -> Result<()> {
        self.write("store the services", |tx| {
            services::write_services(tx, vault_id, json, now())
        })
    }

    fn has_owner(&self) -> Result<bool> {
        self.read("look for an owner", users::has_owner)
    }

    fn create_first_owner(&self, user: &User) -> Result<()> {
        self.write("create the first owner", |tx| {
            users::create_first_owner(tx, user)
        })
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        self.read("read the user", |tx| users::get(tx, id))
    }

    fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.read("read the user", |tx| users::by_email(tx, email))
    }

    fn users(&self) -> Result<Vec<User>> {
        self.read("list the users", users::list)
    }

    fn set_user_role(&self, id: &str, role: InstanceRole) -> Result<()> {
        self.write("change the user's role", |tx| users::set_role(tx, id, role))
    }

    fn set_user_password(&self, id: &str, password_hash: &str) -> Result<()> {
        self.write("change the user's password", |tx| {
            users::set_password(tx, id, password_hash)
        })
    }

    fn delete_user(&self, id: &str) -> Result<()> {
        self.write("delete the user", |tx| users::delete(tx, id))
    }

    fn create_invite(&self, invite: &Invite) -> Result<()> {
        self.write("create the invite", |tx| invites::create(tx, invite))
    }

    fn invite(&self, hash: &str) -> Result<Option<Invite>> {
        self.read("read the invite", |tx| invites::get(tx, hash))
    }

    fn invites(&self) -> Result<Vec<Invite>> {
        self.read("list the invites", invites::list)
    }

    fn accept_invite(&self, hash: &str, user: &User) -> Result<()> {
        let at = now();
        self.write("accept the invite", |tx| {
            invites::accept(tx, hash, user, at)
        })
    }

    fn revoke_invite(&self, hash: &str) -> Result<()> {
        self.write("revoke the invite", |tx| invites::revoke(tx, hash))
    }

    fn create_agent_invite(&self, invite: &AgentInvite) -> Result<()> {
        self.write("create the agent invite", |tx| {
            agent_invites::create(tx, invite)
        })
    }

    fn agent_invite(&self, hash: &str) -> Result<Option<AgentInvite>> {
        self.read("read the agent invite", |tx| agent_invites::get(tx, hash))
    }

    fn agent_invites(&self) -> Result<Vec<AgentInvite>> {
        self.read("list the agent invites", agent_invites::list)
    }

    fn redeem_agent_invite(
        &self,
        hash: &str,
        agent_id: &str,
        token: &TokenRecord,
        at: UnixTime,
    ) -> Result<Agent> {
        self.write("redeem the agent invite", |tx| {
            agent_invites::redeem(tx, hash, agent_id, token, at)
        })
    }

    fn revoke_agent_invite(&self, hash: &str) -> Result<()> {
        self.write("revoke the agent invite", |tx| {
            agent_invites::revoke(tx, hash)
        })
    }

    fn create_proposal(&self, proposal: &Proposal, max_pending: usize) -> Result<i64> {
        self.write("create the proposal", |tx| {
            proposals::create(tx, proposal, max_pending)
        })
    }

    fn proposal(&self, vault_id: &str, id: i64) -> Result<Option<Proposal>> {
        self.read("read the proposal", |tx| proposals::get(tx, vault_id, id))
    }

    fn proposal_by_approval(&self, approval_hash: &str) -> Result<Option<Proposal>> {
        self.read("read the proposal", |tx| {
            proposals::by_approval(tx, approval_hash)
        })
    }

    fn proposals(&self, vault_id: &str) -> Result<Vec<Proposal>> {
        self.read("list the proposals", |tx| proposals::list(tx, vault_id))
    }

    fn apply_proposal(
        &self,
        vault_id: &str,
        id: i64,
        application: &ProposalApplication,
        reviewer: &ActorId,
        at: UnixTime,
    ) -> Result<()> {
        self.write("apply the proposal", |tx| {
            proposals::apply(tx, vault_id, id, application, reviewer, at)
        })
    }

    fn reject_proposal(
        &self,
        vault_id: &str,
        id: i64,
        reviewer: &ActorId,
        reason: Option<&str>,
        at: UnixTime,
    ) -> Result<()> {
        self.write("reject the proposal", |tx| {
            proposals::reject(tx, vault_id, id, reviewer, reason, at)
        })
    }

    fn create_agent(&self, agent: &Agent, grants: &[Grant], token: &TokenRecord) -> Result<()> {
        contracts::check_new_agent(agent, grants, token)?;
        self.write("create the agent", |tx| {
            agents::create(tx, agent, grants, token)
        })
    }

    fn agent(&self, id: &str) -> Result<Option<Agent>> {
        self.read("read the agent", |tx| agents::get(tx, id))
    }

    fn agent_by_name(&self, name: &str) -> Result<Option<Agent>> {
        self.read("read the agent", |tx| agents::by_name(tx, name))
    }

    fn agents(&self) -> Result<Vec<Agent>> {
        self.read("list the agents", agents::list)
    }

    fn revoke_agent(&self, id: &str, at: UnixTime) -> Result<()> {
        self.write("revoke the agent", |tx| agents::revoke(tx, id, at))
    }

    fn delete_agent(&self, id: &str) -> Result<()> {
        self.write("delete the agent", |tx| agents::delete(tx, id))
    }

    fn rename_agent(&self, id: &str, name: &str, at: UnixTime) -> Result<()> {
        self.write("rename the agent", |tx| agents::rename(tx, id, name, at))
    }

    fn set_agent_role(&self, id: &str, role: InstanceRole) -> Result<()> {
        self.write("change the agent's role", |tx| {
            agents::set_role(tx, id, role)
        })
    }

    fn rotate_agent_token(&self, id: &str, token: &TokenRecord) -> Result<()> {
        contracts::check_rotated_token(id, token)?;
        self.write("rotate the agent's token", |tx| {
            agents::rotate_token(tx, id, token)
        })
    }

    fn grants_of(&self, actor: &ActorId) -> Result<Vec<Grant>> {
        self.read("list the grants", |tx| grants::of_actor(tx, actor))
    }

    fn vault_grants(&self, vault_id: &str) -> Result<Vec<Grant>> {
        self.read("list the grants", |tx| grants::of_vault(tx, vault_id))
    }

    fn set_grant(&self, grant: &Grant) -> Result<()> {
        self.write("change the grant", |tx| grants::set(tx, grant))
    }

    fn remove_grant(&self, actor: &ActorId, vault_id: &str) -> Result<()> {
        self.write("remove the grant", |tx| grants::remove(tx, actor, vault_id))
    }

    fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        self.write("store the token", |tx| tokens::insert_token_row(tx, token))
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.read("read the token", |tx| tokens::get(tx, hash))
    }

    fn touch_token(&self, hash: &str, at: UnixTime) -> Result<()> {
        self.write("record the token's use", |tx| tokens::touch(tx, hash, at))
    }

    fn delete_token(&self, hash: &str) -> Result<()> {
        self.write("delete the token", |tx| tokens::delete(tx, hash))
    }

    fn user_sessions(&self, user_id: &str) -> Result<Vec<TokenRecord>> {
        self.read("list the user's sessions", |tx| {
            tokens::user_sessions(tx, user_id)
        })
    }

    fn scoped_tokens(&self, vault_id: &str, now: UnixTime) -> Result<Vec<TokenRecord>> {
        self.read("list the vault's sessions", |tx| {
            tokens::scoped(tx, vault_id, now)
        })
    }

    fn delete_scoped_token(&self, vault_id: &str, public_id: &str) -> Result<bool> {
        self.write("delete the session", |tx| {
            tokens::delete_scoped(tx, vault_id, public_id)
        })
    }

    fn delete_expired_tokens(&self, now: UnixTime) -> Result<usize> {
        self.write("delete expired tokens", |tx| {
            tokens::delete_expired(tx, now)
        })
    }

    fn insert_device(&self, device: &DeviceRecord, max_per_user: usize) -> Result<()> {
        self.write("store the device token", |tx| {
            devices::insert(tx, device, max_per_user)
        })
    }

    fn device(&self, hash: &str) -> Result<Option<DeviceRecord>> {
        self.read("read the device token", |tx| devices::get(tx, hash))
    }

    fn touch_device(&self, hash: &str, at: UnixTime) -> Result<()> {
        self.write("record the device token's use", |tx| {
            devices::touch(tx, hash, at)
        })
    }

    fn user_devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>> {
        self.read("list the user's device tokens", |tx| {
            devices::of_user(tx, user_id)
        })
    }

    fn delete_device(&self, user_id: &str, public_id: &str) -> Result<bool> {
        self.write("delete the device token", |tx| {
            devices::delete(tx, user_id, public_id)
        })
    }

    fn transparent_ca(&self) -> Result<Option<StoredCa>> {
        self.read("read the local CA", transparent_ca::get)
    }

    fn init_transparent_ca(&self, ca: &StoredCa) -> Result<()> {
        self.write("store the local CA", |tx| transparent_ca::init(tx, ca))
    }

    fn insert_logs(&self, entries: &[LogEntry]) -> Result<()> {
        self.log_write("write the request log", |tx| {
            request_log::insert(tx, entries, None)
        })
    }

    fn insert_journaled_logs(&self, entries: &[LogEntry], through: JournalSeq) -> Result<()> {
        self.log_write("write the request log", |tx| {
            request_log::insert(tx, entries, Some(through))
        })
    }

    fn journaled_through(&self) -> Result<JournalSeq> {
        self.read(
            "read the request log's journal mark",
            request_log::journaled_through,
        )
    }

    fn logs(&self, vault_id: &str, query: &LogQuery) -> Result<Vec<LogEntry>> {
        self.read("read the request log", |tx| {
            request_log::logs(tx, vault_id, query)
        })
    }

    fn unmatched_hosts(&self, vault_id: &str) -> Result<Vec<HostSeen>> {
        self.read("read the request log", |tx| {
            request_log::unmatched_hosts(tx, vault_id)
        })
    }

    fn prune_logs(&self, older_than: UnixTime, max_rows_per_vault: u32) -> Result<usize> {
        // On the log's own connection: a commit on the main one would make the log
        // connection drop its page cache and read the log's pages again.
        self.log_write("prune the request log", |tx| {
            request_log::prune(tx, older_than, max_rows_per_vault)
        })
    }
}

#[cfg(test)]
mod tests;
