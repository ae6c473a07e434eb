//! The browser's side of signing in, shared by the web console (`crate::console`) and the
//! approval page: the
//! `av_session` and `av_device` cookies, form bodies, the CSRF token every console form
//! carries, and the check that a form post came from this site.
//!
//! The session cookie holds a login session's token (the same kind `agent-vault auth login`
//! gets), `HttpOnly; SameSite=Strict`, `Secure` when the console is reached over TLS, and its
//! path is the base path: one sign-in serves every page, the approval page's included. The
//! device cookie holds the browser's device token (`auth::devices`), so that other clients'
//! failed sign-ins at the same address do not hold this browser back.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{ApiState, Request};

/// The login session's cookie.
pub(crate) const SESSION_COOKIE: &str = "av_session";
/// The browser's device token.
pub(crate) const DEVICE_COOKIE: &str = "av_device";
/// What the last form did, shown once on the page it led to.
pub(crate) const NOTICE_COOKIE: &str = "av_notice";

/// A `303 See Other` to `location`, setting `cookies`.
pub(crate) fn redirect(location: &str, cookies: &[String]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    for cookie in cookies {
        if let Ok(mut cookie) = HeaderValue::from_str(cookie) {
            cookie.set_sensitive(true);
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
    response
}

/// The fields of a form body (`application/x-www-form-urlencoded`); values are wiped when
/// dropped, since some are passwords and credential values.
pub(crate) fn form(request: &Request) -> BTreeMap<String, Zeroizing<String>> {
    let body = String::from_utf8_lossy(&request.body);
    crate::request::raw_query_pairs(Some(&body))
        .map(|(name, value)| {
            (
                crate::api::decode_form(name),
                Zeroizing::new(crate::api::decode_form(value)),
            )
        })
        .collect()
}

/// The value of the cookie `name`.
pub(crate) fn cookie(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_owned())
}

/// The path the cookies are sent to: the whole console, under the base path.
fn cookie_path(state: &ApiState) -> String {
    match state.address.base_path().as_str() {
        "" => "/".to_owned(),
        base => base.to_owned(),
    }
}

/// The `Set-Cookie` values that sign this browser in with the login session `token`, and
/// keep (or give it) the device token `device`.
pub(crate) fn sign_in_cookies(
    state: &ApiState,
    request: &Request,
    token: &str,
    device: Option<&str>,
) -> Vec<String> {
    let secure = if request.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let path = cookie_path(state);
    let attributes = |max_age: i64| {
        format!("; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}")
    };
    let mut cookies = vec![format!(
        "{SESSION_COOKIE}={token}{}",
        attributes(crate::api::LOGIN_MAX_SECONDS)
    )];
    if let Some(device) = device {
        cookies.push(format!(
            "{DEVICE_COOKIE}={device}{}",
            attributes(crate::auth::devices::DEVICE_IDLE_SECONDS)
        ));
    }
    cookies
}

/// The `Set-Cookie` value that forgets the session cookie (the device cookie stays: it is
/// what lets this browser sign in again while others fail at the same address).
pub(crate) fn sign_out_cookie(state: &ApiState) -> String {
    format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path={}; Max-Age=0",
        cookie_path(state)
    )
}

/// The `Set-Cookie` value that leaves `notice` for the next page (an empty one forgets it).
pub(crate) fn notice_cookie(state: &ApiState, notice: &str) -> String {
    let max_age = if notice.is_empty() { 0 } else { 60 };
    format!(
        "{NOTICE_COOKIE}={}; HttpOnly; SameSite=Strict; Path={}; Max-Age={max_age}",
        percent_encoding::utf8_percent_encode(notice, percent_encoding::NON_ALPHANUMERIC),
        cookie_path(state)
    )
}

/// The CSRF token of the console's forms for a login session: only someone holding the
/// session's cookie can compute it.
pub(crate) fn csrf(session_token: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"agent-vault console form\0");
    digest.update(session_token.as_bytes());
    hex::encode(digest.finalize())
}

/// Whether a form's `csrf` field is the session's token.
pub(crate) fn csrf_matches(session_token: &str, sent: &str) -> bool {
    bool::from(csrf(session_token).as_bytes().ct_eq(sent.as_bytes()))
}

/// Whether a form post came from another site: the browser says so (`Sec-Fetch-Site`), or,
/// for browsers that do not send it, its `Origin` names another host than the one it posted
/// to (the `Host` it sent, or behind a trusted reverse proxy the public one). Such a sign-in
/// would sign this browser into someone else's account (login CSRF). The pages'
/// `Referrer-Policy: no-referrer` makes browsers send `Origin: null`, which says nothing
/// either way.
pub(crate) fn cross_site(request: &Request) -> bool {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = header("origin").filter(|origin| *origin != "null") else {
        return false;
    };
    let Some((_, authority)) = origin.split_once("://") else {
        return true;
    };
    let posted_to = header("host").is_some_and(|host| authority.eq_ignore_ascii_case(host));
    !posted_to && !same_origin(origin, &request.base_url)
}

/// Whether `origin` (`scheme://authority`) is the origin of `url`.
fn same_origin(origin: &str, url: &str) -> bool {
    url.get(..origin.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(origin))
        && matches!(url.as_bytes().get(origin.len()), None | Some(b'/'))
}

/// A console path to go to after signing in (`?next=`), if it is one: a path of this site
/// (`/` then not `/` or `\`, which browsers would read as another host), printable ASCII.
pub(crate) fn local_path(next: &str) -> Option<&str> {
    let bytes = next.as_bytes();
    let local = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.iter().all(|b| b.is_ascii_graphic())
        && next.len() <= 512;
    local.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::{local_path, same_origin};

    #[test]
    fn the_public_origin_is_matched_whole() {
        let public = "https://tools.example.com/agent-vault";
        assert!(same_origin("https://tools.example.com", public));
        assert!(same_origin("HTTPS://Tools.Example.com", public));
        assert!(same_origin(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080"
        ));
        for other in [
            "https://tools.example",
            "https://tools.example.com.evil",
            "http://tools.example.com",
            "https://tools.example.com:8443",
        ] {
            assert!(!same_origin(other, public), "{other}");
        }
    }

    #[test]
    fn only_paths_of_this_site_are_followed_after_sign_in() {
        assert_eq!(
            local_path("/vaults/default/logs"),
            Some("/vaults/default/logs")
        );
        for elsewhere in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "vaults",
            "/a b",
            "",
        ] {
            assert_eq!(local_path(elsewhere), None, "{elsewhere}");
        }
    }
}
