//! The users page, the invite link's page and the instance page: an owner invites someone,
//! who sets a password at `/invite/{token}` and is signed in; an owner changes a role and
//! removes a person; an owner changes the instance's settings and finds the transparent
//! proxy's CA. And what others try: a member posting the owners' forms, a wrong or used
//! invite link, an invite link looked for again after it was shown.

use serde_json::json;

use super::Web;
use super::people::{self, OWNER, PASSWORD, logged, person, shown_once};
use crate::support::{DataDir, Server};

const INVITED: &str = "new.person@example.com";

/// The instance role of the person `email`, as the API lists it.
fn role_of(server: &Server, token: &str, email: &str) -> Option<String> {
    let (_, listed) = server.call("GET", "/v1/users", Some(token), None);
    listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["email"] == email)
        .map(|user| user["role"].as_str().unwrap().to_owned())
}

#[test]
fn an_invited_person_sets_a_password_on_the_link_and_is_signed_in() {
    let data = DataDir::new();
    let server = people::logging_server(&data);
    let (mut owner, _) = people::owner(&server);

    owner.get("/users");
    let invited = owner.submit("/users/invites", &[("email", INVITED), ("role", "member")]);
    assert_eq!(invited.status, 200, "{}", invited.text());
    let link = shown_once(&invited, "invite-link");
    let path = &link[link.find("/invite/").expect("an invite link")..];
    let list = owner.get("/users");
    assert!(list.shows(INVITED), "{}", list.text());
    assert!(
        !list.body.contains(&path["/invite/".len()..]),
        "the link shown again"
    );

    let mut newcomer = Web::new(&server);
    let page = newcomer.get(path);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.shows("Accept your invite"), "{}", page.text());
    assert!(
        !page.shows(INVITED),
        "the page says nothing of the invite before the form"
    );
    let differ = newcomer.post_plain(path, &[("password", PASSWORD), ("confirm", "other")]);
    assert_eq!(differ.status, 400, "{}", differ.text());
    assert!(
        differ.shows("The two passwords differ."),
        "{}",
        differ.text()
    );
    let accepted = newcomer.post_plain(path, &[("password", PASSWORD), ("confirm", PASSWORD)]);
    assert_eq!((accepted.status, accepted.location()), (303, "/"));
    let home = newcomer.get("/");
    assert_eq!(home.status, 200, "{}", home.text());
    assert!(
        home.shows(INVITED),
        "signed in as the new person: {}",
        home.text()
    );
    Web::sign_in(&server, INVITED, PASSWORD);

    // The link again, and a link that never was: each says so, and names no one.
    let mut stranger = Web::new(&server);
    let used = stranger.post_plain(path, &[("password", PASSWORD), ("confirm", PASSWORD)]);
    assert_eq!(used.status, 410, "{}", used.text());
    assert!(
        used.shows("This invite was already used; ask for a new one"),
        "{}",
        used.text()
    );
    assert!(!used.shows(INVITED), "{}", used.text());
    let wrong = stranger.post_plain(
        "/invite/av_uinv_not-a-real-one",
        &[("password", PASSWORD), ("confirm", PASSWORD)],
    );
    assert_eq!(wrong.status, 404, "{}", wrong.text());
    assert!(wrong.shows("Invite not found"), "{}", wrong.text());
    assert_eq!(stranger.cookie("av_session"), None);

    // Another site's form cannot accept an invite for someone.
    owner.get("/users");
    let second = owner.submit(
        "/users/invites",
        &[("email", "third@example.com"), ("role", "")],
    );
    let second_link = shown_once(&second, "invite-link");
    let second_path = &second_link[second_link.find("/invite/").unwrap()..];
    let forged = stranger.post_with(
        second_path,
        &[("password", PASSWORD), ("confirm", PASSWORD)],
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(forged.status, 403, "{}", forged.text());

    assert!(
        !logged(&server, &path["/invite/".len()..]),
        "the invite link is in the log"
    );
}

#[test]
fn an_owner_changes_a_persons_role_removes_them_and_revokes_an_invite() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (mut owner, token) = people::owner(&server);
    let mut member = person(&server, &token, "member@example.com", "member");

    owner.get("/users");
    let changed = owner.submit("/users/member%40example.com/role", &[("role", "no-access")]);
    assert!(
        changed.shows("member@example.com now has the no-access role."),
        "{}",
        changed.text()
    );
    assert_eq!(
        role_of(&server, &token, "member@example.com").as_deref(),
        Some("no-access")
    );

    let removed = owner.submit("/users/member%40example.com/remove", &[]);
    assert!(
        removed.shows("member@example.com was removed."),
        "{}",
        removed.text()
    );
    let after = member.get("/");
    assert_eq!(after.status, 303, "a removed person is signed out");

    owner.get("/users");
    owner.submit("/users/invites", &[("email", INVITED), ("role", "member")]);
    let (_, invites) = server.call(
        "GET",
        "/v1/users/invites?status=pending",
        Some(&token),
        None,
    );
    let id = invites["invites"][0]["id"].as_str().unwrap().to_owned();
    let revoked = owner.submit(&format!("/users/invites/{id}/revoke"), &[]);
    assert!(
        revoked.shows(&format!("Invite for {INVITED} revoked")),
        "{}",
        revoked.text()
    );
    assert!(revoked.shows("No invite is waiting."), "{}", revoked.text());
}

#[test]
fn a_member_cannot_use_the_owners_forms() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (_, token) = people::owner(&server);
    let mut member = person(&server, &token, "member@example.com", "member");

    let page = member.get("/users");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        !page.body.contains("/users/owner%40example.com/role"),
        "{}",
        page.body
    );
    let refused = member.submit("/users/owner%40example.com/role", &[("role", "no-access")]);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.shows("Owner role required"), "{}", refused.text());
    let refused = member.submit("/users/owner%40example.com/remove", &[]);
    assert_eq!(refused.status, 403, "{}", refused.text());
    let refused = member.submit(
        "/users/invites",
        &[("email", "x@example.com"), ("role", "owner")],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.shows("Owner role required"), "{}", refused.text());

    let settings = member.get("/manage/settings");
    assert_eq!(settings.status, 403, "{}", settings.text());
    assert!(
        !member.get("/").body.contains("/manage/settings"),
        "the Instance link is for owners"
    );
    let refused = member.submit(
        "/manage/settings",
        &[("agents_can_approve_proposals", "on")],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());

    assert_eq!(role_of(&server, &token, OWNER).as_deref(), Some("owner"));
    let (_, settings) = server.call("GET", "/v1/admin/settings", Some(&token), None);
    assert_eq!(settings["agents_can_approve_proposals"], json!(false));
    let (_, invites) = server.call(
        "GET",
        "/v1/users/invites?status=pending",
        Some(&token),
        None,
    );
    assert_eq!(invites["invites"], json!([]), "no invite was made");
}

#[test]
fn an_owner_changes_the_instance_settings_and_finds_the_proxys_ca() {
    let data = DataDir::new();
    let server = Server::start_with(
        &data,
        &["--mitm-port", "auto"],
        &[(
            "AGENT_VAULT_MASTER_PASSWORD",
            crate::support::MASTER_PASSWORD,
        )],
    );
    let (mut owner, token) = people::owner(&server);

    let page = owner.get("/manage/settings");
    assert_eq!(page.status, 200, "{}", page.text());
    let port = server
        .transparent
        .as_ref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    assert!(
        page.shows(&format!("Listening on port {port}")),
        "{}",
        page.text()
    );
    // The rate limits in force, read only: the server started with the default profile.
    assert!(page.shows("Profile default"), "{}", page.text());
    assert!(
        page.shows("proxy each token's requests 20 per second 200 64 2000 ms"),
        "{}",
        page.text()
    );
    assert!(
        page.shows("auth sign-in attempts per client address 10 per minute 50"),
        "{}",
        page.text()
    );
    let ca = owner.get("/v1/mitm/ca.pem");
    assert!(
        ca.body.starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        ca.body
    );
    assert!(
        page.body.contains("href=\"/v1/mitm/ca.pem\""),
        "{}",
        page.body
    );

    let saved = owner.submit(
        "/manage/settings",
        &[("agents_can_approve_proposals", "on")],
    );
    assert!(saved.shows("Settings saved."), "{}", saved.text());
    assert!(saved.body.contains(" checked"), "{}", saved.body);
    let (_, settings) = server.call("GET", "/v1/admin/settings", Some(&token), None);
    assert_eq!(settings["agents_can_approve_proposals"], json!(true));
    owner.submit("/manage/settings", &[]);
    let (_, settings) = server.call("GET", "/v1/admin/settings", Some(&token), None);
    assert_eq!(settings["agents_can_approve_proposals"], json!(false));

    // Without the transparent proxy, the page says it is off.
    let data = DataDir::new();
    let server = Server::start(&data);
    let (mut owner, _) = people::owner(&server);
    let page = owner.get("/manage/settings");
    assert!(
        page.shows("The transparent proxy is off on this server"),
        "{}",
        page.text()
    );
}
