//! Tokens and sessions: login sessions, agents' tokens and vault-scoped sessions, stored
//! only as their SHA-256.

use super::{ActorId, Result, UnixTime, VaultRole};

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

/// Tokens and sessions. Every method is one transaction.
pub trait TokenStore {
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
}
