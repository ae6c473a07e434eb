//! The users page (`/users`): the people of this instance (`GET /v1/users`) and the
//! invites the person may see (`GET /v1/users/invites`: owners all, members their own);
//! inviting someone (the invite link shown once, in the answer to the form), revoking an
//! invite, and, for owners, changing a person's instance role or removing them
//! (`/v1/admin/users/...`: the API refuses anyone else). The invite link opens
//! `/invite/{token}` (`accept_invite.rs`).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::{Chrome, Refusal, encode_component, field, picked, status_of};
use crate::console::Console;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    let post = console.request.method == Method::POST;
    Some(match segments {
        ["users"] if !post => page(console, Shown::default()).await,
        ["users", "invites"] if post => invite(console).await,
        ["users", "invites", id, "revoke"] if post => {
            let path = format!("/v1/users/invites/{}", encode_component(id));
            console
                .act(Method::DELETE, &path, &json!({}), "/users", "")
                .await
        }
        ["users", email, "role"] if post => set_role(console, email).await,
        ["users", email, "remove"] if post => {
            let path = format!("/v1/admin/users/{}", encode_component(email));
            console
                .act(
                    Method::DELETE,
                    &path,
                    &json!({}),
                    "/users",
                    &format!("{email} was removed."),
                )
                .await
        }
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Users {
    users: Vec<User>,
}

#[derive(Deserialize)]
struct User {
    email: String,
    role: String,
    /// Shown to owners only.
    vaults: Option<Vec<Assigned>>,
}

#[derive(Deserialize)]
struct Assigned {
    vault_name: String,
    vault_role: String,
}

#[derive(Deserialize)]
struct Invites {
    invites: Vec<Invite>,
}

#[derive(Deserialize)]
struct Invite {
    id: String,
    email: String,
    role: String,
    #[serde(deserialize_with = "super::moment")]
    expires_at: String,
}

/// An invite just made: its link, shown once.
#[derive(Deserialize)]
struct Created {
    email: String,
    invite_link: String,
    #[serde(deserialize_with = "super::moment")]
    expires_at: String,
}

/// What the page shows besides the lists: the invite just made, or why the invite form was
/// refused (with the form as typed).
#[derive(Default)]
struct Shown {
    created: Option<Created>,
    error: Option<Refusal>,
    email: String,
    role: String,
}

#[derive(askama::Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<User>,
    invites: Vec<Invite>,
    shown: Shown,
}

impl UsersPage {
    fn segment(&self, text: &str) -> String {
        encode_component(text)
    }

    fn is_me(&self, email: &str) -> bool {
        self.chrome.email.as_deref() == Some(email)
    }
}

async fn page(console: &Console<'_>, shown: Shown) -> Response<Full<Bytes>> {
    let users = match console.get::<Users>("/v1/users").await {
        Ok(listed) => listed.users,
        Err(error) => return console.refused(error),
    };
    let invites = match console
        .get::<Invites>("/v1/users/invites?status=pending")
        .await
    {
        Ok(listed) => listed.invites,
        Err(error) => return console.refused(error),
    };
    let status = status_of(shown.error.as_ref());
    console.page_with_status(
        status,
        &UsersPage {
            chrome: console.chrome("Users", "users"),
            users,
            invites,
            shown,
        },
    )
}

async fn invite(console: &Console<'_>) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let mut shown = Shown {
        email: field(&fields, "email"),
        role: field(&fields, "role"),
        ..Shown::default()
    };
    let body = json!({ "email": shown.email, "role": picked(&shown.role) });
    match console.send(Method::POST, "/v1/users/invites", &body).await {
        Ok(answer) => match serde_json::from_value::<Created>(answer) {
            Ok(created) => {
                let shown = Shown {
                    created: Some(created),
                    ..Shown::default()
                };
                page(console, shown).await
            }
            Err(_) => console.problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The console could not read the server's answer.",
            ),
        },
        Err(error) if error.status.is_client_error() && error.status != StatusCode::FORBIDDEN => {
            shown.error = Some(error.into());
            page(console, shown).await
        }
        Err(error) => console.refused(error),
    }
}

async fn set_role(console: &Console<'_>, email: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let role = field(&fields, "role");
    let path = format!("/v1/admin/users/{}/role", encode_component(email));
    console
        .act(
            Method::POST,
            &path,
            &json!({ "role": picked(&role) }),
            "/users",
            &format!("{email} now has the {role} role."),
        )
        .await
}
