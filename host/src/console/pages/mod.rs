//! The console's pages, one file each, and what they share: the frame every page is drawn
//! in ([`Chrome`]: the navigation, who is signed in, the CSRF token, the last form's notice),
//! the page that says what went wrong, and the order in which page files are asked to
//! answer a path.

pub(super) mod accept_invite;
pub(super) mod access;
pub(super) mod account;
pub(super) mod agents;
pub(super) mod credentials;
pub(super) mod home;
pub(super) mod instance;
pub(super) mod plugins;
pub(super) mod services;
pub(super) mod sign_in;
pub(super) mod users;
pub(super) mod vault;
pub(super) mod vault_invites;
pub(super) mod vault_logs;
pub(super) mod vault_overview;
pub(super) mod vault_proposals;
pub(super) mod vault_settings;
pub(super) mod vault_tokens;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::{Console, Fields, render};
use crate::api::ApiState;

/// Each page file's routes, tried in turn: the first that knows the path answers.
pub(super) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    if let Some(answer) = sign_in::signed_in_route(console, segments).await {
        return Some(answer);
    }
    macro_rules! first_of {
        ($($page:ident),+ $(,)?) => {
            $(
                if let Some(answer) = $page::route(console, segments).await {
                    return Some(answer);
                }
            )+
        };
    }
    first_of!(
        home,
        vault_overview,
        credentials,
        services,
        vault_proposals,
        vault_logs,
        access,
        vault_tokens,
        vault_invites,
        vault_settings,
        agents,
        users,
        account,
        instance,
        plugins,
    );
    None
}

/// The lifetimes a form offers (a token's, an invite link's): each choice's value in seconds
/// and its label, and the one picked before anything was typed.
pub(crate) struct Lifetimes {
    pub choices: &'static [(&'static str, &'static str)],
    pub default: &'static str,
}

impl Lifetimes {
    /// Whether the option `value` shows selected, given what the form sent (`typed`).
    pub fn picked(&self, typed: &str, value: &str) -> bool {
        match typed {
            "" => value == self.default,
            typed => value == typed,
        }
    }

    /// The seconds of an offered choice; `None` for anything else the form sent.
    pub fn seconds(&self, typed: &str) -> Option<i64> {
        self.choices
            .iter()
            .find(|(value, _)| *value == typed)
            .and_then(|(value, _)| value.parse().ok())
    }
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

/// A posted field's value, trimmed (empty when the form left it out).
pub(crate) fn field(fields: &Fields, name: &str) -> String {
    fields
        .get(name)
        .map(|value| value.trim().to_owned())
        .unwrap_or_default()
}

/// A role as the person picked it, as the JSON the API reads: `null` for none picked.
pub(crate) fn picked(value: &str) -> serde_json::Value {
    if value.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(value.to_owned())
    }
}

impl Console<'_> {
    /// A form's one write through the API: `body` sent as `method` to `path`, then back to
    /// the console page `back` with `notice` (the API's own message when `notice` is empty),
    /// or the page with the API's refusal. The form's CSRF token is checked first.
    pub async fn act(
        &self,
        method: http::Method,
        path: &str,
        body: &serde_json::Value,
        back: &str,
        notice: &str,
    ) -> Response<Full<Bytes>> {
        if let Err(refused) = self.form() {
            return refused;
        }
        match self.send(method, path, body).await {
            Ok(answer) => {
                let said = answer["message"].as_str().unwrap_or("Done.");
                self.done(back, if notice.is_empty() { said } else { notice })
            }
            Err(error) => self.refused(error),
        }
    }
}

/// Why the API refused what a form asked, shown on the form's page beside what was typed:
/// the page answers with the API's status, and reads as its message.
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::api::ApiError> for Refusal {
    fn from(error: crate::api::ApiError) -> Refusal {
        Refusal::new(error.status, error.message)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A page's status: the refusal's, else 200.
pub(crate) fn status_of(refusal: Option<&Refusal>) -> StatusCode {
    refusal.map_or(StatusCode::OK, |refusal| refusal.status)
}

/// An RFC 3339 time from the API as a person reads it (`2026-12-08 02:45 UTC`), for
/// `#[serde(deserialize_with)]`; a time in another form stays as it is.
pub(crate) fn moment<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    Ok(readable_time(&text))
}

/// [`moment`] for a time that may be absent (`null`).
pub(crate) fn maybe_moment<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let text = <Option<String> as serde::Deserialize>::deserialize(deserializer)?;
    Ok(text.as_deref().map(readable_time))
}

fn readable_time(text: &str) -> String {
    match (text.get(..10), text.get(11..16), text.ends_with('Z')) {
        (Some(day), Some(minute), true) if text.as_bytes().get(10) == Some(&b'T') => {
            format!("{day} {minute} UTC")
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::readable_time;

    #[test]
    fn api_times_read_as_a_day_a_minute_and_utc() {
        assert_eq!(
            readable_time("2026-12-08T02:45:19Z"),
            "2026-12-08 02:45 UTC"
        );
        assert_eq!(readable_time("yesterday"), "yesterday");
        assert_eq!(readable_time("2026-12-08 02:45"), "2026-12-08 02:45");
    }
}
