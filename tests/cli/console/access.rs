//! A vault's "Agents and people", "Tokens" and "Agent invites" tabs: an admin adds a person
//! and an agent and changes their roles; a member mints a token for a sandbox and revokes
//! it; an admin invites an agent. And what others try: a member reaching for the admin's
//! forms, a person outside the vault reaching for its tokens, a label that is markup, a
//! token looked for again after it was shown.

use serde_json::json;

use super::people::{self, OWNER, logged, person, shown_once};

use crate::support::{DataDir, Server};

const MEMBER: &str = "member@example.com";

/// The emails and roles of the people in the vault `default`, as the API lists them, by
/// email.
fn vault_users(server: &Server, token: &str) -> Vec<(String, String)> {
    let (status, listed) = server.call("GET", "/v1/vaults/default/users", Some(token), None);
    assert_eq!(status, 200, "{listed}");
    let mut users: Vec<(String, String)> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| {
            (
                user["email"].as_str().unwrap().to_owned(),
                user["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    users.sort();
    users
}

#[test]
fn an_admin_adds_a_person_and_an_agent_and_changes_their_roles() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (mut owner, token) = people::owner(&server);
    person(&server, &token, MEMBER, "member");
    let (status, _) = server.call(
        "POST",
        "/v1/agents",
        Some(&token),
        Some(&json!({ "name": "research-bot" })),
    );
    assert_eq!(status, 201);

    let page = owner.get("/vaults/default/access");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.shows("No agent uses this vault yet"),
        "{}",
        page.text()
    );

    // A typo: the API's answer shows beside what was typed.
    let typo = owner.submit(
        "/vaults/default/access/users",
        &[("email", "membr@example.com"), ("role", "member")],
    );
    assert_eq!(typo.status, 404, "{}", typo.text());
    assert!(
        typo.shows("User not found: membr@example.com"),
        "{}",
        typo.text()
    );
    assert!(
        typo.body.contains("value=\"membr@example.com\""),
        "{}",
        typo.body
    );

    let added = owner.submit(
        "/vaults/default/access/users",
        &[("email", MEMBER), ("role", "member")],
    );
    assert!(
        added.shows("member@example.com now has access to default."),
        "{}",
        added.text()
    );
    assert!(vault_users(&server, &token).contains(&(MEMBER.into(), "member".into())));

    owner.get("/vaults/default/access");
    let promoted = owner.submit(
        "/vaults/default/access/users/member%40example.com/role",
        &[("role", "admin")],
    );
    assert!(
        promoted.shows("member@example.com is now admin of default."),
        "{}",
        promoted.text()
    );
    assert!(vault_users(&server, &token).contains(&(MEMBER.into(), "admin".into())));

    owner.submit(
        "/vaults/default/access/agents",
        &[("name", "research-bot"), ("role", "proxy")],
    );
    let changed = owner.submit(
        "/vaults/default/access/agents/research-bot/role",
        &[("role", "member")],
    );
    assert!(
        changed.shows("research-bot is now member of default."),
        "{}",
        changed.text()
    );
    let (_, agents) = server.call("GET", "/v1/vaults/default/agents", Some(&token), None);
    assert_eq!(agents["agents"][0]["vault_role"], "member", "{agents}");

    let removed = owner.submit(
        "/vaults/default/access/users/member%40example.com/remove",
        &[],
    );
    assert!(
        removed.shows("member@example.com no longer has access to default."),
        "{}",
        removed.text()
    );
    assert_eq!(
        vault_users(&server, &token),
        vec![(OWNER.into(), "admin".into())]
    );
}

#[test]
fn a_member_of_the_vault_cannot_change_who_has_access() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (_, token) = people::owner(&server);
    let mut member = person(&server, &token, MEMBER, "member");
    let (status, _) = server.call(
        "POST",
        "/v1/vaults/default/users",
        Some(&token),
        Some(&json!({ "email": MEMBER, "role": "member" })),
    );
    assert_eq!(status, 201);

    let page = member.get("/vaults/default/access");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.shows(OWNER), "{}", page.text());
    assert!(
        !page.shows("Add a person"),
        "an admin's forms: {}",
        page.text()
    );

    // Posting the admin's forms anyway: the API refuses, nothing changes.
    let refused = member.submit(
        "/vaults/default/access/users/owner%40example.com/remove",
        &[],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.shows("Admin role required"), "{}", refused.text());
    let refused = member.submit(
        "/vaults/default/access/users/member%40example.com/role",
        &[("role", "admin")],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(
        vault_users(&server, &token),
        vec![
            (MEMBER.into(), "member".into()),
            (OWNER.into(), "admin".into())
        ]
    );
}

#[test]
fn a_token_minted_in_the_console_is_shown_once_works_and_can_be_revoked() {
    let data = DataDir::new();
    let server = people::logging_server(&data);
    let (mut owner, _) = people::owner(&server);

    let page = owner.get("/vaults/default/tokens");
    assert!(page.shows("No active token."), "{}", page.text());
    let label = "<script>alert('label')</script> ci";
    let minted = owner.submit(
        "/vaults/default/tokens",
        &[("label", label), ("ttl", "3600")],
    );
    assert_eq!(minted.status, 200, "{}", minted.text());
    let vault_token = shown_once(&minted, "new-token");
    assert!(vault_token.starts_with("av_sess_"), "{vault_token}");
    assert!(
        shown_once(&minted, "run-token").contains(&format!("AGENT_VAULT_TOKEN={vault_token}")),
        "{}",
        minted.text()
    );

    // The token is the vault's, with the proxy role.
    let (status, me) = server.call("GET", "/v1/auth/me", Some(&vault_token), None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["vault"], "default", "{me}");

    // The list shows the label, escaped, and never the token again.
    let list = owner.get("/vaults/default/tokens");
    assert!(list.shows(label), "{}", list.text());
    assert!(!list.body.contains("<script>alert"), "{}", list.body);
    assert!(list.body.contains("&#60;script&#62;"), "{}", list.body);
    assert!(!list.body.contains(&vault_token));
    assert!(!logged(&server, &vault_token), "the token is in the log");

    // A TTL that is not one of the form's: said so, the label kept.
    let odd = owner.submit("/vaults/default/tokens", &[("label", "odd"), ("ttl", "1")]);
    assert_eq!(odd.status, 400, "{}", odd.text());
    assert!(
        odd.shows("Pick how long the token works from the list."),
        "{}",
        odd.text()
    );
    assert!(odd.body.contains("value=\"odd\""), "{}", odd.body);

    let at = list.body.find("/vaults/default/tokens/").unwrap() + "/vaults/default/tokens/".len();
    let id = &list.body[at..at + list.body[at..].find('/').unwrap()];
    let revoked = owner.submit(&format!("/vaults/default/tokens/{id}/revoke"), &[]);
    assert!(
        revoked.shows("Token revoked; it no longer works."),
        "{}",
        revoked.text()
    );
    assert!(revoked.shows("No active token."), "{}", revoked.text());
    let (status, _) = server.call("GET", "/v1/auth/me", Some(&vault_token), None);
    assert_eq!(status, 401);
}

#[test]
fn a_person_outside_the_vault_cannot_list_or_mint_its_tokens() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (_, token) = people::owner(&server);
    let mut outsider = person(&server, &token, MEMBER, "member");

    let list = outsider.get("/vaults/default/tokens");
    assert_eq!(list.status, 404, "{}", list.text());
    assert!(list.shows("Vault not found: default"), "{}", list.text());
    outsider.get("/");
    let minted = outsider.submit(
        "/vaults/default/tokens",
        &[("label", "mine"), ("ttl", "3600")],
    );
    assert_eq!(minted.status, 403, "{}", minted.text());
    assert!(minted.shows("No access to this vault"), "{}", minted.text());
    assert!(!minted.body.contains("av_sess_"), "{}", minted.body);
    let (_, sessions) = server.call("GET", "/v1/sessions?vault=default", Some(&token), None);
    assert_eq!(sessions["sessions"], json!([]), "nothing was minted");
}

#[test]
fn an_admin_invites_an_agent_and_the_prompt_is_shown_once() {
    let data = DataDir::new();
    let server = people::logging_server(&data);
    let (mut owner, token) = people::owner(&server);

    owner.get("/vaults/default/invites");
    let created = owner.submit(
        "/vaults/default/invites",
        &[("name", "helper-bot"), ("role", "member"), ("ttl", "3600")],
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let prompt = shown_once(&created, "invite-prompt");
    let at = prompt.find("/v1/invites/").expect("a redeem link") + "/v1/invites/".len();
    let invite_token = &prompt[at..at + prompt[at..].find('/').unwrap()];

    let list = owner.get("/vaults/default/invites");
    assert!(list.shows("helper-bot"), "{}", list.text());
    assert!(list.shows("pending"), "{}", list.text());
    assert!(
        !list.body.contains(invite_token),
        "the invite's token shown again"
    );
    assert!(
        !logged(&server, invite_token),
        "the invite's token is in the log"
    );

    // A name the API refuses: said so, with what was typed.
    let refused = owner.submit(
        "/vaults/default/invites",
        &[
            ("name", "<script>x</script>"),
            ("role", "proxy"),
            ("ttl", "3600"),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(!refused.body.contains("<script>x"), "{}", refused.body);

    // The agent redeems it and is in the vault with the role the invite gave.
    let (status, redeemed) = server.call(
        "POST",
        &format!("/v1/invites/{invite_token}/redeem"),
        None,
        None,
    );
    assert_eq!(status, 201, "{redeemed}");
    let (_, agents) = server.call("GET", "/v1/vaults/default/agents", Some(&token), None);
    assert_eq!(agents["agents"][0]["name"], "helper-bot", "{agents}");
    assert_eq!(agents["agents"][0]["vault_role"], "member", "{agents}");

    // Another invite, revoked before it is used: its link no longer works.
    owner.get("/vaults/default/invites");
    let second = owner.submit(
        "/vaults/default/invites",
        &[("name", "later-bot"), ("role", "proxy"), ("ttl", "3600")],
    );
    let prompt = shown_once(&second, "invite-prompt");
    let at = prompt.find("/v1/invites/").unwrap() + "/v1/invites/".len();
    let second_token = prompt[at..at + prompt[at..].find('/').unwrap()].to_owned();
    let list = owner.get("/vaults/default/invites");
    let at = list.body.find("/vaults/default/invites/").unwrap() + "/vaults/default/invites/".len();
    let id = &list.body[at..at + list.body[at..].find('/').unwrap()];
    let revoked = owner.submit(&format!("/vaults/default/invites/{id}/revoke"), &[]);
    assert!(
        revoked.shows("Invite for agent later-bot revoked; its link no longer works"),
        "{}",
        revoked.text()
    );
    let (status, _) = server.call(
        "POST",
        &format!("/v1/invites/{second_token}/redeem"),
        None,
        None,
    );
    assert_eq!(status, 410);
}

#[test]
fn the_tabs_forms_need_the_pages_csrf_token() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (mut owner, token) = people::owner(&server);
    let forged = owner.post_with(
        "/vaults/default/tokens",
        &[("label", "forged"), ("ttl", "3600")],
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    let no_token = owner.post_plain(
        "/vaults/default/access/users/owner%40example.com/remove",
        &[],
    );
    assert_eq!(no_token.status, 403, "{}", no_token.text());
    let (_, sessions) = server.call("GET", "/v1/sessions?vault=default", Some(&token), None);
    assert_eq!(sessions["sessions"], json!([]));
    assert_eq!(
        vault_users(&server, &token),
        vec![(OWNER.into(), "admin".into())]
    );
}
