//! Registering, signing in and out, and what every console page carries: a person's first
//! visit, and the forms another site or a stolen page would post.

use super::Web;
use crate::support::{DataDir, Server};

const EMAIL: &str = "owner@example.com";
const PASSWORD: &str = "correct horse battery staple";

#[test]
fn the_first_visit_registers_the_owner_and_opens_the_console() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let mut browser = Web::new(&server);

    let first = browser.get("/");
    assert_eq!((first.status, first.location()), (303, "/register"));
    let register = browser.get("/register");
    assert!(
        register.shows("Create the owner account"),
        "{}",
        register.text()
    );

    let mut owner = Web::register_owner(&server, EMAIL, PASSWORD);
    let home = owner.get("/");
    assert_eq!(home.status, 200, "{}", home.text());
    assert!(home.shows("Vaults"), "{}", home.text());
    assert!(home.shows("default"), "{}", home.text());
    assert!(home.shows(EMAIL), "{}", home.text());

    // There is one owner now: the register page sends people to sign in, and posting the
    // form anyway is refused.
    let again = browser.get("/register");
    assert_eq!((again.status, again.location()), (303, "/login"));
    let second = browser.post_plain(
        "/register",
        &[
            ("email", "intruder@example.com"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    );
    assert_eq!(second.status, 403, "{}", second.text());
    assert!(second.shows("already has an owner"), "{}", second.text());
    assert_eq!(browser.cookie("av_session"), None);
}

#[test]
fn signing_in_sets_a_strict_cookie_and_signing_out_ends_the_session() {
    let data = DataDir::new();
    let server = Server::start(&data);
    Web::register_owner(&server, EMAIL, PASSWORD);

    let mut browser = Web::new(&server);
    let wrong = browser.post_plain("/login", &[("email", EMAIL), ("password", "not it at all")]);
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert!(wrong.shows("Invalid email or password"), "{}", wrong.text());
    assert_eq!(browser.cookie("av_session"), None);

    let signed_in = browser.post_plain("/login", &[("email", EMAIL), ("password", PASSWORD)]);
    assert_eq!((signed_in.status, signed_in.location()), (303, "/"));
    let session_cookie = signed_in
        .headers
        .iter()
        .find(|(name, value)| name == "set-cookie" && value.starts_with("av_session="))
        .map(|(_, value)| value.clone())
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    let token = browser.cookie("av_session").unwrap().to_owned();
    assert!(token.starts_with("av_sess_"), "a login session");

    // The same session works with the API: it is the person's, not a console-only kind.
    let (status, me) = server.call("GET", "/v1/auth/me", Some(&token), None);
    assert_eq!((status, me["email"].as_str()), (200, Some(EMAIL)));

    browser.get("/");
    let signed_out = browser.submit("/logout", &[]);
    assert!(signed_out.shows("Sign in"), "{}", signed_out.text());
    let (status, _) = server.call("GET", "/v1/auth/me", Some(&token), None);
    assert_eq!(status, 401, "signing out ends the session everywhere");
    let after = browser.get("/");
    assert_eq!(after.status, 303);
    assert!(
        after.location().starts_with("/login"),
        "{}",
        after.location()
    );
}

#[test]
fn after_signing_in_the_browser_goes_where_it_was_sent_but_only_on_this_site() {
    let data = DataDir::new();
    let server = Server::start(&data);
    Web::register_owner(&server, EMAIL, PASSWORD);

    let mut browser = Web::new(&server);
    let bounced = browser.get("/agents");
    assert_eq!(bounced.status, 303);
    assert_eq!(bounced.location(), "/login?next=%2Fagents");
    let page = browser.get("/login?next=%2Fagents");
    assert!(page.body.contains("value=\"/agents\""), "{}", page.body);
    let signed_in = browser.post_plain(
        "/login",
        &[
            ("email", EMAIL),
            ("password", PASSWORD),
            ("next", "/agents"),
        ],
    );
    assert_eq!(signed_in.location(), "/agents");

    // A link that would send the browser elsewhere after signing in lands on the console.
    for elsewhere in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let mut browser = Web::new(&server);
        let signed_in = browser.post_plain(
            "/login",
            &[
                ("email", EMAIL),
                ("password", PASSWORD),
                ("next", elsewhere),
            ],
        );
        assert_eq!(signed_in.location(), "/", "{elsewhere}");
    }
}

#[test]
fn every_page_forbids_inline_script_and_framing() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let mut owner = Web::register_owner(&server, EMAIL, PASSWORD);
    for path in ["/", "/login", "/no-such-page"] {
        let page = owner.get(path);
        let policy = page.header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{path}");
        assert!(!page.body.contains("<script>"), "{path}: no inline script");
    }
    let style = owner.get("/assets/console.css");
    assert_eq!(style.status, 200);
    assert!(
        style
            .header("content-type")
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(owner.get("/assets/other.js").status, 404);
}

#[test]
fn a_form_from_another_site_or_without_the_token_changes_nothing() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let mut owner = Web::register_owner(&server, EMAIL, PASSWORD);
    let token = owner.cookie("av_session").unwrap().to_owned();

    // Another site makes the owner's browser post "create a vault": without the page's CSRF
    // token, or with a token of another session, nothing happens.
    let forged = owner.post_with(
        "/vaults",
        &[("name", "forged")],
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    let mut other = Web::sign_in(&server, EMAIL, PASSWORD);
    other.get("/");
    other.submit("/vaults", &[("name", "made-by-other")]);
    let wrong_token = owner.post_plain(
        "/vaults",
        &[("csrf", "0".repeat(64).as_str()), ("name", "forged")],
    );
    assert_eq!(wrong_token.status, 403, "{}", wrong_token.text());
    let (_, vaults) = server.call("GET", "/v1/vaults", Some(&token), None);
    let names: Vec<&str> = vaults["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vault| vault["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"forged"), "{names:?}");
    assert!(
        names.contains(&"made-by-other"),
        "that session's own form works: {names:?}"
    );

    // A sign-in posted from another site (login CSRF) is refused too.
    let mut victim = Web::new(&server);
    let login_csrf = victim.post_with(
        "/login",
        &[("email", EMAIL), ("password", PASSWORD)],
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(login_csrf.status, 403, "{}", login_csrf.text());
    assert_eq!(victim.cookie("av_session"), None);
}

#[test]
fn creating_a_vault_from_home_makes_the_person_its_admin() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let mut owner = Web::register_owner(&server, EMAIL, PASSWORD);
    owner.get("/");
    let created = owner.post_plain("/vaults", &[]);
    assert_eq!(created.status, 403, "no CSRF token: refused");
    owner.get("/");
    let refused = owner.submit("/vaults", &[("name", "Not A Slug")]);
    assert_eq!(refused.status, 400, "{}", refused.text());
    owner.get("/");
    owner.submit("/vaults", &[("name", "research")]);
    let home = owner.get("/");
    assert!(home.shows("research"), "{}", home.text());
    assert!(home.shows("Your role: admin"), "{}", home.text());
}
