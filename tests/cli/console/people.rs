//! What the tests of the people pages share (`access.rs`, `agents.rs`, `users.rs`,
//! `account.rs`): a second person with an account, and the secret a page shows once.

use serde_json::json;

use super::{Page, Web};
use crate::support::{DataDir, MASTER_PASSWORD, Server};

pub const OWNER: &str = "owner@example.com";
pub const PASSWORD: &str = "correct horse battery staple";

/// A server that logs all it can (`--log-level debug`), for tests that look for a secret in
/// its log.
pub fn logging_server(data: &DataDir) -> Server {
    Server::start_with(
        data,
        &["--log-level", "debug"],
        &[("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD)],
    )
}

/// A server with its owner signed in on the console; the owner's API token too.
pub fn owner(server: &Server) -> (Web, String) {
    let web = Web::register_owner(server, OWNER, PASSWORD);
    let token = web.cookie("av_session").unwrap().to_owned();
    (web, token)
}

/// A person with an account and `role` on the instance (invited by the owner and accepted
/// through the API), signed in on the console.
pub fn person(server: &Server, owner_token: &str, email: &str, role: &str) -> Web {
    let (status, invite) = server.call(
        "POST",
        "/v1/users/invites",
        Some(owner_token),
        Some(&json!({ "email": email, "role": role })),
    );
    assert_eq!(status, 201, "{invite}");
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

/// The text of the page's `<pre id="ID">`: a secret shown once (a token, a prompt, a link).
pub fn shown_once(page: &Page, id: &str) -> String {
    let start = format!("<pre id=\"{id}\">");
    let at = page
        .body
        .find(&start)
        .unwrap_or_else(|| panic!("no {id} on the page: {}", page.text()))
        + start.len();
    let end = page.body[at..].find("</pre>").unwrap();
    page.body[at..at + end]
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#34;", "\"")
        .replace("&#38;", "&")
}

/// Whether any line the server logged so far holds `secret`.
pub fn logged(server: &Server, secret: &str) -> bool {
    server.log_so_far().iter().any(|line| line.contains(secret))
}
