//! What agents and agent invites ask of each other: an agent's name is free only if no
//! pending invite reserves it, and the invites an agent made end with it.

use super::Tx;

use super::errors::TxResult;
use super::exists;
use crate::store::{ActorId, StoreError, UnixTime};

/// `Conflict` if a pending invite, unexpired at `at`, reserves `name`.
pub(super) fn check_name_free(tx: &mut Tx<'_>, name: &str, at: UnixTime) -> TxResult<()> {
    let reserved = exists(
        tx,
        "SELECT 1 FROM agent_invites
         WHERE agent_name = $1 AND status = 'pending' AND expires_at > $2",
        &[&name, &at],
    )?;
    if reserved {
        return Err(StoreError::Conflict(format!("a pending invite for agent {name}")).into());
    }
    Ok(())
}

/// Revoke the pending invites `creator` made: an invite is only as good as whoever issued it.
pub(super) fn revoke_created_by(tx: &mut Tx<'_>, creator: &ActorId) -> TxResult<()> {
    tx.execute(
        "UPDATE agent_invites SET status = 'revoked'
         WHERE status = 'pending' AND created_by_type = $1 AND created_by_id = $2",
        &[&creator.kind.as_str(), &creator.id],
    )?;
    Ok(())
}
