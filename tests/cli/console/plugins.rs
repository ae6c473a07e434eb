//! The plugins page: a person sees what the server has loaded and why a plugin file did not
//! load, and tries a plugin with made-up credentials, which the page never shows back; a
//! person without the instance member role, and another site's form, get nothing.

use serde_json::json;

use super::Web;
use crate::support::{DataDir, Server, built_wasm};

const EMAIL: &str = "owner@example.com";
const PASSWORD: &str = "correct horse battery staple";
/// A made-up token typed in the dry-run form.
const MADE_UP: &str = "sk_made_up_93d1e7";

/// A server whose plugin directory holds the trapping fixture and a file that is not a
/// plugin, and the owner's browser.
fn start() -> (Server, Web, DataDir) {
    let data = DataDir::new();
    std::fs::copy(
        built_wasm("fixture_trap"),
        data.plugin_dir().join("fixture-trap.wasm"),
    )
    .unwrap();
    std::fs::write(data.plugin_dir().join("broken.wasm"), b"not a component").unwrap();
    let server = Server::start(&data);
    let owner = Web::register_owner(&server, EMAIL, PASSWORD);
    (server, owner, data)
}

#[test]
fn a_person_reads_the_loaded_plugins_and_tries_one_with_made_up_credentials() {
    let (server, mut owner, _data) = start();
    let page = owner.get("/manage/plugins");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.shows("bearer 0.1.0 standard Sends the token as `Authorization: Bearer <token>`."),
        "{}",
        page.text()
    );
    assert!(
        page.shows("token required the API token"),
        "{}",
        page.text()
    );
    assert!(page.shows("fixture-trap 0.0.0 file"), "{}", page.text());
    assert!(
        page.shows("error broken.wasm broken.wasm: "),
        "{}",
        page.text()
    );
    assert!(
        page.shows("no plugin of that name serves from it"),
        "{}",
        page.text()
    );

    let ran = owner.submit(
        "/manage/plugins/test",
        &[
            ("plugin", "bearer"),
            ("method", "POST"),
            ("url", "https://api.example.com/v1/items"),
            ("headers", "Accept: application/json\r\n"),
            ("body", "{\"n\":1}"),
            ("config", ""),
            ("credentials", &format!("token={MADE_UP}\r\n")),
        ],
    );
    assert_eq!(ran.status, 200, "{}", ran.text());
    assert!(
        ran.shows(
            "The request as it would leave POST https://api.example.com/v1/items \
             host: api.example.com accept: application/json authorization: ****"
        ),
        "{}",
        ran.text()
    );
    // What was typed stays, but the credentials.
    assert!(
        ran.body
            .contains("value=\"https://api.example.com/v1/items\""),
        "{}",
        ran.body
    );
    assert!(
        ran.body.contains("<option selected>POST</option>"),
        "{}",
        ran.body
    );
    assert!(!ran.body.contains(MADE_UP), "{}", ran.body);
    let log = server.log_so_far().join("\n");
    assert!(!log.contains(MADE_UP), "{log}");
}

#[test]
fn a_dry_run_that_does_not_work_says_why_next_to_the_form() {
    let (_server, mut owner, _data) = start();
    owner.get("/manage/plugins");
    let trapped = owner.submit(
        "/manage/plugins/test",
        &[
            ("plugin", "fixture-trap"),
            ("url", "https://api.example.com/"),
        ],
    );
    assert_eq!(trapped.status, 200, "{}", trapped.text());
    assert!(
        trapped.shows(
            "plugin fixture-trap trapped: executed `unreachable` (a panic or abort in the plugin)"
        ),
        "{}",
        trapped.text()
    );

    // A credential line without "=" may be the value itself: it is not quoted back.
    let malformed = owner.submit(
        "/manage/plugins/test",
        &[
            ("plugin", "bearer"),
            ("url", "https://api.example.com/"),
            ("credentials", MADE_UP),
        ],
    );
    assert_eq!(malformed.status, 200, "{}", malformed.text());
    assert!(
        malformed.shows("Credential line 1 must look like SLOT=made-up value"),
        "{}",
        malformed.text()
    );
    assert!(!malformed.body.contains(MADE_UP), "{}", malformed.body);

    let missing = owner.submit(
        "/manage/plugins/test",
        &[("plugin", "bearer"), ("url", "https://api.example.com/")],
    );
    assert!(
        missing.shows(
            "the credentials do not match the plugin's slots: credential slot \"token\" is \
             required but not bound to a credential"
        ),
        "{}",
        missing.text()
    );
}

#[test]
fn no_access_people_and_other_sites_forms_get_nothing() {
    let (server, mut owner, _data) = start();
    let token = owner.cookie("av_session").unwrap().to_owned();
    let (status, invite) = server.call(
        "POST",
        "/v1/users/invites",
        Some(&token),
        Some(&json!({ "email": "nobody@example.com", "role": "no-access" })),
    );
    assert_eq!(status, 201, "{invite}");
    let (status, accepted) = server.call(
        "POST",
        &format!(
            "/v1/users/invites/{}/accept",
            invite["token"].as_str().unwrap()
        ),
        None,
        Some(&json!({ "password": PASSWORD })),
    );
    assert_eq!(status, 200, "{accepted}");

    let mut nobody = Web::sign_in(&server, "nobody@example.com", PASSWORD);
    let page = nobody.get("/");
    assert_eq!(page.status, 200, "{}", page.text());
    let refused = nobody.get("/manage/plugins");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.shows("Instance member role required"),
        "{}",
        refused.text()
    );
    let posted = nobody.submit(
        "/manage/plugins/test",
        &[
            ("plugin", "passthrough"),
            ("url", "https://api.example.com/"),
        ],
    );
    assert_eq!(posted.status, 403, "{}", posted.text());
    assert!(
        posted.shows("Instance member role required"),
        "{}",
        posted.text()
    );

    // The owner's session, but a form without this session's CSRF token, or with another
    // one: refused before the plugin runs.
    owner.get("/manage/plugins");
    let wrong_token = "0".repeat(64);
    for csrf in [None, Some(wrong_token.as_str())] {
        let mut fields = vec![
            ("plugin", "passthrough"),
            ("url", "https://api.example.com/"),
        ];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        let forged = owner.post_plain("/manage/plugins/test", &fields);
        assert_eq!(forged.status, 403, "{}", forged.text());
        assert!(
            forged.shows("This form did not come from this console"),
            "{}",
            forged.text()
        );
    }
}
