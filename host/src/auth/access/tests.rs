//! Tests of who may review a proposal: people, agents, sessions (access.rs).

use super::*;
use crate::store::{Agent, AgentStatus, User};

fn person(id: &str) -> Actor {
    Actor::User(User {
        id: id.into(),
        email: format!("{id}@example.com"),
        role: InstanceRole::Member,
        password_hash: String::new(),
        created_at: 0,
    })
}

fn agent(id: &str) -> Actor {
    Actor::Agent(Agent {
        id: id.into(),
        name: id.into(),
        role: InstanceRole::Member,
        status: AgentStatus::Active,
        created_by: None,
        created_at: 0,
        revoked_at: None,
    })
}

fn from(creator: &ActorId, through_session: bool) -> Origin<'_> {
    Origin {
        created_by: Some(creator),
        through_session,
    }
}

use Review::{Approve, Reject};
use VaultRole::{Admin, Member};

#[test]
fn people_review_what_others_proposed() {
    let bot = ActorId::agent("bot");
    for role in [Member, Admin] {
        for review in [Approve, Reject] {
            for through_session in [false, true] {
                let origin = from(&bot, through_session);
                assert_eq!(
                    check_review(&person("alice"), role, origin, review, false),
                    Ok(())
                );
            }
        }
    }
}

#[test]
fn agents_review_only_when_an_owner_allows_it_and_never_their_own() {
    let other = ActorId::agent("other");
    let origin = from(&other, false);
    assert_eq!(
        check_review(&agent("bot"), Admin, origin, Approve, false),
        Err(Denied::ReviewIsForPeople)
    );
    assert_eq!(
        check_review(&agent("bot"), Member, origin, Approve, true),
        Ok(())
    );
    let own = ActorId::agent("bot");
    for through_session in [false, true] {
        for role in [Member, Admin] {
            assert_eq!(
                check_review(
                    &agent("bot"),
                    role,
                    from(&own, through_session),
                    Approve,
                    true
                ),
                Err(Denied::OwnProposal)
            );
        }
    }
}

#[test]
fn a_vault_session_never_reviews_whoever_minted_it() {
    let session = Actor::Scoped {
        vault_id: "v".into(),
        role: VaultRole::Proxy,
        created_by: Some(ActorId::user("alice")),
    };
    let bot = ActorId::agent("bot");
    assert_eq!(
        check_review(&session, Admin, from(&bot, false), Approve, true),
        Err(Denied::SessionCannotReview)
    );
}

#[test]
fn a_person_reviews_what_came_through_their_session_only_as_an_admin() {
    let alice = ActorId::user("alice");
    assert_eq!(
        check_review(&person("alice"), Admin, from(&alice, true), Approve, false),
        Ok(())
    );
    assert_eq!(
        check_review(&person("alice"), Member, from(&alice, true), Approve, false),
        Err(Denied::OwnProposal)
    );
    assert_eq!(
        check_review(&person("alice"), Admin, from(&alice, false), Approve, false),
        Err(Denied::OwnProposal),
        "a proposal a user made directly is theirs, admin or not"
    );
}

#[test]
fn a_proposal_without_a_creator_is_rejected_never_approved() {
    let unknown = Origin {
        created_by: None,
        through_session: true,
    };
    assert_eq!(
        check_review(&person("alice"), Admin, unknown, Approve, false),
        Err(Denied::UnknownProposer)
    );
    assert_eq!(
        check_review(&person("alice"), Admin, unknown, Reject, false),
        Ok(())
    );
    assert_eq!(
        check_review(&agent("bot"), Admin, unknown, Reject, true),
        Ok(())
    );
}
