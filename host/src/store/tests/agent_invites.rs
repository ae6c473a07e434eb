//! Tests of agent invites (`sqlite/agent_invites.rs`, `postgres/agent_invites.rs`).

use std::sync::{Arc, Barrier};

use super::*;
use crate::store::{
    ActorId, AgentInvite, AgentInviteStatus, AgentStatus, InstanceRole, Store, StoreError,
    VaultRole,
};

fn invite(hash: &str, name: &str, vaults: &[(&str, VaultRole)]) -> AgentInvite {
    AgentInvite {
        hash: hash.into(),
        agent_name: name.into(),
        role: InstanceRole::Member,
        vaults: vaults
            .iter()
            .map(|(id, role)| (id.to_string(), *role))
            .collect(),
        created_by: Some(ActorId::user("alice")),
        status: AgentInviteStatus::Pending,
        created_at: T0,
        expires_at: T0 + 3600,
        agent_id: None,
        redeemed_at: None,
    }
}

fn not_pending() -> StoreError {
    StoreError::NotFound("pending invite".into())
}

fn an_invite_redeems_once_into_the_agent_it_names(backend: Backend) {
    let store = store_with_owner(backend);
    let payments = store
        .create_vault("payments", Some(&ActorId::user("alice")))
        .unwrap();
    let pending = invite(
        "inv-1",
        "ci-bot",
        &[
            (DEFAULT_VAULT_ID, VaultRole::Proxy),
            (&payments.id, VaultRole::Member),
        ],
    );
    store.create_agent_invite(&pending).unwrap();
    let mut expected = pending.clone();
    expected.vaults.sort();
    assert_eq!(store.agent_invite("inv-1").unwrap(), Some(expected.clone()));
    assert_eq!(store.agent_invites().unwrap(), [expected]);

    let agent = store
        .redeem_agent_invite("inv-1", "a1", &agent_token("a1", "a1-token"), T0 + 10)
        .unwrap();
    assert_eq!(agent.name, "ci-bot");
    assert_eq!(agent.role, InstanceRole::Member);
    assert_eq!(agent.status, AgentStatus::Active);
    assert_eq!(agent.created_by, Some(ActorId::user("alice")));
    assert_eq!(store.agent_by_name("ci-bot").unwrap(), Some(agent));
    let mut grants = store.grants_of(&ActorId::agent("a1")).unwrap();
    grants.sort_by(|a, b| a.vault_id.cmp(&b.vault_id));
    let mut expected_grants = vec![
        grant(ActorId::agent("a1"), DEFAULT_VAULT_ID, VaultRole::Proxy),
        grant(ActorId::agent("a1"), &payments.id, VaultRole::Member),
    ];
    expected_grants.sort_by(|a, b| a.vault_id.cmp(&b.vault_id));
    assert_eq!(grants, expected_grants);
    assert!(store.token("a1-token").unwrap().is_some());
    let redeemed = store.agent_invite("inv-1").unwrap().unwrap();
    assert_eq!(redeemed.status, AgentInviteStatus::Redeemed);
    assert_eq!(redeemed.agent_id.as_deref(), Some("a1"));
    assert_eq!(redeemed.redeemed_at, Some(T0 + 10));

    assert_eq!(
        store
            .redeem_agent_invite("inv-1", "a2", &agent_token("a2", "a2-token"), T0 + 20)
            .unwrap_err(),
        not_pending()
    );
    assert_eq!(store.agent("a2").unwrap(), None);
    assert_eq!(store.agent_invite("nope").unwrap(), None);

    // Deleting the agent keeps the invite's history but forgets the agent.
    store.delete_agent("a1").unwrap();
    let history = store.agent_invite("inv-1").unwrap().unwrap();
    assert_eq!(history.status, AgentInviteStatus::Redeemed);
    assert_eq!(history.agent_id, None);
}

fn an_expired_or_revoked_invite_cannot_be_redeemed(backend: Backend) {
    let store = store_with_owner(backend);
    store
        .create_agent_invite(&invite("expiring", "late-bot", &[]))
        .unwrap();
    let token = agent_token("a1", "a1-token");
    assert_eq!(
        store
            .redeem_agent_invite("expiring", "a1", &token, T0 + 3600)
            .unwrap_err(),
        not_pending()
    );

    store
        .create_agent_invite(&invite("revoked", "gone-bot", &[]))
        .unwrap();
    store.revoke_agent_invite("revoked").unwrap();
    assert_eq!(
        store.agent_invite("revoked").unwrap().unwrap().status,
        AgentInviteStatus::Revoked
    );
    assert_eq!(
        store
            .redeem_agent_invite("revoked", "a1", &token, T0)
            .unwrap_err(),
        not_pending()
    );
    assert_eq!(
        store.revoke_agent_invite("revoked").unwrap_err(),
        not_pending()
    );
    assert_eq!(
        store.revoke_agent_invite("missing").unwrap_err(),
        not_pending()
    );
    assert!(store.agents().unwrap().is_empty());
}

fn a_name_belongs_to_one_agent_or_one_pending_invite(backend: Backend) {
    let store = store_with_owner(backend);
    add_agent(&*store, "taken", InstanceRole::NoAccess, &[]);
    assert_eq!(
        store
            .create_agent_invite(&invite("inv-taken", "taken-bot", &[]))
            .unwrap_err(),
        StoreError::Conflict("agent taken-bot".into())
    );

    store
        .create_agent_invite(&invite("inv-1", "new-bot", &[]))
        .unwrap();
    let reserved = StoreError::Conflict("a pending invite for agent new-bot".into());
    assert_eq!(
        store
            .create_agent_invite(&invite("inv-2", "new-bot", &[]))
            .unwrap_err(),
        reserved
    );
    let mut direct = agent("direct", InstanceRole::NoAccess);
    direct.name = "new-bot".into();
    direct.created_at = T0 + 1;
    assert_eq!(
        store
            .create_agent(&direct, &[], &agent_token("direct", "direct-token"))
            .unwrap_err(),
        reserved
    );

    // Once the invite has expired the name is free again.
    direct.created_at = T0 + 3600;
    store
        .create_agent(&direct, &[], &agent_token("direct", "direct-token"))
        .unwrap();
}

fn redeeming_is_all_or_nothing(backend: Backend) {
    let store = store_with_owner(backend);
    add_agent(&*store, "old", InstanceRole::NoAccess, &[]);
    store
        .create_agent_invite(&invite(
            "inv-1",
            "new-bot",
            &[(DEFAULT_VAULT_ID, VaultRole::Proxy)],
        ))
        .unwrap();
    // The token collides with an existing one, after the agent row and grant went in.
    let colliding = agent_token("a1", "old-token");
    assert!(
        store
            .redeem_agent_invite("inv-1", "a1", &colliding, T0)
            .is_err()
    );
    assert_eq!(store.agent("a1").unwrap(), None);
    assert!(store.grants_of(&ActorId::agent("a1")).unwrap().is_empty());
    assert_eq!(
        store.agent_invite("inv-1").unwrap().unwrap().status,
        AgentInviteStatus::Pending
    );
    store
        .redeem_agent_invite("inv-1", "a1", &agent_token("a1", "a1-token"), T0)
        .unwrap();
}

fn racing_redemptions_create_one_agent(backend: Backend) {
    let store = store_with_owner(backend);
    store
        .create_agent_invite(&invite("inv-1", "race-bot", &[]))
        .unwrap();
    let stores: Vec<Box<dyn Store>> = (0..4).map(|_| store.reopen()).collect();
    let start = Arc::new(Barrier::new(stores.len()));
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(n, store)| {
                let start = start.clone();
                scope.spawn(move || {
                    let id = format!("a{n}");
                    let token = agent_token(&id, &format!("{id}-token"));
                    start.wait();
                    store.redeem_agent_invite("inv-1", &id, &token, T0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|error| *error == not_pending()),
        "{outcomes:?}"
    );
    assert_eq!(store.agents().unwrap().len(), 1);
}

fn an_invite_dies_with_its_creator(backend: Backend) {
    let store = store_with_owner(backend);
    add_user(&*store, "bob", InstanceRole::Member);
    let mut bobs = invite("by-bob", "bobs-bot", &[]);
    bobs.created_by = Some(ActorId::user("bob"));
    store.create_agent_invite(&bobs).unwrap();
    store
        .create_agent_invite(&invite("by-alice", "alices-bot", &[]))
        .unwrap();
    add_agent(&*store, "maker", InstanceRole::Member, &[]);
    let mut agents = invite("by-agent", "child-bot", &[]);
    agents.created_by = Some(ActorId::agent("maker"));
    store.create_agent_invite(&agents).unwrap();

    store.delete_user("bob").unwrap();
    store.revoke_agent("maker", T0).unwrap();
    let status = |hash: &str| store.agent_invite(hash).unwrap().unwrap().status;
    assert_eq!(status("by-bob"), AgentInviteStatus::Revoked);
    assert_eq!(status("by-agent"), AgentInviteStatus::Revoked);
    assert_eq!(status("by-alice"), AgentInviteStatus::Pending);
}

backend_tests!(
    an_invite_redeems_once_into_the_agent_it_names,
    an_expired_or_revoked_invite_cannot_be_redeemed,
    a_name_belongs_to_one_agent_or_one_pending_invite,
    redeeming_is_all_or_nothing,
    racing_redemptions_create_one_agent,
    an_invite_dies_with_its_creator,
);
