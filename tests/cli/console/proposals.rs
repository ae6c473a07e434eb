//! Proposals in the console: a person reads what an agent asks, approves it with the
//! credential value typed in the form (and the agent's next request carries it) or rejects
//! it with a reason the agent reads. Then the rules the approval page keeps: nobody decides
//! on a proposal an agent of their own session made, a person outside the vault sees
//! nothing, a form without the page's CSRF token does nothing, the agent's words are
//! escaped, and a typed value never shows in a page or the server's log.

use serde_json::{Value, json};

use super::Web;
use super::request_log::{OWNER, PASSWORD, Setup, ok};

const VALUE: &str = "sk_live_console_approved_value";
const REVIEWER: &str = "reviewer@example.com";
const OUTSIDER: &str = "outsider@example.com";
const USER_PASSWORD: &str = "a user password";

fn items_proposal() -> Value {
    json!({
        "services": [{ "name": "items", "host": "api.test.example",
                       "auth": { "type": "bearer", "token": "ITEMS_KEY" },
                       "allow": [{ "methods": ["GET"], "paths": ["/v1/*"] }] }],
        "credentials": [{ "key": "ITEMS_KEY", "description": "The items API key",
                          "obtain": "https://items.example/settings/keys" }],
        "message": "<script>alert(1)</script> I need to read the items API",
        "user_message": "Please add read access to the items API",
    })
}

/// Invite `email` as an instance member with `vaults`, and accept.
fn add_person(setup: &Setup, email: &str, vaults: Value) {
    let invite = ok(
        &setup.server,
        "POST",
        "/v1/users/invites",
        Some(&setup.owner),
        json!({ "email": email, "role": "member", "vaults": vaults }),
    );
    let token = invite["token"].as_str().unwrap();
    ok(
        &setup.server,
        "POST",
        &format!("/v1/users/invites/{token}/accept"),
        None,
        json!({ "password": USER_PASSWORD }),
    );
}

#[test]
fn a_proposal_is_approved_with_its_value_and_another_rejected_with_a_reason() {
    let setup = Setup::bare();
    add_person(
        &setup,
        REVIEWER,
        json!([{ "vault_name": "default", "vault_role": "member" }]),
    );
    // A member of the vault hands an agent a session of theirs: what the agent proposes
    // is, in part, the member's, so they may not decide on it.
    let mut member = Web::sign_in(&setup.server, REVIEWER, USER_PASSWORD);
    let member_token = member.cookie("av_session").unwrap().to_owned();
    let agent = ok(
        &setup.server,
        "POST",
        "/v1/sessions",
        Some(&member_token),
        json!({ "vault": "default" }),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let proposed = ok(
        &setup.server,
        "POST",
        "/v1/proposals",
        Some(&agent),
        items_proposal(),
    );
    let id = proposed["id"].as_i64().unwrap();
    let detail = format!("/vaults/default/proposals/{id}");

    let list = member.get("/vaults/default/proposals");
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(
        list.shows(&format!("Proposal {id} pending")),
        "{}",
        list.text()
    );
    assert!(!list.body.contains("<script>alert"), "{}", list.body);
    let page = member.get(&detail);
    assert_eq!(page.status, 200, "{}", page.text());
    for words in [
        "asks for access",
        "Message to you Please add read access to the items API",
        "Why",
        "I need to read the items API",
        "ITEMS_KEY The items API key Get it at https://items.example/settings/keys",
        "Type each value here: it goes straight into the vault",
        "Reason (the agent can read it)",
    ] {
        assert!(page.shows(words), "{words:?}: {}", page.text());
    }
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains(
        r#"<input id="credential:ITEMS_KEY" name="credential:ITEMS_KEY" type="password" autocomplete="off" required>"#
    ));

    // The member minted the session the proposal came from: the API refuses them, the page
    // says why, and the value they typed is not given back.
    let refused = member.submit(
        &format!("{detail}/approve"),
        &[("credential:ITEMS_KEY", VALUE)],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.shows(
            "A proposal cannot be approved or rejected by whoever made it, directly or \
             through a vault session they minted"
        ),
        "the API's refusal shows: {}",
        refused.text()
    );
    assert!(
        refused.shows(&format!("Proposal {id} pending")),
        "{}",
        refused.text()
    );
    assert!(!refused.body.contains(VALUE));

    // The owner, an admin of the vault, approves; the agent's next request carries the value.
    let mut reviewer = Web::sign_in(&setup.server, OWNER, PASSWORD);
    reviewer.get(&detail);
    let approved = reviewer.submit(
        &format!("{detail}/approve"),
        &[("credential:ITEMS_KEY", VALUE)],
    );
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert!(
        approved.shows(&format!(
            "Proposal {id} approved: the vault has its changes."
        )),
        "{}",
        approved.text()
    );
    assert!(approved.shows("applied"), "{}", approved.text());
    assert!(!approved.body.contains(VALUE));
    assert_eq!(setup.proxy_get(&agent, "/v1/items"), 200);
    assert_eq!(
        setup.upstream.last().header("authorization"),
        [format!("Bearer {VALUE}")]
    );

    // Another proposal, rejected with a reason the agent reads.
    let second = ok(
        &setup.server,
        "POST",
        "/v1/proposals",
        Some(&agent),
        json!({
            "services": [{ "name": "orders", "host": "api.test.example",
                           "auth": { "type": "bearer", "token": "ORDERS_KEY" },
                           "allow": [{ "methods": ["GET"], "paths": ["/v2/*"] }] }],
            "credentials": [{ "key": "ORDERS_KEY" }],
            "message": "and the orders",
        }),
    )["id"]
        .as_i64()
        .unwrap();
    reviewer.get(&format!("/vaults/default/proposals/{second}"));
    let rejected = reviewer.submit(
        &format!("/vaults/default/proposals/{second}/reject"),
        &[("reason", "Use the read-only key instead")],
    );
    assert!(
        rejected.shows(&format!("Proposal {second} rejected.")),
        "{}",
        rejected.text()
    );
    assert!(
        rejected.shows("Reason given Use the read-only key instead"),
        "{}",
        rejected.text()
    );
    let polled = ok(
        &setup.server,
        "GET",
        &format!("/v1/proposals/{second}"),
        Some(&agent),
        Value::Null,
    );
    assert_eq!(
        (&polled["status"], &polled["review_note"]),
        (&json!("rejected"), &json!("Use the read-only key instead"))
    );
    let list = reviewer.get("/vaults/default/proposals");
    assert!(list.shows("Nothing to decide."), "{}", list.text());
    assert!(
        list.shows(&format!("Proposal {id} applied")),
        "{}",
        list.text()
    );
    assert!(
        list.shows(&format!("Proposal {second} rejected")),
        "{}",
        list.text()
    );
    for path in [
        "/vaults/default/proposals",
        detail.as_str(),
        "/vaults/default",
    ] {
        assert!(!reviewer.get(path).body.contains(VALUE), "{path}");
    }
    let server_log = setup.server.log_so_far().join("\n");
    assert!(!server_log.contains(VALUE), "{server_log}");
}

#[test]
fn forged_forms_and_people_outside_the_vault_change_nothing() {
    let setup = Setup::bare();
    add_person(&setup, OUTSIDER, json!([]));
    add_person(
        &setup,
        REVIEWER,
        json!([{ "vault_name": "default", "vault_role": "member" }]),
    );
    let agent = setup.session();
    let id = ok(
        &setup.server,
        "POST",
        "/v1/proposals",
        Some(&agent),
        items_proposal(),
    )["id"]
        .as_i64()
        .unwrap();
    let approve = format!("/vaults/default/proposals/{id}/approve");

    let mut outsider = Web::sign_in(&setup.server, OUTSIDER, USER_PASSWORD);
    for path in [
        "/vaults/default/proposals".to_owned(),
        format!("/vaults/default/proposals/{id}"),
    ] {
        let page = outsider.get(&path);
        assert_eq!(page.status, 404, "{path}: {}", page.text());
        assert!(page.shows("Vault not found: default"), "{}", page.text());
        assert!(!page.body.contains("alert(1)"), "{}", page.body);
    }
    outsider.get("/");
    let posted = outsider.submit(&approve, &[("credential:ITEMS_KEY", VALUE)]);
    assert_eq!(posted.status, 404, "{}", posted.text());

    // The reviewer's session, but a form from elsewhere: without the token, with another
    // one, or from another origin.
    let mut reviewer = Web::sign_in(&setup.server, REVIEWER, USER_PASSWORD);
    reviewer.get(&format!("/vaults/default/proposals/{id}"));
    let origin = setup.server.url();
    for (fields, headers) in [
        (
            vec![("credential:ITEMS_KEY", VALUE)],
            vec![("Origin", origin.as_str())],
        ),
        (
            vec![("csrf", "not-the-token"), ("credential:ITEMS_KEY", VALUE)],
            vec![("Origin", origin.as_str())],
        ),
    ] {
        let forged = reviewer.post_with(&approve, &fields, &headers);
        assert_eq!(forged.status, 403, "{}", forged.text());
        assert!(
            forged.shows("This form did not come from this console"),
            "{}",
            forged.text()
        );
    }
    let reject = reviewer.post_with(
        &format!("/vaults/default/proposals/{id}/reject"),
        &[("reason", "forged")],
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(reject.status, 403, "{}", reject.text());

    let status = ok(
        &setup.server,
        "GET",
        &format!("/v1/proposals/{id}"),
        Some(&agent),
        Value::Null,
    );
    assert_eq!(status["status"], "pending", "nothing was decided");
    let server_log = setup.server.log_so_far().join("\n");
    assert!(!server_log.contains(VALUE), "{server_log}");
}
