//! The console's pages, one file each, and what they share: the frame every page is drawn
//! in ([`Chrome`]: the navigation, who is signed in, the CSRF token, the last form's notice),
//! the page that says what went wrong, and the order in which page files are asked to
//! answer a path.

pub(super) mod home;
pub(super) mod plugins;
pub(super) mod sign_in;
pub(super) mod vault;
pub(super) mod vault_overview;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::{Console, render};
use crate::api::ApiState;

/// Each page file's routes, tried in turn: the first that knows the path answers.
pub(super) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    if let Some(answer) = sign_in::signed_in_route(console, segments).await {
        return Some(answer);
    }
    if let Some(answer) = home::route(console, segments).await {
        return Some(answer);
    }
    if let Some(answer) = vault_overview::route(console, segments).await {
        return Some(answer);
    }
    if let Some(answer) = plugins::route(console, segments).await {
        return Some(answer);
    }
    None
}

/// The frame of a page: what `layout.html` draws around every page's content.
pub(crate) struct Chrome {
    /// The base path, in front of every link.
    pub base: String,
    pub title: String,
    /// Which entry of the navigation is this page's: `vaults`, `agents`, `users`,
    /// `plugins`, `instance` or `account` (empty for none).
    pub section: &'static str,
    /// The signed-in person (none on the sign-in pages: no navigation then).
    pub email: Option<String>,
    pub is_owner: bool,
    /// The token every form of the page carries.
    pub csrf: String,
    /// What the last form did.
    pub notice: Option<String>,
}

impl Console<'_> {
    /// The frame of a page titled `title` in the navigation's `section`.
    pub fn chrome(&self, title: impl Into<String>, section: &'static str) -> Chrome {
        Chrome {
            base: self.state.address.base_path().as_str().to_owned(),
            title: title.into(),
            section,
            email: Some(self.me.email.clone()),
            is_owner: self.me.is_owner,
            csrf: self.csrf(),
            notice: self.notice(),
        }
    }
}

/// The frame of a page for a browser that is not signed in.
pub(crate) fn signed_out_chrome(state: &ApiState, title: impl Into<String>) -> Chrome {
    Chrome {
        base: state.address.base_path().as_str().to_owned(),
        title: title.into(),
        section: "",
        email: None,
        is_owner: false,
        csrf: String::new(),
        notice: None,
    }
}

#[derive(askama::Template)]
#[template(path = "console/problem.html")]
struct Problem {
    chrome: Chrome,
    heading: String,
    message: String,
}

/// A page that says what went wrong, in the signed-in frame if there is a console.
pub(crate) fn problem_page(
    state: &ApiState,
    console: Option<&Console<'_>>,
    status: StatusCode,
    message: &str,
) -> Response<Full<Bytes>> {
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::UNAUTHORIZED => "Sign in again",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        status if status.is_client_error() => "That did not work",
        _ => "Something went wrong",
    };
    let chrome = match console {
        Some(console) => console.chrome(heading, ""),
        None => signed_out_chrome(state, heading),
    };
    render::page(
        status,
        &Problem {
            chrome,
            heading: heading.to_owned(),
            message: message.to_owned(),
        },
    )
}

/// What [`encode_component`] leaves as it is: letters, digits and `-._~` (RFC 3986's
/// unreserved characters).
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Text as one path segment or query value.
pub(crate) fn encode_component(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, COMPONENT).to_string()
}

/// A percent-encoded component back to text.
pub(crate) fn decode_component(text: &str) -> String {
    crate::request::decode_component(text)
}
