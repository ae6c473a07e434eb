//! The agents page: a person creates an agent and hands it the token shown once, rotates
//! it, revokes it, renames and deletes it; and what others try: a member changing an
//! agent's instance role, a token looked for again after it was shown.

use serde_json::json;

use super::people::{self, logged, person, shown_once};
use crate::support::{DataDir, Server};

/// The status of the agent `name` as the API lists it to `token`'s holder.
fn status_of(server: &Server, token: &str, name: &str) -> Option<String> {
    let (_, listed) = server.call("GET", "/v1/agents", Some(token), None);
    listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|agent| agent["name"] == name)
        .map(|agent| agent["status"].as_str().unwrap().to_owned())
}

#[test]
fn an_agent_made_in_the_console_gets_its_token_once_and_loses_it_on_rotate_and_revoke() {
    let data = DataDir::new();
    let server = people::logging_server(&data);
    let (mut owner, token) = people::owner(&server);

    let page = owner.get("/agents");
    assert!(page.shows("No agents yet."), "{}", page.text());
    let created = owner.submit(
        "/agents",
        &[("name", "research-bot"), ("role", "no-access")],
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let first = shown_once(&created, "agent-token");
    let (status, me) = server.call("GET", "/v1/auth/me", Some(&first), None);
    assert_eq!(
        (status, me["agent_name"].as_str()),
        (200, Some("research-bot")),
        "{me}"
    );

    let list = owner.get("/agents");
    assert!(list.shows("research-bot active"), "{}", list.text());
    assert!(!list.body.contains(&first), "the token shown again");

    let rotated = owner.submit("/agents/research-bot/rotate", &[]);
    assert!(
        rotated.shows("Its old token no longer works."),
        "{}",
        rotated.text()
    );
    let second = shown_once(&rotated, "agent-token");
    assert_ne!(first, second);
    let (status, _) = server.call("GET", "/v1/auth/me", Some(&first), None);
    assert_eq!(status, 401, "the old token after rotating");
    let (status, _) = server.call("GET", "/v1/auth/me", Some(&second), None);
    assert_eq!(status, 200);

    let revoked = owner.submit("/agents/research-bot/revoke", &[]);
    assert!(
        revoked.shows(
            "Agent research-bot revoked; its token and the sessions it minted no longer work"
        ),
        "{}",
        revoked.text()
    );
    assert!(revoked.shows("research-bot revoked"), "{}", revoked.text());
    let (status, _) = server.call("GET", "/v1/auth/me", Some(&second), None);
    assert_eq!(status, 401, "a revoked agent's next call");

    let renamed = owner.submit("/agents/research-bot/rename", &[("name", "old-bot")]);
    assert!(
        renamed.shows("Agent research-bot is now old-bot"),
        "{}",
        renamed.text()
    );
    let deleted = owner.submit("/agents/old-bot/delete", &[]);
    assert!(deleted.shows("Agent old-bot deleted"), "{}", deleted.text());
    assert_eq!(status_of(&server, &token, "old-bot"), None);

    assert!(
        !logged(&server, &first) && !logged(&server, &second),
        "a token in the log"
    );
}

#[test]
fn a_refused_name_is_said_and_kept_and_markup_stays_text() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (mut owner, _) = people::owner(&server);
    owner.get("/agents");
    let refused = owner.submit("/agents", &[("name", "<script>bad</script>"), ("role", "")]);
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(!refused.body.contains("<script>bad"), "{}", refused.body);
    assert!(
        refused
            .body
            .contains("value=\"&#60;script&#62;bad&#60;/script&#62;\""),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("id=\"agent-token\""));
}

#[test]
fn a_member_cannot_change_an_agents_instance_role() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (_, token) = people::owner(&server);
    let (status, _) = server.call(
        "POST",
        "/v1/agents",
        Some(&token),
        Some(&json!({ "name": "owners-bot" })),
    );
    assert_eq!(status, 201);
    let mut member = person(&server, &token, "member@example.com", "member");

    let page = member.get("/agents");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        !page.shows("owners-bot"),
        "another's agent: {}",
        page.text()
    );
    let refused = member.submit("/agents/owners-bot/role", &[("role", "owner")]);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.shows("Owner role required"), "{}", refused.text());
    let refused = member.submit("/agents/owners-bot/rotate", &[]);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.shows("Only the agent's creator or an owner can manage it"),
        "{}",
        refused.text()
    );
    assert!(!refused.body.contains("av_agt_"), "{}", refused.body);
    let (_, agent) = server.call("GET", "/v1/agents/owners-bot", Some(&token), None);
    assert_eq!(agent["role"], "no-access", "{agent}");
    assert_eq!(
        status_of(&server, &token, "owners-bot").as_deref(),
        Some("active")
    );
}
