//! The web console: people manage vaults, credentials, services, agents, proposals and the
//! request log in the browser, on the control-plane port, at the paths Agent Vault's web UI
//! uses (`/`, `/login`, `/vaults/{name}/...`, `/agents`, `/users`, `/account`, `/manage/...`).
//!
//! The console is a client of the API, in-process: every page reads, and every form does,
//! what a call to `/v1/...` would, as the signed-in person ([`Console::get`],
//! [`Console::send`] over `api::call`). So the console shows and does exactly what the API
//! lets that person see and do: the permission checks live in one place. Pages are
//! server-rendered HTML (askama templates in `host/templates/console/`); every action is a
//! plain form that works with JavaScript off, carries a CSRF token, and answers with a
//! redirect to a page that says what happened.
//!
//! This file holds the routes and the signed-in context every page gets; `render.rs` the
//! headers and assets, `pages/` one file per page. The cookies and CSRF token are the API's
//! `web_session.rs`, shared with the approval page. The console imports the API, never the
//! other way round: `server.rs` sends it the paths the API does not own (`api::owns`).

// A console function that cannot go on returns the page that says why, as its `Err`: that
// page is the request's answer, made once per request, so it is not worth boxing.
#![allow(clippy::result_large_err)]

mod chart;
mod pages;
mod render;

/// The cookies, CSRF tokens and cross-site check, which the approval page uses too.
pub(crate) use crate::api::web_session as session;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::api::{self, ApiError, ApiState, Request};

/// The fields of a submitted form.
pub(crate) type Fields = BTreeMap<String, Zeroizing<String>>;

/// Serve one request for a console path (anything [`api::owns`] does not) from the TCP peer
/// `peer`.
pub async fn handle(
    state: std::sync::Arc<ApiState>,
    request: http::Request<hyper::body::Incoming>,
    peer: std::net::IpAddr,
) -> Response<Full<Bytes>> {
    let mut response = match api::read_request(&state, request, peer).await {
        Ok(request) => route(&state, &request).await,
        Err(error) => pages::problem_page(&state, None, error.status, &error.message),
    };
    api::harden(&mut response);
    response
}

/// Answer a request for a console path.
async fn route(state: &ApiState, request: &Request) -> Response<Full<Bytes>> {
    let owned = request.segments();
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    // A path whose segments climb (`..`, `.`) or hide a `/` (`%2F`) names no page; refused
    // before anything else, signed in or not.
    if segments
        .iter()
        .any(|segment| matches!(*segment, "." | "..") || segment.contains('/'))
    {
        return not_found(state);
    }
    if let (&Method::GET, ["assets", name]) = (&request.method, segments.as_slice()) {
        return render::asset(name).unwrap_or_else(|| not_found(state));
    }
    if let Some(response) = pages::sign_in::route(state, request, &segments).await {
        return response;
    }
    let console = match Console::open(state, request).await {
        Ok(console) => console,
        Err(response) => return response,
    };
    let answer = pages::route(&console, &segments).await;
    answer.unwrap_or_else(|| console.problem(StatusCode::NOT_FOUND, "There is no such page."))
}

/// The page for a path that is not one, to a browser that may not be signed in.
fn not_found(state: &ApiState) -> Response<Full<Bytes>> {
    pages::problem_page(state, None, StatusCode::NOT_FOUND, "There is no such page.")
}

/// Who is signed in, as `GET /v1/auth/me` says.
#[derive(Debug, Deserialize)]
pub(crate) struct Me {
    pub email: String,
    #[serde(default)]
    pub is_owner: bool,
}

/// A request from a signed-in person: what every page gets.
pub(crate) struct Console<'a> {
    pub state: &'a ApiState,
    pub request: &'a Request,
    /// The login session's token, from the cookie.
    token: Zeroizing<String>,
    pub me: Me,
}

impl<'a> Console<'a> {
    /// The signed-in person behind the session cookie, or the answer that sends the browser
    /// to sign in (or, before the first owner exists, to register).
    async fn open(
        state: &'a ApiState,
        request: &'a Request,
    ) -> Result<Self, Response<Full<Bytes>>> {
        let base = state.address.base_path().as_str();
        match state.initialized().await {
            Ok(true) => {}
            Ok(false) => return Err(session::redirect(&format!("{base}/register"), &[])),
            Err(error) => {
                return Err(pages::problem_page(
                    state,
                    None,
                    error.status,
                    &error.message,
                ));
            }
        }
        let to_sign_in = || {
            let next = match request.method {
                Method::GET => format!(
                    "?next={}",
                    pages::encode_component(&format!("{base}{}", request.path))
                ),
                _ => String::new(),
            };
            session::redirect(&format!("{base}/login{next}"), &[])
        };
        let Some(token) = session::cookie(request, session::SESSION_COOKIE) else {
            return Err(to_sign_in());
        };
        let token = Zeroizing::new(token);
        let me = api::call(
            state,
            request,
            Some(&token),
            Method::GET,
            "/v1/auth/me",
            None,
        )
        .await
        .ok()
        .filter(|answer| answer.status.is_success() && answer.body["type"] == "user")
        .and_then(|answer| serde_json::from_value::<Me>(answer.body).ok());
        match me {
            Some(me) => Ok(Console {
                state,
                request,
                token,
                me,
            }),
            None => Err(to_sign_in()),
        }
    }

    /// The API's answer to a `GET` of `path` (`/v1/...`), as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let answer = self.call(Method::GET, path, None).await?;
        serde_json::from_value(answer).map_err(|error| {
            tracing::error!(%error, path, "the console could not read an API answer");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The console could not read the server's answer.",
            )
        })
    }

    /// The API's answer to `method` on `path` with a JSON `body`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        self.call(method, path, Some(body)).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ApiError> {
        let answer = api::call(
            self.state,
            self.request,
            Some(&self.token),
            method,
            path,
            body,
        )
        .await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            let message = answer.body["error"]
                .as_str()
                .unwrap_or("The server refused this.")
                .to_owned();
            Err(ApiError::new(answer.status, message))
        }
    }

    /// The fields of a posted form, once its CSRF token is this session's; else the page
    /// that says the form did not come from the console.
    pub fn form(&self) -> Result<Fields, Response<Full<Bytes>>> {
        let fields = session::form(self.request);
        let sent = fields.get("csrf").map(|v| v.as_str()).unwrap_or_default();
        if session::csrf_matches(&self.token, sent) && !session::cross_site(self.request) {
            Ok(fields)
        } else {
            Err(self.problem(
                StatusCode::FORBIDDEN,
                "This form did not come from this console; open the page again and resubmit.",
            ))
        }
    }

    /// The CSRF token for this session's forms.
    pub fn csrf(&self) -> String {
        session::csrf(&self.token)
    }

    /// A console path with the base path in front, for links and redirects.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.state.address.base_path().as_str())
    }

    /// After a form did what it asked: back to `path`, which then shows `notice`.
    pub fn done(&self, path: &str, notice: &str) -> Response<Full<Bytes>> {
        session::redirect(
            &self.link(path),
            &[session::notice_cookie(self.state, notice)],
        )
    }

    /// The notice the last form left, if any.
    pub fn notice(&self) -> Option<String> {
        session::cookie(self.request, session::NOTICE_COOKIE)
            .map(|value| pages::decode_component(&value))
            .filter(|notice| !notice.is_empty())
    }

    /// A page in the console's frame that says what went wrong.
    pub fn problem(&self, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
        pages::problem_page(self.state, Some(self), status, message)
    }

    /// An API refusal as a page.
    pub fn refused(&self, error: ApiError) -> Response<Full<Bytes>> {
        self.problem(error.status, &error.message)
    }

    /// A page of this console: the template rendered, and the notice it showed forgotten.
    pub fn page(&self, template: &impl askama::Template) -> Response<Full<Bytes>> {
        self.page_with_status(StatusCode::OK, template)
    }

    /// [`Console::page`] with another status than 200: a form shown again beside the API's
    /// refusal keeps the refusal's status.
    pub fn page_with_status(
        &self,
        status: StatusCode,
        template: &impl askama::Template,
    ) -> Response<Full<Bytes>> {
        let mut response = render::page(status, template);
        let forget = session::notice_cookie(self.state, "");
        if let (Some(_), Ok(value)) = (
            session::cookie(self.request, session::NOTICE_COOKIE),
            http::HeaderValue::from_str(&forget),
        ) {
            response
                .headers_mut()
                .append(http::header::SET_COOKIE, value);
        }
        response
    }
}
