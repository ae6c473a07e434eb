//! A vault's credentials page: a person sets, rotates, reveals and deletes a credential; a
//! value is seen on the reveal's own answer and nowhere else (no other page, no redirect, no
//! log line); a person whose role does not allow it posts the forms anyway and is refused.
//! Also the people the vault pages' tests share: an owner and invited colleagues with a role
//! in a vault.

use serde_json::{Value, json};

use super::Web;
use crate::support::{DataDir, Server};

pub(super) const OWNER: &str = "owner@example.com";
pub(super) const OWNER_PASSWORD: &str = "owner password";
pub(super) const PASSWORD: &str = "a user password";

/// The owner's API token (signed in over the API, as the CLI would).
pub(super) fn owner_token(server: &Server) -> String {
    let (status, login) = server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": OWNER, "password": OWNER_PASSWORD })),
    );
    assert_eq!(status, 200, "{login}");
    login["token"].as_str().unwrap().to_owned()
}

/// An API call that must succeed.
pub(super) fn api(server: &Server, token: &str, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = server.call(method, path, Some(token), Some(&body));
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    answer
}

/// A colleague invited by the owner, with a role (`member`, `admin`) in a vault or in none,
/// signed in to the console.
pub(super) fn colleague(
    server: &Server,
    owner: &str,
    email: &str,
    vault_role: Option<(&str, &str)>,
) -> Web {
    let vaults = match vault_role {
        Some((vault, role)) => json!([{ "vault_name": vault, "vault_role": role }]),
        None => json!([]),
    };
    let invite = api(
        server,
        owner,
        "POST",
        "/v1/users/invites",
        json!({ "email": email, "role": "member", "vaults": vaults }),
    );
    let token = invite["token"].as_str().unwrap();
    let (status, accepted) = server.call(
        "POST",
        &format!("/v1/users/invites/{token}/accept"),
        None,
        Some(&json!({ "password": PASSWORD })),
    );
    assert_eq!(status, 200, "{accepted}");
    Web::sign_in(server, email, PASSWORD)
}

/// The server's log lines until one holds every one of `needles`, added to `seen`.
pub(super) fn log_until(server: &Server, needles: &[&str], seen: &mut Vec<String>) -> String {
    let line = server.wait_for_log(needles);
    seen.push(line.clone());
    line
}

/// A credential's value, read back over the API by the owner.
fn value_of(server: &Server, owner: &str, vault: &str, key: &str) -> Option<String> {
    let (status, answer) = server.call(
        "GET",
        &format!("/v1/credentials?vault={vault}&reveal=true&key={key}"),
        Some(owner),
        None,
    );
    match status {
        200 => answer["credentials"][0]["value"]
            .as_str()
            .map(str::to_owned),
        404 => None,
        _ => panic!("{status} {answer}"),
    }
}

const FIRST: &str = "sk_live_first_Value_51Hx";
const SECOND: &str = "sk_live_rotated_Value_77Qz";

#[test]
fn a_person_sets_rotates_reveals_and_deletes_a_credential() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let mut web = Web::register_owner(&server, OWNER, OWNER_PASSWORD);
    let owner = owner_token(&server);
    let mut pages = Vec::new();

    let empty = web.get("/vaults/default/credentials");
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert!(empty.shows("No credential yet."), "{}", empty.text());
    let value_field = r#"name="value" type="password" autocomplete="off""#;
    assert!(empty.body.contains(value_field), "{}", empty.body);

    // A key the API refuses: its message beside the form, the key kept, the value not.
    let refused = web.submit(
        "/vaults/default/credentials",
        &[("key", "stripe key"), ("value", FIRST)],
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.shows(r#"credential key "stripe key" must be UPPER_SNAKE_CASE (e.g. STRIPE_KEY)"#),
        "{}",
        refused.text()
    );
    assert!(refused.body.contains(r#"value="stripe key""#));
    pages.push(refused);

    let set = web.submit(
        "/vaults/default/credentials",
        &[("key", "STRIPE_KEY"), ("value", FIRST)],
    );
    assert_eq!(set.status, 200, "{}", set.text());
    assert!(set.shows("Credential STRIPE_KEY set."), "{}", set.text());
    assert!(set.shows("STRIPE_KEY no service"), "{}", set.text());
    assert_eq!(
        value_of(&server, &owner, "default", "STRIPE_KEY").as_deref(),
        Some(FIRST)
    );
    pages.push(set);

    let rotated = web.submit(
        "/vaults/default/credentials",
        &[("key", "STRIPE_KEY"), ("rotate", "1"), ("value", SECOND)],
    );
    assert!(
        rotated.shows("Credential STRIPE_KEY rotated."),
        "{}",
        rotated.text()
    );
    assert_eq!(
        value_of(&server, &owner, "default", "STRIPE_KEY").as_deref(),
        Some(SECOND)
    );
    pages.push(rotated);

    // The reveal's answer shows the value, once, and asks that it not be kept.
    let revealed = web.submit("/vaults/default/credentials/STRIPE_KEY/reveal", &[]);
    assert_eq!(revealed.status, 200, "{}", revealed.text());
    assert!(
        revealed.shows(&format!(
            "STRIPE_KEY — shown this once; reload the page and it is gone. {SECOND}"
        )),
        "{}",
        revealed.text()
    );
    assert_eq!(revealed.header("cache-control"), Some("no-store"));
    let mut log = Vec::new();
    let line = log_until(
        &server,
        &[
            "credential values revealed",
            "vault=default",
            "keys=STRIPE_KEY",
            OWNER,
        ],
        &mut log,
    );
    assert!(!line.contains(SECOND), "{line}");

    // Used by a service: the list says so, and so does the delete's confirmation.
    api(
        &server,
        &owner,
        "POST",
        "/v1/vaults/default/services",
        json!({ "services": [{ "name": "stripe", "host": "api.stripe.com",
                               "auth": { "type": "bearer", "token": "STRIPE_KEY" } }] }),
    );
    let listed = web.get("/vaults/default/credentials");
    assert!(listed.shows("STRIPE_KEY stripe"), "{}", listed.text());
    assert!(
        listed.shows("These services use it and stop working until it is set again: stripe."),
        "{}",
        listed.text()
    );
    pages.push(listed);

    let deleted = web.submit("/vaults/default/credentials/STRIPE_KEY/delete", &[]);
    assert!(
        deleted.shows("Credential STRIPE_KEY deleted."),
        "{}",
        deleted.text()
    );
    assert!(deleted.shows("No credential yet."), "{}", deleted.text());
    assert_eq!(value_of(&server, &owner, "default", "STRIPE_KEY"), None);
    pages.push(deleted);

    // No page but the reveal's answer held a value; no redirect or cookie did either.
    for page in &pages {
        for value in [FIRST, SECOND] {
            assert!(!page.body.contains(value), "{}", page.body);
            assert!(
                page.headers
                    .iter()
                    .all(|(_, header)| !header.contains(value)),
                "{:?}",
                page.headers
            );
        }
    }
    log.extend(server.log_so_far());
    for line in &log {
        assert!(!line.contains(FIRST) && !line.contains(SECOND), "{line}");
    }
}

#[test]
fn people_without_the_role_are_refused_and_the_vault_keeps_its_values() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let mut owner_web = Web::register_owner(&server, OWNER, OWNER_PASSWORD);
    let owner = owner_token(&server);
    api(
        &server,
        &owner,
        "POST",
        "/v1/vaults",
        json!({ "name": "team" }),
    );
    api(
        &server,
        &owner,
        "POST",
        "/v1/credentials",
        json!({ "vault": "team", "credentials": { "TEAM_KEY": FIRST } }),
    );

    // A member of the vault may reveal a value (the API's rule: any person with the
    // member role); a person outside the vault sees no page and every post is refused.
    let mut outsider = colleague(&server, &owner, "outsider@example.com", None);
    let hidden = outsider.get("/vaults/team/credentials");
    assert_eq!(hidden.status, 404, "{}", hidden.text());
    assert!(hidden.shows("Vault not found: team"), "{}", hidden.text());
    outsider.get("/");
    let posts: [(&str, &[(&str, &str)]); 4] = [
        (
            "/vaults/team/credentials",
            &[("key", "TEAM_KEY"), ("value", SECOND)],
        ),
        (
            "/vaults/team/credentials",
            &[("key", "NEW_KEY"), ("value", SECOND)],
        ),
        ("/vaults/team/credentials/TEAM_KEY/delete", &[]),
        ("/vaults/team/credentials/TEAM_KEY/reveal", &[]),
    ];
    for (path, fields) in posts {
        let refused = outsider.submit(path, fields);
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert!(
            refused.shows("No access to this vault"),
            "{path}: {}",
            refused.text()
        );
        assert!(!refused.body.contains(FIRST), "{}", refused.body);
    }

    // The owner's own forms, posted without the page's token or with a wrong one, do
    // nothing.
    owner_web.get("/vaults/team/credentials");
    let forged = [
        owner_web.post_plain(
            "/vaults/team/credentials/TEAM_KEY/reveal",
            &[("csrf", "not-the-token")],
        ),
        owner_web.post_plain("/vaults/team/credentials/TEAM_KEY/delete", &[]),
        owner_web.post_plain(
            "/vaults/team/credentials",
            &[("key", "TEAM_KEY"), ("value", SECOND)],
        ),
    ];
    for page in forged {
        assert_eq!(page.status, 403, "{}", page.text());
        assert!(
            page.shows("This form did not come from this console"),
            "{}",
            page.text()
        );
        assert!(!page.body.contains(FIRST), "{}", page.body);
    }

    assert_eq!(
        value_of(&server, &owner, "team", "TEAM_KEY").as_deref(),
        Some(FIRST)
    );
    let (_, keys) = server.call("GET", "/v1/credentials?vault=team", Some(&owner), None);
    assert_eq!(keys["keys"], json!(["TEAM_KEY"]));
    for line in server.log_so_far() {
        assert!(!line.contains(FIRST) && !line.contains(SECOND), "{line}");
    }
}
