//! Who is calling: bearer tokens turned into an [`Actor`], and what that actor may do.
//!
//! Three kinds of token reach the server: a user's login session (`av_sess_`, slides with
//! use, expires when idle), an agent's token (`av_agt_`, until rotated or revoked) and a
//! vault-scoped session (`av_sess_`, one vault, a fixed lifetime, no identity of its own).
//! [`authenticate`] resolves one; [`access`] holds the permission rules of the vault and
//! instance roles. Device tokens (`devices.rs`) are no bearer tokens: they only tell a
//! client that signed in before apart when it signs in again.

pub mod access;
pub mod devices;
pub mod passwords;
pub mod tokens;

use crate::store::{
    ActorId, Agent, AgentStatus, InstanceRole, Store, StoreError, TokenKind, TokenRecord, UnixTime,
    User, VaultRole,
};

/// A login session's `last_used_at` is written at most this often, in seconds.
const TOUCH_INTERVAL: i64 = 60;

/// The caller of a request.
#[derive(Debug, Clone)]
pub enum Actor {
    User(User),
    Agent(Agent),
    /// A vault-scoped session: it acts in one vault with one role.
    Scoped {
        vault_id: String,
        role: VaultRole,
        created_by: Option<ActorId>,
    },
}

impl Actor {
    /// The user or agent behind the request; scoped sessions have none.
    pub fn id(&self) -> Option<ActorId> {
        match self {
            Actor::User(user) => Some(ActorId::user(&user.id)),
            Actor::Agent(agent) => Some(ActorId::agent(&agent.id)),
            Actor::Scoped { .. } => None,
        }
    }

    /// The user or agent answerable for the request: the caller, or for a vault-scoped
    /// session whoever minted it (`None` only if that was never recorded).
    pub fn accountable(&self) -> Option<ActorId> {
        match self {
            Actor::Scoped { created_by, .. } => created_by.clone(),
            actor => actor.id(),
        }
    }

    /// Whether a person is calling: a user's own login session. Agents and vault-scoped
    /// sessions (what agents are handed, whoever minted them) are not.
    pub fn is_person(&self) -> bool {
        matches!(self, Actor::User(_))
    }

    /// The instance role of a user or agent; scoped sessions have none.
    pub fn instance_role(&self) -> Option<InstanceRole> {
        match self {
            Actor::User(user) => Some(user.role),
            Actor::Agent(agent) => Some(agent.role),
            Actor::Scoped { .. } => None,
        }
    }

    /// How logs and listings name the actor.
    pub fn display_name(&self) -> String {
        match self {
            Actor::User(user) => user.email.clone(),
            Actor::Agent(agent) => agent.name.clone(),
            Actor::Scoped { .. } => "vault session".to_owned(),
        }
    }
}

/// An authenticated request: the actor and the hash of the token it used.
#[derive(Debug, Clone)]
pub struct Session {
    pub actor: Actor,
    pub token_hash: String,
    /// The token record (for its kind and expiry).
    pub record: TokenRecord,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Authorization required")]
    Missing,
    #[error("Invalid or expired session")]
    Invalid,
    #[error("Session expired")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Resolve a bearer token at `now`. Login sessions slide (their last use is recorded, at
/// most once a minute).
pub fn authenticate(store: &dyn Store, token: &str, now: UnixTime) -> Result<Session, AuthError> {
    if !(token.starts_with(tokens::SESSION_PREFIX) || token.starts_with(tokens::AGENT_PREFIX)) {
        return Err(AuthError::Invalid);
    }
    let hash = tokens::hash(token);
    let record = store.token(&hash)?.ok_or(AuthError::Invalid)?;
    if !tokens::matches(token, &record.hash) {
        return Err(AuthError::Invalid);
    }
    if record.expires_at.is_some_and(|expires| expires <= now) {
        return Err(AuthError::Expired);
    }
    let actor = match &record.kind {
        TokenKind::Login {
            user_id,
            idle_seconds,
        } => {
            if record.last_used_at + idle_seconds <= now {
                return Err(AuthError::Expired);
            }
            let user = store.user(user_id)?.ok_or(AuthError::Invalid)?;
            if now - record.last_used_at >= TOUCH_INTERVAL {
                // Bookkeeping for the idle timeout: a request must not fail because the
                // database cannot take this write now (the next request tries again).
                match store.touch_token(&hash, now) {
                    Err(StoreError::Unavailable(reason)) => {
                        tracing::warn!("cannot record that a login session was used: {reason}");
                    }
                    other => other?,
                }
            }
            Actor::User(user)
        }
        TokenKind::Agent { agent_id } => {
            let agent = store.agent(agent_id)?.ok_or(AuthError::Invalid)?;
            if agent.status != AgentStatus::Active {
                return Err(AuthError::Invalid);
            }
            Actor::Agent(agent)
        }
        TokenKind::Scoped { vault_id, role, .. } => Actor::Scoped {
            vault_id: vault_id.clone(),
            role: *role,
            created_by: record.created_by.clone(),
        },
    };
    Ok(Session {
        actor,
        token_hash: hash,
        record,
    })
}

/// The token of an `Authorization: Bearer` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}
