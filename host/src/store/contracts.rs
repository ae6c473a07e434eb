//! What a caller promises to the store and the store checks before it opens a transaction,
//! the same for every backend: a programming error, reported as `Database`, not the user's.

use super::{ActorId, Agent, Grant, Result, StoreError, TokenKind, TokenRecord};

/// The caller's contract for a new agent, checked before the transaction: its grants and
/// its first token are its own.
pub(super) fn check_new_agent(agent: &Agent, grants: &[Grant], token: &TokenRecord) -> Result<()> {
    let actor = ActorId::agent(&agent.id);
    if grants.iter().any(|grant| grant.actor != actor) {
        return Err(StoreError::Database(
            "the grants of a new agent must name that agent".into(),
        ));
    }
    if !matches!(&token.kind, TokenKind::Agent { agent_id } if *agent_id == agent.id) {
        return Err(StoreError::Database(
            "the first token of an agent must be an agent token of that agent".into(),
        ));
    }
    Ok(())
}

/// The caller's contract for a rotation, checked before the transaction: the new token is
/// an agent token of that agent.
pub(super) fn check_rotated_token(id: &str, token: &TokenRecord) -> Result<()> {
    if !matches!(&token.kind, TokenKind::Agent { agent_id } if agent_id == id) {
        return Err(StoreError::Database(
            "a rotated token must be an agent token of that agent".into(),
        ));
    }
    Ok(())
}
