//! Tests of agents: creation with grants and a first token, revocation, deletion,
//! rotation (`sqlite/agents.rs`).

use super::*;

fn agents_are_created_with_their_grants_and_first_token(backend: Backend) {
    let store = store_with_owner(backend);
    add_agent(
        &*store,
        "deployer",
        InstanceRole::Member,
        &[(DEFAULT_VAULT_ID, VaultRole::Proxy)],
    );
    let deployer = agent("deployer", InstanceRole::Member);
    assert_eq!(store.agent("deployer").unwrap(), Some(deployer.clone()));
    assert_eq!(
        store.agent_by_name("deployer-bot").unwrap(),
        Some(deployer.clone())
    );
    assert_eq!(store.agents().unwrap(), [deployer]);
    assert_eq!(
        store.grants_of(&ActorId::agent("deployer")).unwrap(),
        [grant(
            ActorId::agent("deployer"),
            DEFAULT_VAULT_ID,
            VaultRole::Proxy
        )]
    );
    assert_eq!(
        store.token("deployer-token").unwrap(),
        Some(agent_token("deployer", "deployer-token"))
    );

    // Same name: nothing of the second agent is kept.
    let mut twin = agent("twin", InstanceRole::Member);
    twin.name = "deployer-bot".into();
    assert_eq!(
        store
            .create_agent(&twin, &[], &agent_token("twin", "twin-token"))
            .unwrap_err(),
        StoreError::Conflict("agent deployer-bot".into())
    );
    assert_eq!(store.token("twin-token").unwrap(), None);

    let grants = [grant(ActorId::agent("lost"), "nope", VaultRole::Proxy)];
    assert_eq!(
        store
            .create_agent(
                &agent("lost", InstanceRole::Member),
                &grants,
                &agent_token("lost", "lost-token")
            )
            .unwrap_err(),
        StoreError::NotFound("vault".into())
    );
    assert_eq!(store.agent("lost").unwrap(), None);
    assert_eq!(store.agent_by_name("nope").unwrap(), None);
}

fn revoking_an_agent_ends_its_tokens_and_the_sessions_it_minted(backend: Backend) {
    let store = store_with_owner(backend);
    add_agent(
        &*store,
        "deployer",
        InstanceRole::Member,
        &[(DEFAULT_VAULT_ID, VaultRole::Member)],
    );
    let minted = scoped_token(
        DEFAULT_VAULT_ID,
        "minted",
        Some(ActorId::agent("deployer")),
        None,
    );
    let alices = scoped_token(
        DEFAULT_VAULT_ID,
        "alices",
        Some(ActorId::user("alice")),
        None,
    );
    store.insert_token(&minted).unwrap();
    store.insert_token(&alices).unwrap();

    store.revoke_agent("deployer", T0 + 5).unwrap();
    let revoked = store.agent("deployer").unwrap().unwrap();
    assert_eq!(revoked.status, AgentStatus::Revoked);
    assert_eq!(revoked.revoked_at, Some(T0 + 5));
    assert_eq!(store.token("deployer-token").unwrap(), None);
    assert_eq!(store.token("minted").unwrap(), None);
    assert_eq!(store.token("alices").unwrap(), Some(alices));
    assert_eq!(
        store.grants_of(&ActorId::agent("deployer")).unwrap().len(),
        1
    );

    store.revoke_agent("deployer", T0 + 9).unwrap();
    assert_eq!(
        store.agent("deployer").unwrap().unwrap().revoked_at,
        Some(T0 + 5)
    );
    assert_eq!(
        store.revoke_agent("nope", T0).unwrap_err(),
        StoreError::NotFound("agent".into())
    );
}

fn deleting_an_agent_takes_its_grants_and_tokens(backend: Backend) {
    let store = store_with_owner(backend);
    add_agent(
        &*store,
        "deployer",
        InstanceRole::Member,
        &[(DEFAULT_VAULT_ID, VaultRole::Member)],
    );
    store
        .insert_token(&scoped_token(
            DEFAULT_VAULT_ID,
            "minted",
            Some(ActorId::agent("deployer")),
            None,
        ))
        .unwrap();

    store.delete_agent("deployer").unwrap();
    assert_eq!(store.agent("deployer").unwrap(), None);
    assert!(
        store
            .grants_of(&ActorId::agent("deployer"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.token("deployer-token").unwrap(), None);
    assert_eq!(store.token("minted").unwrap(), None);
    assert_eq!(
        store.delete_agent("deployer").unwrap_err(),
        StoreError::NotFound("agent".into())
    );
}

fn rotating_an_agent_token_replaces_its_tokens_and_reactivates_it(backend: Backend) {
    let store = store_with_owner(backend);
    add_agent(&*store, "deployer", InstanceRole::Member, &[]);
    store
        .insert_token(&agent_token("deployer", "second"))
        .unwrap();
    store
        .insert_token(&scoped_token(
            DEFAULT_VAULT_ID,
            "minted",
            Some(ActorId::agent("deployer")),
            None,
        ))
        .unwrap();

    store
        .rotate_agent_token("deployer", &agent_token("deployer", "rotated"))
        .unwrap();
    assert_eq!(store.token("deployer-token").unwrap(), None);
    assert_eq!(store.token("second").unwrap(), None);
    assert_eq!(store.token("minted").unwrap(), None);
    assert!(store.token("rotated").unwrap().is_some());

    store.revoke_agent("deployer", T0).unwrap();
    assert_eq!(store.token("rotated").unwrap(), None);
    store
        .rotate_agent_token("deployer", &agent_token("deployer", "again"))
        .unwrap();
    let agent = store.agent("deployer").unwrap().unwrap();
    assert_eq!(
        (agent.status, agent.revoked_at),
        (AgentStatus::Active, None)
    );
    assert!(store.token("again").unwrap().is_some());

    assert_eq!(
        store
            .rotate_agent_token("deployer", &agent_token("other", "x"))
            .unwrap_err(),
        StoreError::Database("a rotated token must be an agent token of that agent".into())
    );
    assert_eq!(
        store
            .rotate_agent_token("ghost", &agent_token("ghost", "x"))
            .unwrap_err(),
        StoreError::NotFound("agent".into())
    );
}

backend_tests!(
    agents_are_created_with_their_grants_and_first_token,
    revoking_an_agent_ends_its_tokens_and_the_sessions_it_minted,
    deleting_an_agent_takes_its_grants_and_tokens,
    rotating_an_agent_token_replaces_its_tokens_and_reactivates_it,
);
