//! Signing in and out, and registering the first owner: `/login`, `/register`, `/logout`
//! (and, among the routes that need no session, `/invite/{token}`: `accept_invite.rs`).
//!
//! Each form goes to the API route a client would call (`/v1/auth/login`,
//! `/v1/auth/register`, `/v1/auth/logout`), with the browser's address, so the same rate
//! limits and device tokens apply; the answer's session and device tokens become cookies
//! (`console/session.rs`). A sign-in form posted from another site is refused (login CSRF).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::{Chrome, signed_out_chrome};
use crate::api::{self, ApiState, Request};
use crate::console::session::{self, DEVICE_COOKIE, local_path};
use crate::console::{Console, render};

#[derive(askama::Template)]
#[template(path = "console/sign_in.html")]
struct SignIn {
    chrome: Chrome,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/register.html")]
struct Register {
    chrome: Chrome,
    email: String,
    error: Option<String>,
}

/// The routes that work without a session.
pub(in crate::console) async fn route(
    state: &ApiState,
    request: &Request,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    Some(match (&request.method, segments) {
        (&Method::GET, ["login"]) => {
            let next = request
                .query("next")
                .and_then(local_path)
                .unwrap_or_default();
            sign_in_page(state, StatusCode::OK, "", next, None)
        }
        (&Method::POST, ["login"]) => sign_in(state, request).await,
        (&Method::GET, ["register"]) => register_page(state, StatusCode::OK, "", None).await,
        (&Method::POST, ["register"]) => register(state, request).await,
        (&Method::GET | &Method::POST, ["invite", token]) => {
            super::accept_invite::route(state, request, token).await
        }
        _ => return None,
    })
}

/// The routes that need one.
pub(in crate::console) async fn signed_in_route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    match (&console.request.method, segments) {
        (&Method::POST, ["logout"]) => Some(sign_out(console).await),
        _ => None,
    }
}

fn sign_in_page(
    state: &ApiState,
    status: StatusCode,
    email: &str,
    next: &str,
    error: Option<String>,
) -> Response<Full<Bytes>> {
    render::page(
        status,
        &SignIn {
            chrome: signed_out_chrome(state, "Sign in"),
            email: email.to_owned(),
            next: next.to_owned(),
            error,
        },
    )
}

async fn sign_in(state: &ApiState, request: &Request) -> Response<Full<Bytes>> {
    let fields = session::form(request);
    let field = |name: &str| fields.get(name).map(|v| v.as_str()).unwrap_or_default();
    let email = field("email").trim().to_owned();
    let next = local_path(field("next")).unwrap_or_default().to_owned();
    if session::cross_site(request) {
        return sign_in_page(
            state,
            StatusCode::FORBIDDEN,
            &email,
            &next,
            Some("This sign-in did not come from this page; try again here.".into()),
        );
    }
    let device = session::cookie(request, DEVICE_COOKIE);
    let body = json!({ "email": email, "password": field("password"), "device_token": device });
    let answer = api::call(
        state,
        request,
        None,
        Method::POST,
        "/v1/auth/login",
        Some(&body),
    )
    .await;
    match signed_in(state, request, answer, device.as_deref()) {
        Ok(cookies) => {
            let to = if next.is_empty() {
                format!("{}/", state.address.base_path().as_str())
            } else {
                next
            };
            session::redirect(&to, &cookies)
        }
        Err((status, message)) => sign_in_page(state, status, &email, &next, Some(message)),
    }
}

/// The cookies of a sign-in the API answered (login, register, accepting an invite), or its
/// refusal's status and message.
pub(in crate::console) fn signed_in(
    state: &ApiState,
    request: &Request,
    answer: Result<api::Answer, api::ApiError>,
    shown_device: Option<&str>,
) -> Result<Vec<String>, (StatusCode, String)> {
    let answer = answer.map_err(|error| (error.status, error.message))?;
    if !answer.status.is_success() {
        let message = answer.body["error"]
            .as_str()
            .unwrap_or("The server refused this.")
            .to_owned();
        return Err((answer.status, message));
    }
    let Some(token) = answer.body["token"].as_str() else {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server gave no session.".into(),
        ));
    };
    // A new device token, or the one shown again so that the browser keeps it a year from
    // its last use, as the server does.
    let device = answer.body["device_token"].as_str().or(shown_device);
    Ok(session::sign_in_cookies(state, request, token, device))
}

async fn register_page(
    state: &ApiState,
    status: StatusCode,
    email: &str,
    error: Option<String>,
) -> Response<Full<Bytes>> {
    if matches!(state.initialized().await, Ok(true)) && error.is_none() {
        return session::redirect(
            &format!("{}/login", state.address.base_path().as_str()),
            &[],
        );
    }
    render::page(
        status,
        &Register {
            chrome: signed_out_chrome(state, "Create the owner account"),
            email: email.to_owned(),
            error,
        },
    )
}

async fn register(state: &ApiState, request: &Request) -> Response<Full<Bytes>> {
    let fields = session::form(request);
    let field = |name: &str| fields.get(name).map(|v| v.as_str()).unwrap_or_default();
    let email = field("email").trim().to_owned();
    if session::cross_site(request) {
        return register_page(
            state,
            StatusCode::FORBIDDEN,
            &email,
            Some("This form did not come from this page; try again here.".into()),
        )
        .await;
    }
    if field("password") != field("confirm") {
        return register_page(
            state,
            StatusCode::BAD_REQUEST,
            &email,
            Some("The two passwords differ.".into()),
        )
        .await;
    }
    let body = json!({ "email": email, "password": field("password") });
    let answer = api::call(
        state,
        request,
        None,
        Method::POST,
        "/v1/auth/register",
        Some(&body),
    )
    .await;
    match signed_in(state, request, answer, None) {
        Ok(cookies) => session::redirect(
            &format!("{}/", state.address.base_path().as_str()),
            &cookies,
        ),
        Err((status, message)) => register_page(state, status, &email, Some(message)).await,
    }
}

async fn sign_out(console: &Console<'_>) -> Response<Full<Bytes>> {
    if let Err(refused) = console.form() {
        return refused;
    }
    if let Err(error) = console
        .send(Method::POST, "/v1/auth/logout", &json!({}))
        .await
    {
        return console.refused(error);
    }
    session::redirect(
        &console.link("/login"),
        &[session::sign_out_cookie(console.state)],
    )
}
