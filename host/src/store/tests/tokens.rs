//! Tests of tokens: login sessions, agent tokens, scoped sessions (`sqlite/tokens.rs`).

use super::*;

fn tokens_are_found_touched_and_deleted(backend: Backend) {
    let store = store_with_owner(backend);
    let login = login_token("alice", "alice-login", T0, 3600);
    store.insert_token(&login).unwrap();
    assert_eq!(store.token("alice-login").unwrap(), Some(login.clone()));
    assert_eq!(
        store.user_sessions("alice").unwrap(),
        std::slice::from_ref(&login)
    );
    assert_eq!(
        store.insert_token(&login).unwrap_err(),
        StoreError::Conflict("token".into())
    );
    assert_eq!(
        store
            .insert_token(&login_token("ghost", "ghost-login", T0, 60))
            .unwrap_err(),
        StoreError::NotFound("user".into())
    );

    store.touch_token("alice-login", T0 + 60).unwrap();
    store.touch_token("alice-login", T0 + 30).unwrap();
    assert_eq!(
        store.token("alice-login").unwrap().unwrap().last_used_at,
        T0 + 60
    );

    store.delete_token("alice-login").unwrap();
    assert_eq!(store.token("alice-login").unwrap(), None);
    let not_found = StoreError::NotFound("token".into());
    assert_eq!(store.delete_token("alice-login").unwrap_err(), not_found);
    assert_eq!(store.touch_token("alice-login", T0).unwrap_err(), not_found);
}

fn scoped_tokens_lists_the_live_sessions_of_one_vault(backend: Backend) {
    let store = store_with_owner(backend);
    let payments = store
        .create_vault("payments", Some(&ActorId::user("alice")))
        .unwrap();
    let alice = Some(ActorId::user("alice"));
    let forever = scoped_token(DEFAULT_VAULT_ID, "forever", alice.clone(), None);
    let later = scoped_token(DEFAULT_VAULT_ID, "later", alice.clone(), Some(T0 + 1));
    for token in [
        forever.clone(),
        later.clone(),
        scoped_token(DEFAULT_VAULT_ID, "ends-now", alice.clone(), Some(T0)),
        scoped_token(&payments.id, "elsewhere", alice.clone(), None),
    ] {
        store.insert_token(&token).unwrap();
    }
    assert_eq!(
        store.scoped_tokens(DEFAULT_VAULT_ID, T0).unwrap(),
        [forever, later]
    );

    assert!(
        !store
            .delete_scoped_token(&payments.id, "pub-forever")
            .unwrap()
    );
    assert!(
        store
            .delete_scoped_token(DEFAULT_VAULT_ID, "pub-forever")
            .unwrap()
    );
    assert!(
        !store
            .delete_scoped_token(DEFAULT_VAULT_ID, "pub-forever")
            .unwrap()
    );
    assert_eq!(store.token("forever").unwrap(), None);
}

fn expired_and_idle_tokens_are_deleted(backend: Backend) {
    let store = store_with_owner(backend);
    add_agent(&*store, "deployer", InstanceRole::Member, &[]);
    let alice = Some(ActorId::user("alice"));
    for token in [
        scoped_token(DEFAULT_VAULT_ID, "expired", alice.clone(), Some(T0 - 1)),
        scoped_token(DEFAULT_VAULT_ID, "valid", alice.clone(), Some(T0 + 60)),
        login_token("alice", "idle", T0 - 61, 60),
        login_token("alice", "just-in-time", T0 - 60, 60),
        login_token("alice", "fresh", T0 - 1, 60),
    ] {
        store.insert_token(&token).unwrap();
    }

    assert_eq!(store.delete_expired_tokens(T0).unwrap(), 2);
    for gone in ["expired", "idle"] {
        assert_eq!(store.token(gone).unwrap(), None, "{gone}");
    }
    for kept in ["valid", "just-in-time", "fresh", "deployer-token"] {
        assert!(store.token(kept).unwrap().is_some(), "{kept}");
    }
}

backend_tests!(
    tokens_are_found_touched_and_deleted,
    scoped_tokens_lists_the_live_sessions_of_one_vault,
    expired_and_idle_tokens_are_deleted,
);
