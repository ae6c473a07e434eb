//! Accepting a user invite (`/invite/{token}`), signed out: the invited person chooses a
//! password, the API creates the account (`POST /v1/users/invites/{token}/accept`, with its
//! rate limit on attempts), and the answer's session and device tokens become cookies, as
//! on `/register`. The page learns nothing about the invite before the form is posted, and
//! a wrong, used or expired link says only that, never whose it was.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::sign_in::signed_in;
use super::{Chrome, encode_component, signed_out_chrome};
use crate::api::{self, ApiState, Request};
use crate::console::{render, session};

#[derive(askama::Template)]
#[template(path = "console/accept_invite.html")]
struct AcceptInvite {
    chrome: Chrome,
    /// The invite's token as a path segment, for the form's action.
    segment: String,
    error: Option<String>,
}

/// `/invite/{token}`: the page, and its form.
pub(in crate::console) async fn route(
    state: &ApiState,
    request: &Request,
    token: &str,
) -> Response<Full<Bytes>> {
    match request.method {
        Method::POST => accept(state, request, token).await,
        _ => page(state, StatusCode::OK, token, None),
    }
}

fn page(
    state: &ApiState,
    status: StatusCode,
    token: &str,
    error: Option<String>,
) -> Response<Full<Bytes>> {
    render::page(
        status,
        &AcceptInvite {
            chrome: signed_out_chrome(state, "Accept your invite"),
            segment: encode_component(token),
            error,
        },
    )
}

async fn accept(state: &ApiState, request: &Request, token: &str) -> Response<Full<Bytes>> {
    let fields = session::form(request);
    let field = |name: &str| fields.get(name).map(|v| v.as_str()).unwrap_or_default();
    if session::cross_site(request) {
        return page(
            state,
            StatusCode::FORBIDDEN,
            token,
            Some("This form did not come from this page; try again here.".into()),
        );
    }
    if field("password") != field("confirm") {
        return page(
            state,
            StatusCode::BAD_REQUEST,
            token,
            Some("The two passwords differ.".into()),
        );
    }
    let body = json!({ "password": field("password") });
    let path = format!("/v1/users/invites/{}/accept", encode_component(token));
    let answer = api::call(state, request, None, Method::POST, &path, Some(&body)).await;
    match signed_in(state, request, answer, None) {
        Ok(cookies) => session::redirect(
            &format!("{}/", state.address.base_path().as_str()),
            &cookies,
        ),
        Err((status, message)) => page(state, status, token, Some(message)),
    }
}
