//! A vault's settings page: an admin sets the proposal webhook and the unmatched-host
//! policy, renames the vault (and lands on it under its new name) and deletes it; the
//! default vault is neither renamed nor deleted. A member sees the settings without the
//! webhook's URL (it often carries a secret), and posts every form anyway: refused,
//! nothing changes.

use serde_json::json;

use super::Web;
use super::credentials::{OWNER, OWNER_PASSWORD, api, colleague, owner_token};
use crate::support::{DataDir, Server};

const HOOK: &str = "https://hooks.example.com/services/T000/B000/secret-part";

fn vault_names(server: &Server, owner: &str) -> Vec<String> {
    let listed = api(server, owner, "GET", "/v1/vaults", json!({}));
    listed["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vault| vault["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_admin_sets_the_webhook_renames_and_deletes_a_vault() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let mut web = Web::register_owner(&server, OWNER, OWNER_PASSWORD);
    let owner = owner_token(&server);
    web.get("/");
    let created = web.submit("/vaults", &[("name", "team")]);
    assert!(created.shows("Vault team created"), "{}", created.text());

    let page = web.get("/vaults/team/settings");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.body.contains(r#"value="passthrough" checked"#),
        "{}",
        page.body
    );

    // A URL the API refuses: its message, and what was typed still in the field.
    let refused = web.submit(
        "/vaults/team/settings",
        &[
            ("proposal_webhook_url", "ftp://hooks.example.com/x"),
            ("unmatched_host_policy", "deny"),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused
            .body
            .contains(r#"value="ftp://hooks.example.com/x""#)
    );
    let settings = api(
        &server,
        &owner,
        "GET",
        "/v1/vaults/team/settings",
        json!({}),
    );
    assert_eq!(settings["unmatched_host_policy"], "passthrough");

    let saved = web.submit(
        "/vaults/team/settings",
        &[
            ("proposal_webhook_url", HOOK),
            ("unmatched_host_policy", "deny"),
        ],
    );
    assert!(saved.shows("Settings saved."), "{}", saved.text());
    assert!(
        saved.body.contains(r#"value="deny" checked"#),
        "{}",
        saved.body
    );
    assert_eq!(
        api(
            &server,
            &owner,
            "GET",
            "/v1/vaults/team/settings",
            json!({})
        ),
        json!({ "unmatched_host_policy": "deny", "proposal_webhook": true,
                "proposal_webhook_url": HOOK })
    );

    let renamed = web.submit("/vaults/team/rename", &[("name", "crew")]);
    assert_eq!(renamed.status, 200, "{}", renamed.text());
    assert!(
        renamed.shows("Vault team is now crew; agents must use the new name."),
        "{}",
        renamed.text()
    );
    assert!(renamed.shows("crew you: admin"), "{}", renamed.text());
    assert_eq!(vault_names(&server, &owner), ["crew", "default"]);

    let bad_name = web.submit("/vaults/crew/rename", &[("name", "Not A Slug")]);
    assert_eq!(bad_name.status, 400, "{}", bad_name.text());
    assert!(bad_name.body.contains(r#"value="Not A Slug""#));

    let page = web.get("/vaults/crew/settings");
    assert!(page.shows("Delete crew"), "{}", page.text());
    let deleted = web.submit("/vaults/crew/delete", &[]);
    assert!(deleted.shows("Vault crew deleted."), "{}", deleted.text());
    assert_eq!(vault_names(&server, &owner), ["default"]);

    // The default vault: no rename or delete on its page, and posting them anyway is
    // refused with the API's reason.
    let default = web.get("/vaults/default/settings");
    assert!(
        default.shows("The default vault cannot be renamed or deleted."),
        "{}",
        default.text()
    );
    let refused = web.submit("/vaults/default/rename", &[("name", "other")]);
    assert!(
        refused.shows("Cannot rename the default vault"),
        "{}",
        refused.text()
    );
    let refused = web.submit("/vaults/default/delete", &[]);
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.shows("Cannot delete the default vault"),
        "{}",
        refused.text()
    );
    assert_eq!(vault_names(&server, &owner), ["default"]);
}

#[test]
fn a_member_sees_no_webhook_url_and_cannot_change_the_vault() {
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
        "PATCH",
        "/v1/vaults/team/settings",
        json!({ "proposal_webhook_url": HOOK }),
    );
    let mut member = colleague(
        &server,
        &owner,
        "member@example.com",
        Some(("team", "member")),
    );

    let page = member.get("/vaults/team/settings");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.shows("Proposal webhook: set"), "{}", page.text());
    assert!(
        page.shows("A vault admin changes these."),
        "{}",
        page.text()
    );
    assert!(!page.body.contains("hooks.example.com"), "{}", page.body);

    let posts: [(&str, &[(&str, &str)]); 3] = [
        (
            "/vaults/team/settings",
            &[
                ("proposal_webhook_url", "https://attacker.example.com/x"),
                ("unmatched_host_policy", "deny"),
            ],
        ),
        ("/vaults/team/rename", &[("name", "taken")]),
        ("/vaults/team/delete", &[]),
    ];
    for (path, fields) in posts {
        let refused = member.submit(path, fields);
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert!(
            refused.shows("Admin role required"),
            "{path}: {}",
            refused.text()
        );
    }

    // The owner's forms without the page's token do nothing either.
    owner_web.get("/vaults/team/settings");
    for (path, fields) in posts {
        let forged = owner_web.post_plain(path, fields);
        assert_eq!(forged.status, 403, "{path}: {}", forged.text());
        assert!(forged.shows("This form did not come from this console"));
    }

    assert_eq!(vault_names(&server, &owner), ["default", "team"]);
    assert_eq!(
        api(
            &server,
            &owner,
            "GET",
            "/v1/vaults/team/settings",
            json!({})
        ),
        json!({ "unmatched_host_policy": "passthrough", "proposal_webhook": true,
                "proposal_webhook_url": HOOK })
    );
}
