//! Tokens in PostgreSQL: the `tokens` table, which holds login sessions of users, agent tokens and
//! scoped sessions of a vault (only their hashes). [`TokenStore`] for [`PostgresStore`] is at the
//! end of this file: each method names its operation (for the error message) and runs these
//! functions in one transaction.
//!
//! A token is valid while `now < expires_at`; a login session also ends once unused for its
//! idle time. Expired ones are deleted together with expired device tokens.

use postgres::Row;

use super::Tx;

use super::PostgresStore;
use super::errors::{Constraint, Failure, TxResult};
use super::{actor_at, actor_columns, column, devices, query_all, query_opt, text_enum};
use crate::store::{Result, StoreError, TokenKind, TokenRecord, TokenStore, UnixTime};

const TOKEN_COLUMNS: &str = "hash, public_id, kind, user_id, agent_id, vault_id, vault_role, \
     label, idle_seconds, created_by_type, created_by_id, created_at, last_used_at, expires_at";

fn token_row(row: &Row) -> TxResult<TokenRecord> {
    let kind: String = column(row, 2)?;
    let kind = match kind.as_str() {
        "login" => TokenKind::Login {
            user_id: column(row, 3)?,
            idle_seconds: column(row, 8)?,
        },
        "agent" => TokenKind::Agent {
            agent_id: column(row, 4)?,
        },
        "scoped" => TokenKind::Scoped {
            vault_id: column(row, 5)?,
            role: text_enum(row, 6)?,
            label: column(row, 7)?,
        },
        other => return Err(Failure::Data(format!("unknown token kind {other:?}"))),
    };
    Ok(TokenRecord {
        hash: column(row, 0)?,
        public_id: column(row, 1)?,
        kind,
        created_by: actor_at(row, 9, 10)?,
        created_at: column(row, 11)?,
        last_used_at: column(row, 12)?,
        expires_at: column(row, 13)?,
    })
}

pub(super) fn insert_token_row(tx: &mut Tx<'_>, token: &TokenRecord) -> TxResult<()> {
    let (kind, user_id, agent_id, vault_id, vault_role, label, idle_seconds, parent) =
        match &token.kind {
            TokenKind::Login {
                user_id,
                idle_seconds,
            } => (
                "login",
                Some(user_id),
                None,
                None,
                None,
                None,
                Some(*idle_seconds),
                "user",
            ),
            TokenKind::Agent { agent_id } => (
                "agent",
                None,
                Some(agent_id),
                None,
                None,
                None,
                None,
                "agent",
            ),
            TokenKind::Scoped {
                vault_id,
                role,
                label,
            } => (
                "scoped",
                None,
                None,
                Some(vault_id),
                Some(role.as_str()),
                Some(label),
                None,
                "vault",
            ),
        };
    let (created_by_type, created_by_id) = actor_columns(token.created_by.as_ref());
    tx.execute(
        "INSERT INTO tokens (hash, public_id, kind, user_id, agent_id, vault_id, vault_role, label,
                             idle_seconds, created_by_type, created_by_id, created_at,
                             last_used_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &[
            &token.hash,
            &token.public_id,
            &kind,
            &user_id,
            &agent_id,
            &vault_id,
            &vault_role,
            &label,
            &idle_seconds,
            &created_by_type,
            &created_by_id,
            &token.created_at,
            &token.last_used_at,
            &token.expires_at,
        ],
    )
    .on_unique("token")
    .on_missing(parent)?;
    Ok(())
}

/// Tokens an agent holds and the scoped sessions it minted with them.
pub(super) fn delete_agent_tokens(tx: &mut Tx<'_>, agent_id: &str) -> TxResult<()> {
    tx.execute(
        "DELETE FROM tokens
         WHERE agent_id = $1 OR (created_by_type = 'agent' AND created_by_id = $1)",
        &[&agent_id],
    )?;
    Ok(())
}

pub(super) fn get(tx: &mut Tx<'_>, hash: &str) -> TxResult<Option<TokenRecord>> {
    query_opt(
        tx,
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"),
        &[&hash],
        token_row,
    )
}

pub(super) fn touch(tx: &mut Tx<'_>, hash: &str, at: UnixTime) -> TxResult<()> {
    // GREATEST: two requests finishing out of order must not move the time backwards.
    if tx.execute(
        "UPDATE tokens SET last_used_at = GREATEST(last_used_at, $1) WHERE hash = $2",
        &[&at, &hash],
    )? == 0
    {
        return Err(StoreError::NotFound("token".into()).into());
    }
    Ok(())
}

pub(super) fn delete(tx: &mut Tx<'_>, hash: &str) -> TxResult<()> {
    if tx.execute("DELETE FROM tokens WHERE hash = $1", &[&hash])? == 0 {
        return Err(StoreError::NotFound("token".into()).into());
    }
    Ok(())
}

pub(super) fn user_sessions(tx: &mut Tx<'_>, user_id: &str) -> TxResult<Vec<TokenRecord>> {
    query_all(
        tx,
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens
             WHERE kind = 'login' AND user_id = $1 ORDER BY created_at, public_id"
        ),
        &[&user_id],
        token_row,
    )
}

pub(super) fn scoped(tx: &mut Tx<'_>, vault_id: &str, now: UnixTime) -> TxResult<Vec<TokenRecord>> {
    query_all(
        tx,
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens
             WHERE kind = 'scoped' AND vault_id = $1
               AND (expires_at IS NULL OR expires_at > $2)
             ORDER BY created_at, public_id"
        ),
        &[&vault_id, &now],
        token_row,
    )
}

pub(super) fn delete_scoped(tx: &mut Tx<'_>, vault_id: &str, public_id: &str) -> TxResult<bool> {
    Ok(tx.execute(
        "DELETE FROM tokens WHERE kind = 'scoped' AND vault_id = $1 AND public_id = $2",
        &[&vault_id, &public_id],
    )? > 0)
}

/// Delete the tokens and device tokens expired at `now`; how many.
pub(super) fn delete_expired(tx: &mut Tx<'_>, now: UnixTime) -> TxResult<usize> {
    // A token is valid while `now < expires_at` (as `scoped_tokens` lists them).
    let tokens = tx.execute(
        "DELETE FROM tokens
         WHERE (expires_at IS NOT NULL AND expires_at <= $1)
            OR (kind = 'login' AND last_used_at + idle_seconds < $1)",
        &[&now],
    )?;
    Ok(usize::try_from(tokens).unwrap_or(usize::MAX) + devices::delete_expired(tx, now)?)
}

impl TokenStore for PostgresStore {
    fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        self.write("store the token", |tx| insert_token_row(tx, token))
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.read("read the token", |tx| get(tx, hash))
    }

    fn touch_token(&self, hash: &str, at: UnixTime) -> Result<()> {
        self.write("record the token's use", |tx| touch(tx, hash, at))
    }

    fn delete_token(&self, hash: &str) -> Result<()> {
        self.write("delete the token", |tx| delete(tx, hash))
    }

    fn user_sessions(&self, user_id: &str) -> Result<Vec<TokenRecord>> {
        self.read("list the user's sessions", |tx| user_sessions(tx, user_id))
    }

    fn scoped_tokens(&self, vault_id: &str, now: UnixTime) -> Result<Vec<TokenRecord>> {
        self.read("list the vault's sessions", |tx| scoped(tx, vault_id, now))
    }

    fn delete_scoped_token(&self, vault_id: &str, public_id: &str) -> Result<bool> {
        self.write("delete the session", |tx| {
            delete_scoped(tx, vault_id, public_id)
        })
    }

    fn delete_expired_tokens(&self, now: UnixTime) -> Result<usize> {
        self.write("delete expired tokens", |tx| delete_expired(tx, now))
    }
}
