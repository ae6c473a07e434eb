//! Tests of proposals in SQLite (sqlite/proposals.rs).

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
