//! The approval page's HTML: the console's look (its stylesheet, `/assets/console.css`, and
//! its top bar, without navigation) under a policy that allows that stylesheet and no script
//! at all, escaping, the proposal in plain words, the login and decision forms, and the pages
//! they make up. Every piece of text an agent wrote goes through [`escape`]; credential
//! values are never rendered back.
//!
//! What a request to the page does (opening the link, logging in, checking a decision) is in
//! `approval_page.rs`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::{Opened, csrf};
use crate::api::proposals::{self as proposal_api, status_now};
use crate::api::{ApiState, rfc3339};
use crate::auth::Session;
use crate::auth::access::Review;
use crate::proposals::{Action, Checked, wording};
use crate::store;

/// The console's policy (`crate::console::render`) without its script: the page runs none,
/// so `script-src` falls back to `default-src 'none'`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

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

fn page(state: &ApiState, status: StatusCode, title: &str, body: &str) -> Response<Full<Bytes>> {
    let base = escape(state.address.base_path().as_str());
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{} · agent-vault</title>\
         <link rel=\"stylesheet\" href=\"{base}/assets/console.css\"></head><body>\
         <header class=\"topbar\"><div class=\"topbar-inner\">\
         <a class=\"brand\" href=\"{base}/\">agent-vault</a></div></header>\
         <main id=\"main\" class=\"approval\">{body}</main></body></html>",
        escape(title)
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// A page that only says what went wrong.
pub(super) fn problem(
    state: &ApiState,
    status: StatusCode,
    message: &str,
) -> Response<Full<Bytes>> {
    page(
        state,
        status,
        "Proposal",
        &format!("<h1>Proposal</h1><p id=\"error\">{}</p>", escape(message)),
    )
}

/// The proposal in plain words: who, why, what changes, which credentials.
async fn summary(state: &ApiState, opened: &Opened, checked: Option<&Checked>) -> String {
    let proposal = &opened.proposal;
    let mut html = format!(
        "<h1>Proposal {} in vault {}</h1><p>{} Proposed {}; \
         it expires {} unless approved.</p>",
        proposal.id,
        escape(&opened.vault.name),
        escape(&wording::asks_for_access(
            &proposal_api::proposed_by(state, proposal).await
        )),
        rfc3339(proposal.created_at),
        rfc3339(proposal.expires_at),
    );
    if !proposal.user_message.is_empty() {
        html.push_str(&format!(
            "<h2>{}</h2><p class=\"quote\">{}</p>",
            wording::MESSAGE_TO_YOU,
            escape(&proposal.user_message)
        ));
    }
    if !proposal.message.is_empty() {
        html.push_str(&format!(
            "<h2>{}</h2><p class=\"quote\">{}</p>",
            wording::WHY,
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
        None => html.push_str(&format!(
            "<p id=\"error\">{}</p>",
            escape(wording::NO_LONGER_FITS)
        )),
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
            html.push_str(&format!("<p class=\"hint\">{}</p>", escape(description)));
        }
        if let Some(obtain) = &slot.obtain {
            html.push_str(&format!(
                "<p class=\"hint\">Get it at <a href=\"{0}\" rel=\"noreferrer noopener\" \
                 target=\"_blank\">{0}</a></p>",
                escape(obtain)
            ));
        }
        if let Some(instructions) = &slot.obtain_instructions {
            html.push_str(&format!(
                "<p class=\"hint quote\">{}</p>",
                escape(instructions)
            ));
        }
        html.push_str(&format!(
            "<input id=\"{name}\" name=\"{name}\" type=\"password\" autocomplete=\"off\" required>"
        ));
    }
    html
}

/// Where a form of the page posts: `what` (`login`, `approve`, `reject`) under the page's own
/// path, base path included.
fn form_action(base_path: &str, opened: &Opened, what: &str) -> String {
    escape(&format!(
        "{base_path}/approve/{}/{what}",
        opened.proposal.id
    ))
}

fn login_form(opened: &Opened, base_path: &str) -> String {
    format!(
        "<h2>Log in to decide</h2><p>Approving or rejecting needs a member or admin of vault {}.</p>\
         <section class=\"panel\"><form id=\"login\" method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\
         <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <div class=\"form-actions\"><button type=\"submit\">Log in</button></div></form></section>",
        escape(&opened.vault.name),
        form_action(base_path, opened, "login"),
        escape(&opened.token),
    )
}

/// The approve form (or, if `approvable` says why not, that reason) and the reject form.
fn decision_forms(
    opened: &Opened,
    base_path: &str,
    checked: &Checked,
    csrf: &str,
    approvable: Result<(), String>,
) -> String {
    let hidden = format!(
        "<input type=\"hidden\" name=\"token\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&opened.token),
        escape(csrf)
    );
    let (approve_action, reject_action) = (
        form_action(base_path, opened, "approve"),
        form_action(base_path, opened, "reject"),
    );
    let needs_values = checked.slots.iter().any(|s| s.action == Action::Set);
    let values_heading = if needs_values {
        format!(
            "<h2>Credentials</h2><p>{}</p>",
            escape(wording::VALUES_GO_TO_THE_VAULT)
        )
    } else {
        String::new()
    };
    let approve = match approvable {
        Ok(()) => format!(
            "<section class=\"panel\"><form id=\"approve\" method=\"post\" action=\"{approve_action}\">{hidden}\
             {values_heading}{}<div class=\"form-actions\"><button type=\"submit\">Approve</button></div></form></section>",
            credential_inputs(checked),
        ),
        Err(why) => format!("<p id=\"error\">{}</p>", escape(&why)),
    };
    format!(
        "{approve}<section class=\"panel\"><form id=\"reject\" method=\"post\" action=\"{reject_action}\">{hidden}\
         <h2>Or reject</h2><label for=\"reason\">{}</label>\
         <textarea id=\"reason\" name=\"reason\" rows=\"3\" maxlength=\"2000\"></textarea>\
         <div class=\"form-actions\"><button class=\"danger\" type=\"submit\">Reject</button></div></form></section>",
        escape(wording::REASON_LABEL),
    )
}

/// The page for `opened`, as whoever holds `session` (if anyone) sees it, with an optional
/// error message above the forms.
pub(super) async fn render(
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
        return page(state, status, "Proposal", &body);
    }
    let base_path = state.address.base_path().as_str();
    match (session, checked) {
        (None, _) => body.push_str(&login_form(opened, base_path)),
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
                        "<p class=\"hint\">Logged in as {}.</p>",
                        escape(&session.actor.display_name())
                    ));
                    body.push_str(&decision_forms(
                        opened,
                        base_path,
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
                    return page(state, StatusCode::FORBIDDEN, "Proposal", &body);
                }
                Err(_) => {}
            }
        }
        (Some(_), None) => {}
    }
    page(state, status, "Proposal", &body)
}

pub(super) fn outcome(
    state: &ApiState,
    opened: &Opened,
    word: &str,
    detail: &str,
) -> Response<Full<Bytes>> {
    page(
        state,
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
    fn the_policy_allows_the_console_stylesheet_and_no_script() {
        let policy = CONTENT_SECURITY_POLICY;
        assert!(policy.starts_with("default-src 'none'; style-src 'self';"));
        assert!(!policy.contains("script-src"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(policy.contains("form-action 'self'"));
        assert!(policy.contains("frame-ancestors 'none'"));
    }
}
