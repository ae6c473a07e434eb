//! The account page: a person changes their password and stays signed in in this browser
//! while their other sessions end; they end another session of theirs, or this one.

use super::Web;
use super::people::{self, OWNER, PASSWORD};
use crate::support::{DataDir, Server};

const NEW_PASSWORD: &str = "a much longer new passphrase";

#[test]
fn changing_the_password_keeps_this_browser_signed_in_and_ends_the_others() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (mut browser, _) = people::owner(&server);
    let mut laptop = Web::sign_in(&server, OWNER, PASSWORD);

    let page = browser.get("/account");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.shows("this browser"), "{}", page.text());

    let wrong = browser.submit(
        "/account/password",
        &[
            ("current_password", "not my password"),
            ("new_password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert!(
        wrong.shows("The current password is wrong"),
        "{}",
        wrong.text()
    );
    assert!(
        !wrong.body.contains("not my password"),
        "a password rendered back"
    );
    let differ = browser.submit(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
            ("confirm", "something else"),
        ],
    );
    assert_eq!(differ.status, 400, "{}", differ.text());
    assert!(
        differ.shows("The two new passwords differ."),
        "{}",
        differ.text()
    );

    let changed = browser.submit(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ],
    );
    assert_eq!(changed.status, 200, "still signed in: {}", changed.text());
    assert!(
        changed.shows("Password changed; every other session of yours has ended."),
        "{}",
        changed.text()
    );
    assert_eq!(browser.get("/").status, 200, "this browser stays signed in");
    assert_eq!(laptop.get("/").status, 303, "the other session ended");

    let mut old = Web::new(&server);
    let refused = old.post_plain("/login", &[("email", OWNER), ("password", PASSWORD)]);
    assert_eq!(refused.status, 401, "{}", refused.text());
    Web::sign_in(&server, OWNER, NEW_PASSWORD);
}

#[test]
fn a_person_ends_another_session_of_theirs_and_then_this_one() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (mut browser, token) = people::owner(&server);
    let mut phone = Web::sign_in(&server, OWNER, PASSWORD);

    let (_, listed) = server.call("GET", "/v1/auth/sessions", Some(&token), None);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{listed}");
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = sessions.iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let page = browser.get("/account");
    assert!(page.shows(&other) && page.shows(&mine), "{}", page.text());
    let ended = browser.submit(&format!("/account/sessions/{other}/revoke"), &[]);
    assert!(ended.shows("That session has ended."), "{}", ended.text());
    assert!(!ended.shows(&other), "{}", ended.text());
    assert_eq!(phone.get("/").status, 303, "the phone is signed out");

    // The phone's device is forgotten: the API no longer lists it.
    let (_, listed) = server.call("GET", "/v1/auth/sessions", Some(&token), None);
    let devices = listed["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 2, "{listed}");
    let device = devices[0]["id"].as_str().unwrap();
    let forgotten = browser.submit(&format!("/account/devices/{device}/revoke"), &[]);
    assert!(
        forgotten.shows("That device now signs in as a new one."),
        "{}",
        forgotten.text()
    );
    let (_, listed) = server.call("GET", "/v1/auth/sessions", Some(&token), None);
    assert_eq!(listed["devices"].as_array().unwrap().len(), 1, "{listed}");
    assert!(!forgotten.shows(device), "{}", forgotten.text());

    let signed_out = browser.submit(&format!("/account/sessions/{mine}/revoke"), &[]);
    assert!(signed_out.shows("Sign in"), "{}", signed_out.text());
    assert_eq!(browser.cookie("av_session"), None);
    let (status, _) = server.call("GET", "/v1/auth/me", Some(&token), None);
    assert_eq!(status, 401);
}

#[test]
fn agent_vaults_change_password_path_leads_to_the_account_page() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let (mut browser, _) = people::owner(&server);
    let moved = browser.get("/change-password");
    assert_eq!((moved.status, moved.location()), (303, "/account"));

    // Another site's form cannot change the password.
    let forged = browser.post_with(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ],
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    Web::sign_in(&server, OWNER, PASSWORD);
}
