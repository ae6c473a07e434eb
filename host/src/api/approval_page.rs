//! The approval page: the `approval_url` of a proposal, `/approve/{id}?token=av_appr_...`, as
//! server-rendered HTML that works with JavaScript off.
//!
//! The token in the link lets anyone holding it read what the agent asks for (host, methods
//! and paths, auth type, plugin, the credentials wanted) for 24 hours; deciding needs a person
//! with the member or admin role in the vault (`access::check_review`), who logs in on the
//! same page. The login sets an `av_session` cookie (HttpOnly, SameSite=Strict, sent only to
//! `/approve`) that only these pages read, and, for a browser that had none that counted, an
//! `av_device` cookie with its device token (`auth::devices`, same attributes), which the
//! next login sends so that other clients' failed sign-ins do not hold it back. Every form
//! carries a CSRF token derived from that session and this proposal. Credential values go
//! from the form straight to the vault and are never rendered back. Every piece of text an
//! agent wrote is escaped, and the Content-Security-Policy allows no script at all.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::auth::{LOGIN_MAX_SECONDS, check_login, device_token_for, start_login_session};
use super::proposals::{self as proposal_api, status_now};
use super::{ApiError, ApiState, Request, rfc3339};
use crate::auth::Session;
use crate::auth::access::Review;
use crate::auth::devices::DEVICE_IDLE_SECONDS;
use crate::proposals::{Action, Checked};
use crate::store::{self, Proposal, Vault};

const SESSION_COOKIE: &str = "av_session";
/// The browser's device token; the web console will read the same cookie.
const DEVICE_COOKIE: &str = "av_device";

/// The page's only style; the Content-Security-Policy allows exactly this text.
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:2rem auto;\
padding:0 1rem;color:#1b1b1b}h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:1.5rem}\
.quote{border-left:3px solid #999;padding-left:.75rem;white-space:pre-wrap}\
#error{color:#a00;font-weight:600}label{display:block;font-weight:600;margin-top:.75rem}\
input,textarea{font:inherit;width:100%;box-sizing:border-box;padding:.4rem}\
button{font:inherit;margin-top:1rem;padding:.4rem 1.2rem}.muted{color:#555}\
form{margin-top:1rem}code{background:#eee;padding:0 .2rem}";

fn content_security_policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Text for HTML, with every character that could end an element or attribute escaped.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · agent-vault</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// A page that only says what went wrong.
fn problem(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    page(
        status,
        "Proposal",
        &format!("<h1>Proposal</h1><p id=\"error\">{}</p>", escape(message)),
    )
}

fn redirect(location: &str, cookies: &[String]) -> Response<Full<Bytes>> {
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

/// The fields of a form body (`application/x-www-form-urlencoded`).
fn form(request: &Request) -> BTreeMap<String, Zeroizing<String>> {
    let body = String::from_utf8_lossy(&request.body);
    crate::request::raw_query_pairs(Some(&body))
        .map(|(name, value)| {
            (
                super::decode_form(name),
                Zeroizing::new(super::decode_form(value)),
            )
        })
        .collect()
}

/// The value of the cookie `name`.
fn cookie(request: &Request, name: &str) -> Option<String> {
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

/// The `av_session` cookie's value.
fn session_cookie(request: &Request) -> Option<String> {
    cookie(request, SESSION_COOKIE)
}

/// The logged-in session behind the cookie, if any is valid.
async fn cookie_session(state: &ApiState, request: &Request) -> Option<(Session, String)> {
    let token = session_cookie(request)?;
    let lookup = token.clone();
    let now = store::now();
    let session = state
        .db
        .run(move |store| Ok(crate::auth::authenticate(store, &lookup, now)))
        .await
        .ok()?
        .ok()?;
    Some((session, token))
}

/// The CSRF token of a session for one proposal: only someone holding the session's cookie
/// can compute it, and it is good for this proposal only.
fn csrf(session_token: &str, proposal: &Proposal) -> String {
    let mut digest = Sha256::new();
    digest.update(b"agent-vault approval form\0");
    digest.update(session_token.as_bytes());
    digest.update(b"\0");
    digest.update(proposal.approval_hash.as_bytes());
    hex::encode(digest.finalize())
}

/// What the link opens: the proposal and its vault, or the page that says why not.
struct Opened {
    proposal: Proposal,
    vault: Vault,
    token: String,
}

async fn open(
    state: &ApiState,
    id: &str,
    token: Option<&str>,
) -> Result<Opened, Response<Full<Bytes>>> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "This approval link is incomplete: it has no token. Open the whole link the agent gave you.",
        ));
    };
    let internal = |_| {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong; try again.",
        )
    };
    let proposal = proposal_api::by_approval_token(state, token)
        .await
        .map_err(internal)?
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, "This approval link is not valid."))?;
    if id != proposal.id.to_string() {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "This approval link does not match its proposal number.",
        ));
    }
    if proposal.approval_expires_at <= store::now() {
        return Err(problem(
            StatusCode::GONE,
            &format!(
                "This approval link has expired (links work for 24 hours). Review the proposal \
                 with: agent-vault vault proposal show {}",
                proposal.id
            ),
        ));
    }
    let vault_id = proposal.vault_id.clone();
    let vault = state
        .db
        .run(move |store| store.vault_by_id(&vault_id))
        .await
        .map_err(|error| internal(ApiError::from(error)))?
        .ok_or_else(|| {
            problem(
                StatusCode::NOT_FOUND,
                "The proposal's vault no longer exists.",
            )
        })?;
    Ok(Opened {
        proposal,
        vault,
        token: token.to_owned(),
    })
}

/// `text` with its first letter in upper case, to open a sentence.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The proposal in plain words: who, why, what changes, which credentials.
async fn summary(state: &ApiState, opened: &Opened, checked: Option<&Checked>) -> String {
    let proposal = &opened.proposal;
    let mut html = format!(
        "<h1>Proposal {} in vault {}</h1><p>{} asks for access. Proposed {}; \
         it expires {} unless approved.</p>",
        proposal.id,
        escape(&opened.vault.name),
        escape(&capitalized(
            &proposal_api::proposed_by(state, proposal).await
        )),
        rfc3339(proposal.created_at),
        rfc3339(proposal.expires_at),
    );
    if !proposal.user_message.is_empty() {
        html.push_str(&format!(
            "<h2>Message to you</h2><p class=\"quote\">{}</p>",
            escape(&proposal.user_message)
        ));
    }
    if !proposal.message.is_empty() {
        html.push_str(&format!(
            "<h2>Why</h2><p class=\"quote\">{}</p>",
            escape(&proposal.message)
        ));
    }
    match checked {
        Some(checked) => {
            if !checked.services.is_empty() {
                html.push_str("<h2>Services</h2><ul>");
                for change in &checked.services {
                    html.push_str(&format!(
                        "<li>{}</li>",
                        escape(&crate::proposals::describe(change))
                    ));
                }
                html.push_str("</ul>");
            }
            let deleted = checked.keys_to_delete();
            if !deleted.is_empty() {
                html.push_str(&format!(
                    "<h2>Credentials to delete</h2><p>{}</p>",
                    escape(&deleted.join(", "))
                ));
            }
        }
        None => html.push_str(
            "<p id=\"error\">This proposal no longer fits the vault (a service it changes is \
             gone, or a plugin changed); reject it.</p>",
        ),
    }
    html
}

/// The inputs for the credentials the approver types.
fn credential_inputs(checked: &Checked) -> String {
    let mut html = String::new();
    for slot in checked.slots.iter().filter(|s| s.action == Action::Set) {
        let name = escape(&format!("credential:{}", slot.key));
        html.push_str(&format!(
            "<label for=\"{name}\">{}</label>",
            escape(&slot.key)
        ));
        if let Some(description) = &slot.description {
            html.push_str(&format!("<p class=\"muted\">{}</p>", escape(description)));
        }
        if let Some(obtain) = &slot.obtain {
            html.push_str(&format!(
                "<p class=\"muted\">Get it at <a href=\"{0}\" rel=\"noreferrer noopener\" \
                 target=\"_blank\">{0}</a></p>",
                escape(obtain)
            ));
        }
        if let Some(instructions) = &slot.obtain_instructions {
            html.push_str(&format!(
                "<p class=\"muted quote\">{}</p>",
                escape(instructions)
            ));
        }
        html.push_str(&format!(
            "<input id=\"{name}\" name=\"{name}\" type=\"password\" autocomplete=\"off\" required>"
        ));
    }
    html
}

fn login_form(opened: &Opened) -> String {
    format!(
        "<h2>Log in to decide</h2><p>Approving or rejecting needs a member or admin of vault {}.</p>\
         <form id=\"login\" method=\"post\" action=\"/approve/{}/login\">\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\
         <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>",
        escape(&opened.vault.name),
        opened.proposal.id,
        escape(&opened.token),
    )
}

/// The approve form (or, if `approvable` says why not, that reason) and the reject form.
fn decision_forms(
    opened: &Opened,
    checked: &Checked,
    csrf: &str,
    approvable: Result<(), String>,
) -> String {
    let hidden = format!(
        "<input type=\"hidden\" name=\"token\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&opened.token),
        escape(csrf)
    );
    let id = opened.proposal.id;
    let needs_values = checked.slots.iter().any(|s| s.action == Action::Set);
    let values_heading = if needs_values {
        "<h2>Credentials</h2><p>Type each value here: it goes straight into the vault, \
         encrypted, and the agent never sees it.</p>"
    } else {
        ""
    };
    let approve = match approvable {
        Ok(()) => format!(
            "<form id=\"approve\" method=\"post\" action=\"/approve/{id}/approve\">{hidden}\
             {values_heading}{}<button type=\"submit\">Approve</button></form>",
            credential_inputs(checked),
        ),
        Err(why) => format!("<p id=\"error\">{}</p>", escape(&why)),
    };
    format!(
        "{approve}<form id=\"reject\" method=\"post\" action=\"/approve/{id}/reject\">{hidden}\
         <h2>Or reject</h2><label for=\"reason\">Reason (the agent can read it)</label>\
         <textarea id=\"reason\" name=\"reason\" rows=\"3\" maxlength=\"2000\"></textarea>\
         <button type=\"submit\">Reject</button></form>",
    )
}

/// The page for `opened`, as whoever holds `session` (if anyone) sees it, with an optional
/// error message above the forms.
async fn render(
    state: &ApiState,
    opened: &Opened,
    session: Option<&(Session, String)>,
    error: Option<(StatusCode, String)>,
) -> Response<Full<Bytes>> {
    let checked = proposal_api::pending_changes(state, &opened.vault, &opened.proposal)
        .await
        .ok();
    let mut body = summary(state, opened, checked.as_ref()).await;
    let status = error.as_ref().map_or(StatusCode::OK, |(status, _)| *status);
    if let Some((_, message)) = &error {
        body.push_str(&format!("<p id=\"error\">{}</p>", escape(message)));
    }
    let current = status_now(&opened.proposal, store::now());
    if current != "pending" {
        body.push_str(&format!(
            "<p><strong>This proposal is {current}</strong>; there is nothing left to decide.</p>"
        ));
        return page(status, "Proposal", &body);
    }
    match (session, checked) {
        (None, _) => body.push_str(&login_form(opened)),
        (Some((session, token)), Some(checked)) => {
            let (actor, vault, proposal) = (&session.actor, &opened.vault, &opened.proposal);
            match proposal_api::may_review(state, actor, vault, proposal, Review::Reject).await {
                Ok(()) => {
                    let approvable =
                        proposal_api::may_review(state, actor, vault, proposal, Review::Approve)
                            .await
                            .map_err(|denied| denied.message);
                    // Whoever decides sees whose account decides: a page someone else
                    // logged this browser into would show their name here.
                    body.push_str(&format!(
                        "<p class=\"muted\">Logged in as {}.</p>",
                        escape(&session.actor.display_name())
                    ));
                    body.push_str(&decision_forms(
                        opened,
                        &checked,
                        &csrf(token, &opened.proposal),
                        approvable,
                    ));
                }
                Err(denied) if error.is_none() => {
                    body.push_str(&format!(
                        "<p id=\"error\">Logged in as {}: {}</p>",
                        escape(&session.actor.display_name()),
                        escape(&denied.message)
                    ));
                    return page(StatusCode::FORBIDDEN, "Proposal", &body);
                }
                Err(_) => {}
            }
        }
        (Some(_), None) => {}
    }
    page(status, "Proposal", &body)
}

fn outcome(opened: &Opened, word: &str, detail: &str) -> Response<Full<Bytes>> {
    page(
        StatusCode::OK,
        word,
        &format!(
            "<h1 id=\"outcome\">{word}</h1><p>Proposal {} in vault {}: {}</p>",
            opened.proposal.id,
            escape(&opened.vault.name),
            escape(detail)
        ),
    )
}

pub async fn show(state: &ApiState, request: &Request, id: &str) -> Response<Full<Bytes>> {
    let opened = match open(state, id, request.query("token")).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let session = cookie_session(state, request).await;
    render(state, &opened, session.as_ref(), None).await
}

/// Whether a form post came from another site: the browser says so (`Sec-Fetch-Site`), or,
/// for browsers that do not send it, its `Origin` names another host than the one it posted
/// to. Such a login would sign this browser into someone else's account (login CSRF). The
/// page's `Referrer-Policy: no-referrer` makes browsers send `Origin: null`, which says
/// nothing either way.
fn cross_site(request: &Request) -> bool {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (header("origin"), header("host")) {
        (Some("null") | None, _) => false,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| !authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => true,
    }
}

pub async fn login(state: &ApiState, request: &Request, id: &str) -> Response<Full<Bytes>> {
    if cross_site(request) {
        return problem(
            StatusCode::FORBIDDEN,
            "This login did not come from this page; open the approval link again.",
        );
    }
    let fields = form(request);
    let field = |name: &str| fields.get(name).map(|v| v.as_str().to_owned());
    let opened = match open(state, id, field("token").as_deref()).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let email = field("email").unwrap_or_default();
    let password = field("password").unwrap_or_default();
    let shown_device = cookie(request, DEVICE_COOKIE).map(Zeroizing::new);
    let signed_in = match check_login(
        state,
        request.client,
        &email,
        password,
        shown_device.as_ref().map(|token| token.as_str()),
    )
    .await
    {
        Ok(signed_in) => signed_in,
        Err(error) => {
            return render(state, &opened, None, Some((error.status, error.message))).await;
        }
    };
    let (token, _) = match start_login_session(state, &signed_in.user).await {
        Ok(started) => started,
        Err(error) => return problem(error.status, &error.message),
    };
    // A new device token, or the one shown again so that the browser keeps it a year from
    // its last use, as the server does.
    let device_token = match device_token_for(state, &signed_in).await {
        Ok(Some(new)) => Some(new),
        Ok(None) => shown_device,
        Err(error) => return problem(error.status, &error.message),
    };
    let secure = if state.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let attributes = |max_age: i64| {
        format!("; HttpOnly; SameSite=Strict; Path=/approve; Max-Age={max_age}{secure}")
    };
    let mut cookies = vec![format!(
        "{SESSION_COOKIE}={token}{}",
        attributes(LOGIN_MAX_SECONDS)
    )];
    if let Some(device_token) = device_token {
        cookies.push(format!(
            "{DEVICE_COOKIE}={}{}",
            device_token.as_str(),
            attributes(DEVICE_IDLE_SECONDS)
        ));
    }
    // The token was found by its hash, so it is `av_appr_` and hex: nothing to escape.
    redirect(
        &format!("/approve/{}?token={}", opened.proposal.id, opened.token),
        &cookies,
    )
}

/// A checked decision: the proposal, the logged-in session (and its cookie token) and the
/// form, once the CSRF token matched.
struct Decision {
    opened: Opened,
    session: (Session, String),
    fields: BTreeMap<String, Zeroizing<String>>,
}

async fn decision(
    state: &ApiState,
    request: &Request,
    id: &str,
) -> Result<Decision, Response<Full<Bytes>>> {
    let fields = form(request);
    let token = fields.get("token").map(|v| v.as_str().to_owned());
    let opened = open(state, id, token.as_deref()).await?;
    let Some(session) = cookie_session(state, request).await else {
        return Err(render(
            state,
            &opened,
            None,
            Some((
                StatusCode::UNAUTHORIZED,
                "Your session has ended; log in again.".to_owned(),
            )),
        )
        .await);
    };
    let expected = csrf(&session.1, &opened.proposal);
    let sent = fields.get("csrf").map(|v| v.as_str()).unwrap_or_default();
    if !bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "This form did not come from this page; open the approval link again.",
        ));
    }
    Ok(Decision {
        opened,
        session,
        fields,
    })
}

/// The page after a decision: its outcome, or the page again with what went wrong.
async fn decided(
    state: &ApiState,
    decision: &Decision,
    result: Result<(), ApiError>,
    word: &str,
    detail: &str,
) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => outcome(&decision.opened, word, detail),
        Err(error) => {
            render(
                state,
                &decision.opened,
                Some(&decision.session),
                Some((error.status, error.message)),
            )
            .await
        }
    }
}

pub async fn approve(state: &ApiState, request: &Request, id: &str) -> Response<Full<Bytes>> {
    let mut decision = match decision(state, request, id).await {
        Ok(decision) => decision,
        Err(page) => return page,
    };
    let values: BTreeMap<String, Zeroizing<String>> = std::mem::take(&mut decision.fields)
        .into_iter()
        .filter_map(|(name, value)| {
            name.strip_prefix("credential:")
                .map(|key| (key.to_owned(), value))
        })
        .collect();
    let Decision {
        opened, session, ..
    } = &decision;
    let result = proposal_api::approve(
        state,
        &session.0.actor,
        &opened.vault,
        &opened.proposal,
        values,
    )
    .await;
    decided(
        state,
        &decision,
        result,
        "Approved",
        "the services and credentials are in the vault; the agent can use them now.",
    )
    .await
}

pub async fn reject(state: &ApiState, request: &Request, id: &str) -> Response<Full<Bytes>> {
    let decision = match decision(state, request, id).await {
        Ok(decision) => decision,
        Err(page) => return page,
    };
    let Decision {
        opened,
        session,
        fields,
    } = &decision;
    let reason = fields.get("reason").map(|v| v.as_str().to_owned());
    let result = proposal_api::reject(
        state,
        &session.0.actor,
        &opened.vault,
        &opened.proposal,
        reason,
    )
    .await;
    decided(
        state,
        &decision,
        result,
        "Rejected",
        "the agent will see that it was rejected.",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_way_out_of_text_or_attributes() {
        assert_eq!(
            escape(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn the_policy_allows_the_style_and_no_script() {
        let policy = content_security_policy();
        assert!(policy.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(!policy.contains("script-src"));
        assert!(policy.contains("form-action 'self'"));
        assert!(policy.contains("frame-ancestors 'none'"));
    }
}
