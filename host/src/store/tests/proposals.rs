//! Tests of proposals (`sqlite/proposals.rs`, `postgres/proposals.rs`).

use super::*;
use crate::store::{
    ActorId, Proposal, ProposalApplication, ProposalStatus, StoreError, StoredCredential,
};

pub(crate) fn proposal(approval: &str) -> Proposal {
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

pub(crate) fn alice() -> ActorId {
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

fn ids_count_up_per_vault(backend: Backend) {
    let store = store_with_owner(backend);
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

fn at_most_the_cap_are_pending_and_expired_ones_do_not_count(backend: Backend) {
    let store = store_with_owner(backend);
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

fn applying_writes_services_and_credentials_and_happens_once(backend: Backend) {
    let store = store_with_owner(backend);
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

fn applying_over_changed_services_writes_nothing(backend: Backend) {
    let store = store_with_owner(backend);
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

fn an_expired_proposal_can_be_neither_applied_nor_rejected(backend: Backend) {
    let store = store_with_owner(backend);
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

backend_tests!(
    ids_count_up_per_vault,
    at_most_the_cap_are_pending_and_expired_ones_do_not_count,
    applying_writes_services_and_credentials_and_happens_once,
    applying_over_changed_services_writes_nothing,
    an_expired_proposal_can_be_neither_applied_nor_rejected,
);
