//! Proposals in SQLite: the `proposals` table. The trait methods of [`super::SqliteStore`]
//! call these inside their transaction.
//!
//! Ids count up per vault (the largest so far plus one, read inside the writing
//! transaction, so two proposals never share one), and the cap on pending proposals is
//! counted in the same transaction. Applying re-checks that the proposal is still pending and
//! that the vault's services are still the ones the merge was computed from, then writes the
//! services, the credentials and the new status together.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{
    Constraint, TxResult, actor_at, actor_columns, query_all, read_services, remove_credentials,
    text_enum, write_credentials, write_services,
};
use crate::store::{ActorId, Proposal, ProposalApplication, ProposalStatus, StoreError, UnixTime};

const COLUMNS: &str = "vault_id, id, status, services_json, credentials_json, message, \
                       user_message, created_by_type, created_by_id, created_by_session, \
                       approval_hash, approval_expires_at, created_at, expires_at, \
                       reviewed_by_type, reviewed_by_id, reviewed_at, review_note";

fn proposal_row(row: &Row<'_>) -> rusqlite::Result<Proposal> {
    Ok(Proposal {
        vault_id: row.get(0)?,
        id: row.get(1)?,
        status: text_enum(row, 2)?,
        services_json: row.get(3)?,
        credentials_json: row.get(4)?,
        message: row.get(5)?,
        user_message: row.get(6)?,
        created_by: actor_at(row, 7, 8)?,
        created_by_session: row.get(9)?,
        approval_hash: row.get(10)?,
        approval_expires_at: row.get(11)?,
        created_at: row.get(12)?,
        expires_at: row.get(13)?,
        reviewed_by: actor_at(row, 14, 15)?,
        reviewed_at: row.get(16)?,
        review_note: row.get(17)?,
    })
}

pub(super) fn create(
    tx: &Transaction<'_>,
    proposal: &Proposal,
    max_pending: usize,
) -> TxResult<i64> {
    let pending: i64 = tx.query_row(
        "SELECT COUNT(*) FROM proposals
         WHERE vault_id = ?1 AND status = 'pending' AND expires_at > ?2",
        params![proposal.vault_id, proposal.created_at],
        |row| row.get(0),
    )?;
    if pending >= max_pending as i64 {
        return Err(StoreError::TooMany(format!("pending proposals (max {max_pending})")).into());
    }
    let id: i64 = tx.query_row(
        "SELECT COALESCE(MAX(id), 0) + 1 FROM proposals WHERE vault_id = ?1",
        [&proposal.vault_id],
        |row| row.get(0),
    )?;
    let (created_by_type, created_by_id) = actor_columns(proposal.created_by.as_ref());
    tx.execute(
        &format!(
            "INSERT INTO proposals ({COLUMNS})
             VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                     NULL, NULL, NULL, NULL)"
        ),
        params![
            proposal.vault_id,
            id,
            proposal.services_json,
            proposal.credentials_json,
            proposal.message,
            proposal.user_message,
            created_by_type,
            created_by_id,
            proposal.created_by_session,
            proposal.approval_hash,
            proposal.approval_expires_at,
            proposal.created_at,
            proposal.expires_at,
        ],
    )
    .on_unique("a proposal with this approval token")
    .on_missing("vault")?;
    Ok(id)
}

pub(super) fn get(tx: &Transaction<'_>, vault_id: &str, id: i64) -> TxResult<Option<Proposal>> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM proposals WHERE vault_id = ?1 AND id = ?2"),
            params![vault_id, id],
            proposal_row,
        )
        .optional()?)
}

pub(super) fn by_approval(tx: &Transaction<'_>, approval_hash: &str) -> TxResult<Option<Proposal>> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM proposals WHERE approval_hash = ?1"),
            [approval_hash],
            proposal_row,
        )
        .optional()?)
}

pub(super) fn list(tx: &Transaction<'_>, vault_id: &str) -> TxResult<Vec<Proposal>> {
    query_all(
        tx,
        &format!("SELECT {COLUMNS} FROM proposals WHERE vault_id = ?1 ORDER BY id DESC"),
        [vault_id],
        proposal_row,
    )
}

/// `NotFound` unless the proposal is pending and unexpired at `at`.
fn require_pending(tx: &Transaction<'_>, vault_id: &str, id: i64, at: UnixTime) -> TxResult<()> {
    let pending = get(tx, vault_id, id)?
        .is_some_and(|p| p.status == ProposalStatus::Pending && p.expires_at > at);
    if pending {
        Ok(())
    } else {
        Err(StoreError::NotFound("pending proposal".into()).into())
    }
}

fn mark_reviewed(
    tx: &Transaction<'_>,
    vault_id: &str,
    id: i64,
    status: ProposalStatus,
    reviewer: &ActorId,
    note: Option<&str>,
    at: UnixTime,
) -> TxResult<()> {
    tx.execute(
        "UPDATE proposals SET status = ?1, reviewed_by_type = ?2, reviewed_by_id = ?3,
                              reviewed_at = ?4, review_note = ?5
         WHERE vault_id = ?6 AND id = ?7",
        params![
            status.as_str(),
            reviewer.kind.as_str(),
            reviewer.id,
            at,
            note,
            vault_id,
            id
        ],
    )?;
    Ok(())
}

pub(super) fn apply(
    tx: &Transaction<'_>,
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
    tx: &Transaction<'_>,
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

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_VAULT_ID;
    use super::super::tests::{T0, scoped_token, sealed, store_with_owner};
    use crate::store::{
        ActorId, Proposal, ProposalApplication, ProposalStatus, Store, StoreError, StoredCredential,
    };

    fn proposal(approval: &str) -> Proposal {
        Proposal {
            vault_id: DEFAULT_VAULT_ID.into(),
            id: 0,
            status: ProposalStatus::Pending,
            services_json: r#"[{"action":"set","name":"stripe"}]"#.into(),
            credentials_json: r#"[{"action":"set","key":"STRIPE_KEY"}]"#.into(),
            message: "I need Stripe".into(),
            user_message: "Please add Stripe".into(),
            created_by: Some(ActorId::agent("bot")),
            created_by_session: None,
            approval_hash: approval.into(),
            approval_expires_at: T0 + 86_400,
            created_at: T0,
            expires_at: T0 + 7 * 86_400,
            reviewed_by: None,
            reviewed_at: None,
            review_note: None,
        }
    }

    fn alice() -> ActorId {
        ActorId::user("alice")
    }

    fn application(services: Option<(&str, Option<&str>)>) -> ProposalApplication {
        ProposalApplication {
            services: services.map(|(new, old)| (new.to_owned(), old.map(str::to_owned))),
            put: vec![StoredCredential {
                key: "STRIPE_KEY".into(),
                sealed: sealed(7),
            }],
            delete: vec!["OLD_KEY".into()],
        }
    }

    #[test]
    fn ids_count_up_per_vault() {
        let (_dir, store) = store_with_owner();
        let team = store.create_vault("team", Some(&alice())).unwrap();
        assert_eq!(store.create_proposal(&proposal("a1"), 20).unwrap(), 1);
        assert_eq!(store.create_proposal(&proposal("a2"), 20).unwrap(), 2);
        let mut elsewhere = proposal("b1");
        elsewhere.vault_id = team.id.clone();
        assert_eq!(store.create_proposal(&elsewhere, 20).unwrap(), 1);

        let stored = store.proposal(DEFAULT_VAULT_ID, 2).unwrap().unwrap();
        assert_eq!(
            stored,
            Proposal {
                id: 2,
                ..proposal("a2")
            }
        );
        assert_eq!(
            store.proposal_by_approval("b1").unwrap().unwrap().vault_id,
            team.id
        );
        let ids: Vec<i64> = store
            .proposals(DEFAULT_VAULT_ID)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, [2, 1]);
        assert_eq!(
            store.create_proposal(&proposal("a1"), 20).unwrap_err(),
            StoreError::Conflict("a proposal with this approval token".into())
        );

        store.delete_vault(&team.id).unwrap();
        assert_eq!(store.proposal_by_approval("b1").unwrap(), None);
    }

    #[test]
    fn at_most_the_cap_are_pending_and_expired_ones_do_not_count() {
        let (_dir, store) = store_with_owner();
        for n in 0..3 {
            store
                .create_proposal(&proposal(&format!("a{n}")), 3)
                .unwrap();
        }
        assert_eq!(
            store.create_proposal(&proposal("a3"), 3).unwrap_err(),
            StoreError::TooMany("pending proposals (max 3)".into())
        );
        store
            .reject_proposal(DEFAULT_VAULT_ID, 1, &alice(), Some("no"), T0 + 1)
            .unwrap();
        assert_eq!(store.create_proposal(&proposal("a3"), 3).unwrap(), 4);
        let mut later = proposal("a4");
        later.created_at = T0 + 7 * 86_400;
        assert_eq!(store.create_proposal(&later, 3).unwrap(), 5);
    }

    #[test]
    fn applying_writes_services_and_credentials_and_happens_once() {
        let (_dir, store) = store_with_owner();
        store
            .put_credentials(
                DEFAULT_VAULT_ID,
                &[StoredCredential {
                    key: "OLD_KEY".into(),
                    sealed: sealed(1),
                }],
            )
            .unwrap();
        store.create_proposal(&proposal("a1"), 20).unwrap();
        store
            .apply_proposal(
                DEFAULT_VAULT_ID,
                1,
                &application(Some(("[merged]", None))),
                &alice(),
                T0 + 5,
            )
            .unwrap();
        assert_eq!(
            store.services(DEFAULT_VAULT_ID).unwrap().as_deref(),
            Some("[merged]")
        );
        assert_eq!(
            store.credential_keys(DEFAULT_VAULT_ID).unwrap(),
            ["STRIPE_KEY"]
        );
        let applied = store.proposal(DEFAULT_VAULT_ID, 1).unwrap().unwrap();
        assert_eq!(applied.status, ProposalStatus::Applied);
        assert_eq!(applied.reviewed_by, Some(alice()));
        assert_eq!(applied.reviewed_at, Some(T0 + 5));

        let again = store.apply_proposal(DEFAULT_VAULT_ID, 1, &application(None), &alice(), T0 + 6);
        assert_eq!(
            again.unwrap_err(),
            StoreError::NotFound("pending proposal".into())
        );
        assert_eq!(
            store
                .reject_proposal(DEFAULT_VAULT_ID, 1, &alice(), None, T0 + 6)
                .unwrap_err(),
            StoreError::NotFound("pending proposal".into())
        );
    }

    #[test]
    fn applying_over_changed_services_writes_nothing() {
        let (_dir, store) = store_with_owner();
        store.set_services(DEFAULT_VAULT_ID, "[now]").unwrap();
        store.create_proposal(&proposal("a1"), 20).unwrap();
        let stale = store.apply_proposal(
            DEFAULT_VAULT_ID,
            1,
            &application(Some(("[merged]", Some("[before]")))),
            &alice(),
            T0,
        );
        assert_eq!(
            stale.unwrap_err(),
            StoreError::Conflict("a newer version of the vault's services".into())
        );
        assert_eq!(
            store.services(DEFAULT_VAULT_ID).unwrap().as_deref(),
            Some("[now]")
        );
        assert!(store.credential_keys(DEFAULT_VAULT_ID).unwrap().is_empty());
        assert_eq!(
            store.proposal(DEFAULT_VAULT_ID, 1).unwrap().unwrap().status,
            ProposalStatus::Pending
        );
    }

    #[test]
    fn upgrading_records_the_minter_of_the_session_an_old_proposal_came_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-vault.db");
        {
            let store = super::super::SqliteStore::open(&path).unwrap();
            let session = scoped_token(DEFAULT_VAULT_ID, "s1", Some(ActorId::agent("bot")), None);
            store.insert_token(&session).unwrap();
            // As proposals through a vault session were stored before creators were
            // recorded: the session's public id, no creator.
            for (approval, session) in [("a1", "pub-s1"), ("a2", "pub-gone"), ("a3", "pub-s1")] {
                store
                    .create_proposal(
                        &Proposal {
                            created_by: None,
                            created_by_session: Some(session.into()),
                            ..proposal(approval)
                        },
                        20,
                    )
                    .unwrap();
            }
            store
                .reject_proposal(DEFAULT_VAULT_ID, 3, &alice(), None, T0 + 1)
                .unwrap();
            // Back to schema version 6, without what later migrations added.
            let connection = store.connection.lock().unwrap();
            connection
                .execute_batch("DROP TABLE device_tokens; DROP TABLE request_log_journal")
                .unwrap();
            connection.pragma_update(None, "user_version", 6).unwrap();
        }
        let store = super::super::SqliteStore::open(&path).unwrap();
        let creator = |id| {
            store
                .proposal(DEFAULT_VAULT_ID, id)
                .unwrap()
                .unwrap()
                .created_by
        };
        assert_eq!(creator(1), Some(ActorId::agent("bot")));
        assert_eq!(creator(2), None, "its session is gone: no one to name");
        assert_eq!(creator(3), Some(ActorId::agent("bot")));
    }

    #[test]
    fn an_expired_proposal_can_be_neither_applied_nor_rejected() {
        let (_dir, store) = store_with_owner();
        store.create_proposal(&proposal("a1"), 20).unwrap();
        let week = T0 + 7 * 86_400;
        assert!(
            store
                .apply_proposal(DEFAULT_VAULT_ID, 1, &application(None), &alice(), week)
                .is_err()
        );
        assert!(
            store
                .reject_proposal(DEFAULT_VAULT_ID, 1, &alice(), None, week)
                .is_err()
        );
        store
            .reject_proposal(DEFAULT_VAULT_ID, 1, &alice(), Some("too late?"), week - 1)
            .unwrap();
        let rejected = store.proposal(DEFAULT_VAULT_ID, 1).unwrap().unwrap();
        assert_eq!(rejected.status, ProposalStatus::Rejected);
        assert_eq!(rejected.review_note.as_deref(), Some("too late?"));
    }
}
