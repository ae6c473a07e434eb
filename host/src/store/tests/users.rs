//! Tests of users and the rules that span tables: the first owner, the last owner, the
//! last admin of a vault (`sqlite/users.rs`, `roles.rs`, `grants.rs`).

use std::sync::{Arc, Barrier};

use super::*;

fn the_first_owner_is_created_once_and_administers_the_default_vault(backend: Backend) {
    let store = open_store(backend);
    assert!(!store.has_owner().unwrap());

    store
        .create_first_owner(&user("alice", InstanceRole::Member))
        .unwrap();
    assert!(store.has_owner().unwrap());
    assert_eq!(
        store.user("alice").unwrap().unwrap().role,
        InstanceRole::Owner
    );
    assert_eq!(
        store.grants_of(&ActorId::user("alice")).unwrap(),
        [grant(
            ActorId::user("alice"),
            DEFAULT_VAULT_ID,
            VaultRole::Admin
        )]
    );

    assert_eq!(
        store
            .create_first_owner(&user("bob", InstanceRole::Owner))
            .unwrap_err(),
        StoreError::Conflict("an owner".into())
    );
    assert_eq!(store.user("bob").unwrap(), None);
}

fn an_agent_is_renamed_and_its_role_changed_but_the_last_owner_stays(backend: Backend) {
    let store = open_store(backend);
    add_agent(&*store, "ops", InstanceRole::Owner, &[]);
    add_agent(&*store, "bot", InstanceRole::NoAccess, &[]);
    let ops_name = store.agent("ops").unwrap().unwrap().name;
    store.rename_agent("bot", "billing-bot", T0).unwrap();
    assert_eq!(store.agent("bot").unwrap().unwrap().name, "billing-bot");
    assert_eq!(
        store.rename_agent("bot", &ops_name, T0).unwrap_err(),
        StoreError::Conflict(format!("agent {ops_name}"))
    );
    assert_eq!(
        store.rename_agent("nope", "x", T0).unwrap_err(),
        StoreError::NotFound("agent".into())
    );

    store.set_agent_role("bot", InstanceRole::Member).unwrap();
    assert_eq!(
        store.agent("bot").unwrap().unwrap().role,
        InstanceRole::Member
    );
    assert_eq!(
        store
            .set_agent_role("ops", InstanceRole::Member)
            .unwrap_err(),
        StoreError::LastOwner
    );
    store.set_agent_role("bot", InstanceRole::Owner).unwrap();
    store.set_agent_role("ops", InstanceRole::Member).unwrap();
}

fn an_active_owner_agent_counts_as_an_owner(backend: Backend) {
    let store = open_store(backend);
    let mut revoked = agent("old", InstanceRole::Owner);
    revoked.status = AgentStatus::Revoked;
    revoked.revoked_at = Some(T0);
    store
        .create_agent(&revoked, &[], &agent_token("old", "old-token"))
        .unwrap();
    assert!(!store.has_owner().unwrap(), "a revoked agent is no owner");

    add_agent(&*store, "ops", InstanceRole::Owner, &[]);
    assert!(store.has_owner().unwrap());
    assert_eq!(
        store
            .create_first_owner(&user("alice", InstanceRole::Owner))
            .unwrap_err(),
        StoreError::Conflict("an owner".into())
    );
}

fn two_processes_cannot_both_create_the_first_owner(backend: Backend) {
    let store = open_store(backend);
    let stores = [store.reopen(), store.reopen()];
    let start = Arc::new(Barrier::new(2));
    let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .zip(["alice", "bob"])
            .map(|(store, name)| {
                let start = start.clone();
                scope.spawn(move || {
                    start.wait();
                    store.create_first_owner(&user(name, InstanceRole::Owner))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let conflicts = outcomes
        .iter()
        .filter(|outcome| **outcome == Err(StoreError::Conflict("an owner".into())))
        .count();
    assert_eq!(outcomes.iter().filter(|outcome| outcome.is_ok()).count(), 1);
    assert_eq!(conflicts, 1);
    assert_eq!(stores[0].users().unwrap().len(), 1);
}

fn users_are_found_by_id_and_email(backend: Backend) {
    let store = store_with_owner(backend);
    let bob = add_user(&*store, "bob", InstanceRole::Member);
    assert_eq!(store.user("bob").unwrap(), Some(bob.clone()));
    assert_eq!(
        store.user_by_email("bob@example.com").unwrap(),
        Some(bob.clone())
    );
    assert_eq!(
        store.user_by_email("Bob@Example.com").unwrap(),
        Some(bob.clone())
    );
    let emails: Vec<String> = store
        .users()
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(emails, ["alice@example.com", "bob@example.com"]);

    store
        .insert_token(&login_token("bob", "bob-login", T0, 3600))
        .unwrap();
    store
        .insert_token(&login_token("alice", "alice-login", T0, 3600))
        .unwrap();
    store.set_user_password("bob", "$argon2id$new").unwrap();
    assert_eq!(
        store.user("bob").unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert!(
        store.user_sessions("bob").unwrap().is_empty(),
        "a new password ends the user's login sessions"
    );
    assert_eq!(store.user_sessions("alice").unwrap().len(), 1);
    store.set_user_role("bob", InstanceRole::NoAccess).unwrap();
    assert_eq!(
        store.user("bob").unwrap().unwrap().role,
        InstanceRole::NoAccess
    );

    let not_found = StoreError::NotFound("user".into());
    assert_eq!(store.user("nope").unwrap(), None);
    assert_eq!(store.set_user_password("nope", "x").unwrap_err(), not_found);
    assert_eq!(
        store
            .set_user_role("nope", InstanceRole::Member)
            .unwrap_err(),
        not_found
    );
    assert_eq!(store.delete_user("nope").unwrap_err(), not_found);
}

fn the_last_owner_cannot_be_demoted(backend: Backend) {
    let store = store_with_owner(backend);
    for role in [InstanceRole::Member, InstanceRole::NoAccess] {
        assert_eq!(
            store.set_user_role("alice", role).unwrap_err(),
            StoreError::LastOwner
        );
    }
    assert_eq!(
        store.user("alice").unwrap().unwrap().role,
        InstanceRole::Owner
    );
    store.set_user_role("alice", InstanceRole::Owner).unwrap();

    add_user(&*store, "bob", InstanceRole::Owner);
    store.set_user_role("alice", InstanceRole::Member).unwrap();
    assert_eq!(
        store
            .set_user_role("bob", InstanceRole::Member)
            .unwrap_err(),
        StoreError::LastOwner
    );

    // An active owner agent is an owner too.
    add_agent(&*store, "ops", InstanceRole::Owner, &[]);
    store.set_user_role("bob", InstanceRole::Member).unwrap();
    assert!(store.has_owner().unwrap());
}

fn the_last_owner_cannot_be_deleted(backend: Backend) {
    let store = store_with_owner(backend);
    assert_eq!(
        store.delete_user("alice").unwrap_err(),
        StoreError::LastOwner
    );
    assert!(store.user("alice").unwrap().is_some());

    add_user(&*store, "bob", InstanceRole::Owner);
    store
        .set_grant(&grant(
            ActorId::user("bob"),
            DEFAULT_VAULT_ID,
            VaultRole::Admin,
        ))
        .unwrap();
    store.delete_user("alice").unwrap();
    assert_eq!(store.user("alice").unwrap(), None);
    assert_eq!(store.delete_user("bob").unwrap_err(), StoreError::LastOwner);
}

fn the_last_owner_agent_cannot_be_revoked_or_deleted(backend: Backend) {
    let store = open_store(backend);
    add_agent(&*store, "ops", InstanceRole::Owner, &[]);
    assert_eq!(
        store.revoke_agent("ops", T0).unwrap_err(),
        StoreError::LastOwner
    );
    assert_eq!(
        store.delete_agent("ops").unwrap_err(),
        StoreError::LastOwner
    );
    assert_eq!(
        store.agent("ops").unwrap().unwrap().status,
        AgentStatus::Active
    );
    assert!(store.token("ops-token").unwrap().is_some());

    add_agent(&*store, "ops2", InstanceRole::Owner, &[]);
    store.revoke_agent("ops", T0).unwrap();
    assert_eq!(
        store.revoke_agent("ops2", T0).unwrap_err(),
        StoreError::LastOwner
    );
    assert_eq!(
        store.delete_agent("ops2").unwrap_err(),
        StoreError::LastOwner
    );
    // A revoked owner agent no longer counts, so deleting it takes no owner away.
    store.delete_agent("ops").unwrap();
    assert_eq!(store.agent("ops").unwrap(), None);
}

fn the_last_admin_of_a_vault_cannot_be_demoted_or_removed(backend: Backend) {
    let store = store_with_owner(backend);
    let alice = ActorId::user("alice");
    for role in [VaultRole::Member, VaultRole::Proxy] {
        assert_eq!(
            store
                .set_grant(&grant(alice.clone(), DEFAULT_VAULT_ID, role))
                .unwrap_err(),
            StoreError::LastAdmin
        );
    }
    assert_eq!(
        store.remove_grant(&alice, DEFAULT_VAULT_ID).unwrap_err(),
        StoreError::LastAdmin
    );
    assert_eq!(
        roles_in(&*store, DEFAULT_VAULT_ID),
        [(alice.clone(), VaultRole::Admin)]
    );

    add_user(&*store, "bob", InstanceRole::Member);
    let bob = ActorId::user("bob");
    store
        .set_grant(&grant(bob.clone(), DEFAULT_VAULT_ID, VaultRole::Member))
        .unwrap();
    store
        .set_grant(&grant(bob.clone(), DEFAULT_VAULT_ID, VaultRole::Admin))
        .unwrap();
    store
        .set_grant(&grant(alice.clone(), DEFAULT_VAULT_ID, VaultRole::Proxy))
        .unwrap();
    store.remove_grant(&alice, DEFAULT_VAULT_ID).unwrap();
    assert_eq!(
        roles_in(&*store, DEFAULT_VAULT_ID),
        [(bob.clone(), VaultRole::Admin)]
    );
    assert_eq!(
        store.remove_grant(&bob, DEFAULT_VAULT_ID).unwrap_err(),
        StoreError::LastAdmin
    );

    assert_eq!(
        store.remove_grant(&alice, DEFAULT_VAULT_ID).unwrap_err(),
        StoreError::NotFound("grant".into())
    );
    assert_eq!(
        store
            .set_grant(&grant(
                ActorId::agent("ghost"),
                DEFAULT_VAULT_ID,
                VaultRole::Proxy
            ))
            .unwrap_err(),
        StoreError::NotFound("agent".into())
    );
    assert_eq!(
        store
            .set_grant(&grant(alice, "nope", VaultRole::Proxy))
            .unwrap_err(),
        StoreError::NotFound("vault".into())
    );
}

fn deleting_the_last_admin_of_a_vault_is_refused(backend: Backend) {
    let store = store_with_owner(backend);
    add_user(&*store, "bob", InstanceRole::Member);
    let bob = ActorId::user("bob");
    let payments = store.create_vault("payments", Some(&bob)).unwrap();
    let ci = store.create_vault("ci", None).unwrap();
    add_agent(
        &*store,
        "deployer",
        InstanceRole::Member,
        &[(&ci.id, VaultRole::Admin)],
    );

    assert_eq!(store.delete_user("bob").unwrap_err(), StoreError::LastAdmin);
    assert_eq!(
        store.delete_agent("deployer").unwrap_err(),
        StoreError::LastAdmin
    );
    assert!(store.user("bob").unwrap().is_some());
    assert!(store.agent("deployer").unwrap().is_some());

    // Once someone else administers the vaults, both can go.
    let alice = ActorId::user("alice");
    store
        .set_grant(&grant(alice.clone(), &payments.id, VaultRole::Admin))
        .unwrap();
    store
        .set_grant(&grant(alice.clone(), &ci.id, VaultRole::Admin))
        .unwrap();
    store.delete_user("bob").unwrap();
    store.delete_agent("deployer").unwrap();
    assert_eq!(
        roles_in(&*store, &payments.id),
        [(alice.clone(), VaultRole::Admin)]
    );
    assert_eq!(roles_in(&*store, &ci.id), [(alice, VaultRole::Admin)]);
}

fn deleting_a_user_takes_its_grants_sessions_and_minted_tokens(backend: Backend) {
    let store = store_with_owner(backend);
    add_user(&*store, "bob", InstanceRole::Member);
    let bob = ActorId::user("bob");
    store
        .set_grant(&grant(bob.clone(), DEFAULT_VAULT_ID, VaultRole::Member))
        .unwrap();
    store
        .insert_token(&login_token("bob", "bob-login", T0, 3600))
        .unwrap();
    store
        .insert_token(&scoped_token(
            DEFAULT_VAULT_ID,
            "bobs",
            Some(bob.clone()),
            None,
        ))
        .unwrap();
    store
        .insert_token(&scoped_token(
            DEFAULT_VAULT_ID,
            "alices",
            Some(ActorId::user("alice")),
            None,
        ))
        .unwrap();

    store.delete_user("bob").unwrap();
    assert_eq!(store.user("bob").unwrap(), None);
    assert!(store.grants_of(&bob).unwrap().is_empty());
    assert!(store.user_sessions("bob").unwrap().is_empty());
    assert_eq!(store.token("bob-login").unwrap(), None);
    assert_eq!(store.token("bobs").unwrap(), None);
    assert!(store.token("alices").unwrap().is_some());
}

backend_tests!(
    the_first_owner_is_created_once_and_administers_the_default_vault,
    an_agent_is_renamed_and_its_role_changed_but_the_last_owner_stays,
    an_active_owner_agent_counts_as_an_owner,
    two_processes_cannot_both_create_the_first_owner,
    users_are_found_by_id_and_email,
    the_last_owner_cannot_be_demoted,
    the_last_owner_cannot_be_deleted,
    the_last_owner_agent_cannot_be_revoked_or_deleted,
    the_last_admin_of_a_vault_cannot_be_demoted_or_removed,
    deleting_the_last_admin_of_a_vault_is_refused,
    deleting_a_user_takes_its_grants_sessions_and_minted_tokens,
);
