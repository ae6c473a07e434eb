//! Tests of user invites (`sqlite/invites.rs`).

use super::*;

fn an_accepted_invite_creates_the_user_with_its_grants(backend: Backend) {
    let store = store_with_owner(backend);
    let payments = store
        .create_vault("payments", Some(&ActorId::user("alice")))
        .unwrap();
    let bobs_invite = invite(
        "invite-bob",
        "bob@example.com",
        InstanceRole::Member,
        &[
            (DEFAULT_VAULT_ID, VaultRole::Member),
            (&payments.id, VaultRole::Proxy),
        ],
    );
    store.create_invite(&bobs_invite).unwrap();
    let mut expected = bobs_invite.clone();
    expected.vaults.sort();
    assert_eq!(store.invite("invite-bob").unwrap(), Some(expected.clone()));
    assert_eq!(store.invites().unwrap(), [expected]);
    assert_eq!(
        store.create_invite(&bobs_invite).unwrap_err(),
        StoreError::Conflict("invite".into())
    );

    let bob = user("bob", InstanceRole::Member);
    store.accept_invite("invite-bob", &bob).unwrap();
    assert_eq!(store.user("bob").unwrap(), Some(bob.clone()));
    let mut grants = store.grants_of(&ActorId::user("bob")).unwrap();
    grants.sort_by(|a, b| a.vault_id.cmp(&b.vault_id));
    let mut expected_grants = vec![
        grant(ActorId::user("bob"), DEFAULT_VAULT_ID, VaultRole::Member),
        grant(ActorId::user("bob"), &payments.id, VaultRole::Proxy),
    ];
    expected_grants.sort_by(|a, b| a.vault_id.cmp(&b.vault_id));
    assert_eq!(grants, expected_grants);
    assert_eq!(
        store.invite("invite-bob").unwrap().unwrap().status,
        InviteStatus::Accepted
    );

    assert_eq!(
        store
            .accept_invite("invite-bob", &user("bob2", InstanceRole::Member))
            .unwrap_err(),
        StoreError::NotFound("invite".into())
    );
    assert_eq!(store.invite("nope").unwrap(), None);
}

fn an_expired_or_revoked_invite_cannot_be_accepted(backend: Backend) {
    let store = store_with_owner(backend);
    let mut expired = invite(
        "expired",
        "bob@example.com",
        InstanceRole::Member,
        &[(DEFAULT_VAULT_ID, VaultRole::Member)],
    );
    expired.expires_at = now() - 1;
    store.create_invite(&expired).unwrap();
    assert_eq!(
        store
            .accept_invite("expired", &user("bob", InstanceRole::Member))
            .unwrap_err(),
        StoreError::NotFound("invite".into())
    );
    assert_eq!(store.user("bob").unwrap(), None);
    assert!(store.grants_of(&ActorId::user("bob")).unwrap().is_empty());

    store
        .create_invite(&invite(
            "revoked",
            "carol@example.com",
            InstanceRole::Member,
            &[],
        ))
        .unwrap();
    store.revoke_invite("revoked").unwrap();
    assert_eq!(
        store.invite("revoked").unwrap().unwrap().status,
        InviteStatus::Revoked
    );
    assert_eq!(
        store
            .accept_invite("revoked", &user("carol", InstanceRole::Member))
            .unwrap_err(),
        StoreError::NotFound("invite".into())
    );
    assert_eq!(
        store.revoke_invite("revoked").unwrap_err(),
        StoreError::NotFound("invite".into())
    );
    assert_eq!(
        store.revoke_invite("nope").unwrap_err(),
        StoreError::NotFound("invite".into())
    );
}

fn accepting_an_invite_is_all_or_nothing(backend: Backend) {
    let store = store_with_owner(backend);
    let payments = store
        .create_vault("payments", Some(&ActorId::user("alice")))
        .unwrap();
    store
        .create_invite(&invite(
            "again",
            "alice@example.com",
            InstanceRole::Member,
            &[(&payments.id, VaultRole::Member)],
        ))
        .unwrap();
    let mut second_alice = user("alice2", InstanceRole::Member);
    second_alice.email = "alice@example.com".into();

    assert_eq!(
        store.accept_invite("again", &second_alice).unwrap_err(),
        StoreError::Conflict("a user with this email".into())
    );
    assert_eq!(store.user("alice2").unwrap(), None);
    assert!(
        store
            .grants_of(&ActorId::user("alice2"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.invite("again").unwrap().unwrap().status,
        InviteStatus::Pending
    );
}

fn an_invite_to_a_deleted_vault_still_works_for_the_others(backend: Backend) {
    let store = store_with_owner(backend);
    let payments = store
        .create_vault("payments", Some(&ActorId::user("alice")))
        .unwrap();
    store
        .create_invite(&invite(
            "invite-bob",
            "bob@example.com",
            InstanceRole::Member,
            &[
                (DEFAULT_VAULT_ID, VaultRole::Proxy),
                (&payments.id, VaultRole::Member),
            ],
        ))
        .unwrap();
    store.delete_vault(&payments.id).unwrap();

    store
        .accept_invite("invite-bob", &user("bob", InstanceRole::Member))
        .unwrap();
    assert_eq!(
        store.grants_of(&ActorId::user("bob")).unwrap(),
        [grant(
            ActorId::user("bob"),
            DEFAULT_VAULT_ID,
            VaultRole::Proxy
        )]
    );
    assert_eq!(
        store
            .create_invite(&invite(
                "to-nowhere",
                "carol@example.com",
                InstanceRole::Member,
                &[("nope", VaultRole::Proxy)]
            ))
            .unwrap_err(),
        StoreError::NotFound("vault".into())
    );
    assert_eq!(store.invite("to-nowhere").unwrap(), None);
}

backend_tests!(
    an_accepted_invite_creates_the_user_with_its_grants,
    an_expired_or_revoked_invite_cannot_be_accepted,
    accepting_an_invite_is_all_or_nothing,
    an_invite_to_a_deleted_vault_still_works_for_the_others,
);
