//! The account page (`/account`): the signed-in person changes their password
//! (`POST /v1/auth/change-password`) and sees and ends their own login sessions and devices
//! (`/v1/auth/sessions`, `/v1/auth/devices/{id}`). A new password ends every session but a
//! new one, which the API answers with: its cookies are set again so this browser stays
//! signed in. Ending this browser's own session signs it out. `/change-password` (Agent
//! Vault's path) leads here.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::{Chrome, Refusal, encode_component, status_of};
use crate::console::Console;
use crate::console::session::{self, DEVICE_COOKIE};

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    let post = console.request.method == Method::POST;
    Some(match segments {
        ["account"] if !post => page(console, None).await,
        ["change-password"] if !post => session::redirect(&console.link("/account"), &[]),
        ["account", "password"] if post => change_password(console).await,
        ["account", "sessions", id, "revoke"] if post => end_session(console, id).await,
        ["account", "devices", id, "revoke"] if post => {
            let path = format!("/v1/auth/devices/{}", encode_component(id));
            console
                .act(
                    Method::DELETE,
                    &path,
                    &json!({}),
                    "/account",
                    "That device now signs in as a new one.",
                )
                .await
        }
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Sessions {
    sessions: Vec<LoginSession>,
    devices: Vec<Device>,
}

#[derive(Deserialize)]
struct LoginSession {
    id: String,
    #[serde(deserialize_with = "super::moment")]
    created_at: String,
    #[serde(deserialize_with = "super::moment")]
    last_used_at: String,
    #[serde(default, deserialize_with = "super::maybe_moment")]
    expires_at: Option<String>,
    #[serde(default)]
    current: bool,
}

#[derive(Deserialize)]
struct Device {
    id: String,
    #[serde(deserialize_with = "super::moment")]
    created_at: String,
    #[serde(deserialize_with = "super::moment")]
    last_used_at: String,
}

#[derive(askama::Template)]
#[template(path = "console/account.html")]
struct Account {
    chrome: Chrome,
    sessions: Vec<LoginSession>,
    devices: Vec<Device>,
    /// Why the password form was refused.
    error: Option<Refusal>,
}

async fn page(console: &Console<'_>, error: Option<Refusal>) -> Response<Full<Bytes>> {
    let listed = match console.get::<Sessions>("/v1/auth/sessions").await {
        Ok(listed) => listed,
        Err(error) => return console.refused(error),
    };
    let status = status_of(error.as_ref());
    console.page_with_status(
        status,
        &Account {
            chrome: console.chrome("Your account", "account"),
            sessions: listed.sessions,
            devices: listed.devices,
            error,
        },
    )
}

async fn change_password(console: &Console<'_>) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let field = |name: &str| fields.get(name).map(|v| v.as_str()).unwrap_or_default();
    if field("new_password") != field("confirm") {
        let differ = Refusal::new(StatusCode::BAD_REQUEST, "The two new passwords differ.");
        return page(console, Some(differ)).await;
    }
    let device = session::cookie(console.request, DEVICE_COOKIE);
    let body = json!({
        "current_password": field("current_password"),
        "new_password": field("new_password"),
        "device_token": device,
    });
    match console
        .send(Method::POST, "/v1/auth/change-password", &body)
        .await
    {
        Ok(answer) => {
            let Some(token) = answer["token"].as_str() else {
                return console.problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The server gave no new session.",
                );
            };
            let device = answer["device_token"].as_str().or(device.as_deref());
            let mut cookies =
                session::sign_in_cookies(console.state, console.request, token, device);
            cookies.push(session::notice_cookie(
                console.state,
                "Password changed; every other session of yours has ended.",
            ));
            session::redirect(&console.link("/account"), &cookies)
        }
        Err(error) if error.status.is_client_error() => page(console, Some(error.into())).await,
        Err(error) => console.refused(error),
    }
}

async fn end_session(console: &Console<'_>, id: &str) -> Response<Full<Bytes>> {
    if let Err(refused) = console.form() {
        return refused;
    }
    let path = format!("/v1/auth/sessions/{}", encode_component(id));
    match console.send(Method::DELETE, &path, &json!({})).await {
        Ok(answer) if answer["current"] == true => session::redirect(
            &console.link("/login"),
            &[session::sign_out_cookie(console.state)],
        ),
        Ok(_) => console.done("/account", "That session has ended."),
        Err(error) => console.refused(error),
    }
}
