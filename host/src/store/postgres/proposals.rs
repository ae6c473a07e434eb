//! Proposals in PostgreSQL: the `proposals` table. [`ProposalStore`] for [`PostgresStore`] is at
//! the end of this file: each method names its operation (for the error message) and runs these
//! functions in one transaction.
//!
//! As in SQLite (`sqlite/proposals.rs`): ids count up per vault (the largest so far plus one,
//! read inside the writing transaction; two concurrent proposals that read the same largest
//! id cannot both commit at `SERIALIZABLE`, and the second runs again), the cap on pending
//! proposals is counted in the same transaction, and applying re-checks that the proposal is
//! still pending and the services unchanged before writing everything together.

use postgres::Row;

use super::Tx;

use super::PostgresStore;
use super::credentials::{remove_credentials, write_credentials};
use super::errors::{Constraint, TxResult};
use super::services::{read_services, write_services};
use super::{actor_at, actor_columns, column, query_all, query_opt, text_enum};
use crate::store::{
    ActorId, Proposal, ProposalApplication, ProposalStatus, ProposalStore, Result, StoreError,
    UnixTime,
};

const COLUMNS: &str = "vault_id, id, status, services_json, credentials_json, message, \
                       user_message, created_by_type, created_by_id, created_by_session, \
                       approval_hash, approval_expires_at, created_at, expires_at, \
                       reviewed_by_type, reviewed_by_id, reviewed_at, review_note";

fn proposal_row(row: &Row) -> TxResult<Proposal> {
    Ok(Proposal {
        vault_id: column(row, 0)?,
        id: column(row, 1)?,
        status: text_enum(row, 2)?,
        services_json: column(row, 3)?,
        credentials_json: column(row, 4)?,
        message: column(row, 5)?,
        user_message: column(row, 6)?,
        created_by: actor_at(row, 7, 8)?,
        created_by_session: column(row, 9)?,
        approval_hash: column(row, 10)?,
        approval_expires_at: column(row, 11)?,
        created_at: column(row, 12)?,
        expires_at: column(row, 13)?,
        reviewed_by: actor_at(row, 14, 15)?,
        reviewed_at: column(row, 16)?,
        review_note: column(row, 17)?,
    })
}

pub(super) fn create(tx: &mut Tx<'_>, proposal: &Proposal, max_pending: usize) -> TxResult<i64> {
    let row = tx.query_one(
        "SELECT COUNT(*) FROM proposals
         WHERE vault_id = $1 AND status = 'pending' AND expires_at > $2",
        &[&proposal.vault_id, &proposal.created_at],
    )?;
    let pending: i64 = column(&row, 0)?;
    if pending >= i64::try_from(max_pending).unwrap_or(i64::MAX) {
        return Err(StoreError::TooMany(format!("pending proposals (max {max_pending})")).into());
    }
    let row = tx.query_one(
        "SELECT COALESCE(MAX(id), 0) + 1 FROM proposals WHERE vault_id = $1",
        &[&proposal.vault_id],
    )?;
    let id: i64 = column(&row, 0)?;
    let (created_by_type, created_by_id) = actor_columns(proposal.created_by.as_ref());
    tx.execute(
        &format!(
            "INSERT INTO proposals ({COLUMNS})
             VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                     NULL, NULL, NULL, NULL)"
        ),
        &[
            &proposal.vault_id,
            &id,
            &proposal.services_json,
            &proposal.credentials_json,
            &proposal.message,
            &proposal.user_message,
            &created_by_type,
            &created_by_id,
            &proposal.created_by_session,
            &proposal.approval_hash,
            &proposal.approval_expires_at,
            &proposal.created_at,
            &proposal.expires_at,
        ],
    )
    .on_unique("a proposal with this approval token")
    .on_missing("vault")?;
    Ok(id)
}

pub(super) fn get(tx: &mut Tx<'_>, vault_id: &str, id: i64) -> TxResult<Option<Proposal>> {
    query_opt(
        tx,
        &format!("SELECT {COLUMNS} FROM proposals WHERE vault_id = $1 AND id = $2"),
        &[&vault_id, &id],
        proposal_row,
    )
}

pub(super) fn by_approval(tx: &mut Tx<'_>, approval_hash: &str) -> TxResult<Option<Proposal>> {
    query_opt(
        tx,
        &format!("SELECT {COLUMNS} FROM proposals WHERE approval_hash = $1"),
        &[&approval_hash],
        proposal_row,
    )
}

pub(super) fn list(tx: &mut Tx<'_>, vault_id: &str) -> TxResult<Vec<Proposal>> {
    query_all(
        tx,
        &format!("SELECT {COLUMNS} FROM proposals WHERE vault_id = $1 ORDER BY id DESC"),
        &[&vault_id],
        proposal_row,
    )
}

/// `NotFound` unless the proposal is pending and unexpired at `at`.
fn require_pending(tx: &mut Tx<'_>, vault_id: &str, id: i64, at: UnixTime) -> TxResult<()> {
    let pending = get(tx, vault_id, id)?
        .is_some_and(|p| p.status == ProposalStatus::Pending && p.expires_at > at);
    if pending {
        Ok(())
    } else {
        Err(StoreError::NotFound("pending proposal".into()).into())
    }
}

fn mark_reviewed(
    tx: &mut Tx<'_>,
    vault_id: &str,
    id: i64,
    status: ProposalStatus,
    reviewer: &ActorId,
    note: Option<&str>,
    at: UnixTime,
) -> TxResult<()> {
    tx.execute(
        "UPDATE proposals SET status = $1, reviewed_by_type = $2, reviewed_by_id = $3,
                              reviewed_at = $4, review_note = $5
         WHERE vault_id = $6 AND id = $7",
        &[
            &status.as_str(),
            &reviewer.kind.as_str(),
            &reviewer.id,
            &at,
            &note,
            &vault_id,
            &id,
        ],
    )?;
    Ok(())
}

pub(super) fn apply(
    tx: &mut Tx<'_>,
    vault_id: &str,
    id: i64,
    application: &ProposalApplication,
    reviewer: &ActorId,
    at: UnixTime,
) -> TxResult<()> {
    require_pending(tx, vault_id, id, at)?;
    if let Some((merged, started_from)) = &application.services {
        if read_services(tx, vault_id)? != *started_from {
            return Err(
                StoreError::Conflict("a newer version of the vault's services".into()).into(),
            );
        }
        write_services(tx, vault_id, merged, at)?;
    }
    write_credentials(tx, vault_id, &application.put, at)?;
    remove_credentials(tx, vault_id, &application.delete)?;
    mark_reviewed(
        tx,
        vault_id,
        id,
        ProposalStatus::Applied,
        reviewer,
        None,
        at,
    )
}

pub(super) fn reject(
    tx: &mut Tx<'_>,
    vault_id: &str,
    id: i64,
    reviewer: &ActorId,
    reason: Option<&str>,
    at: UnixTime,
) -> TxResult<()> {
    require_pending(tx, vault_id, id, at)?;
    mark_reviewed(
        tx,
        vault_id,
        id,
        ProposalStatus::Rejected,
        reviewer,
        reason,
        at,
    )
}

impl ProposalStore for PostgresStore {
    fn create_proposal(&self, proposal: &Proposal, max_pending: usize) -> Result<i64> {
        self.write("create the proposal", |tx| {
            create(tx, proposal, max_pending)
        })
    }

    fn proposal(&self, vault_id: &str, id: i64) -> Result<Option<Proposal>> {
        self.read("read the proposal", |tx| get(tx, vault_id, id))
    }

    fn proposal_by_approval(&self, approval_hash: &str) -> Result<Option<Proposal>> {
        self.read("read the proposal", |tx| by_approval(tx, approval_hash))
    }

    fn proposals(&self, vault_id: &str) -> Result<Vec<Proposal>> {
        self.read("list the proposals", |tx| list(tx, vault_id))
    }

    fn pending_proposals(&self, at: UnixTime) -> Result<u64> {
        self.read("count the pending proposals", |tx| {
            let row = tx.query_one(
                "SELECT COUNT(*) FROM proposals WHERE status = 'pending' AND expires_at > $1",
                &[&at],
            )?;
            let pending: i64 = column(&row, 0)?;
            Ok(u64::try_from(pending).unwrap_or(0))
        })
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
            apply(tx, vault_id, id, application, reviewer, at)
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
            reject(tx, vault_id, id, reviewer, reason, at)
        })
    }
}
