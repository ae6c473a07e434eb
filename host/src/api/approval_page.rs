//! The approval page: the `approval_url` of a proposal, `/approve/{id}?token=av_appr_...`, as
//! server-rendered HTML that works with JavaScript off.
//!
//! The token in the link lets anyone holding it read what the agent asks for (host, methods
//! and paths, auth type, plugin, the credentials wanted) for 24 hours; deciding needs a person
//! with the member or admin role in the vault (`access::check_review`), who logs in on the
//! same page, or is signed in to the web console already: both set the same `av_session` and
//! `av_device` cookies (`web_session.rs`). Every form
//! carries a CSRF token derived from that session and this proposal. Credential values go
//! from the form straight to the vault and are never rendered back. Every piece of text an
//! agent wrote is escaped, and the Content-Security-Policy allows no script at all.
//!
//! This file holds what each request to the page does (open the link, log in, check and carry
//! out a decision) and the CSRF token; the HTML is in `approval_page/html.rs`.

mod html;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::auth::{check_login, device_token_for, start_login_session};
use super::proposals as proposal_api;
use super::web_session::{
    DEVICE_COOKIE, SESSION_COOKIE, cookie, cross_site, form, redirect, sign_in_cookies,
};
use super::{ApiError, ApiState, Request};
use crate::auth::Session;
use crate::store::{self, Proposal, Vault};
use html::{outcome, problem, render};

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
            state,
            StatusCode::BAD_REQUEST,
            "This approval link is incomplete: it has no token. Open the whole link the agent gave you.",
        ));
    };
    let internal = |_| {
        problem(
            state,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong; try again.",
        )
    };
    let proposal = proposal_api::by_approval_token(state, token)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            problem(
                state,
                StatusCode::NOT_FOUND,
                "This approval link is not valid.",
            )
        })?;
    if id != proposal.id.to_string() {
        return Err(problem(
            state,
            StatusCode::BAD_REQUEST,
            "This approval link does not match its proposal number.",
        ));
    }
    if proposal.approval_expires_at <= store::now() {
        return Err(problem(
            state,
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
                state,
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

pub async fn show(state: &ApiState, request: &Request, id: &str) -> Response<Full<Bytes>> {
    let opened = match open(state, id, request.query("token")).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let session = cookie_session(state, request).await;
    render(state, &opened, session.as_ref(), None).await
}

pub async fn login(state: &ApiState, request: &Request, id: &str) -> Response<Full<Bytes>> {
    if cross_site(request) {
        return problem(
            state,
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
        Err(error) => return problem(state, error.status, &error.message),
    };
    // A new device token, or the one shown again so that the browser keeps it a year from
    // its last use, as the server does.
    let device_token = match device_token_for(state, &signed_in).await {
        Ok(Some(new)) => Some(new),
        Ok(None) => shown_device,
        Err(error) => return problem(state, error.status, &error.message),
    };
    let cookies = sign_in_cookies(
        state,
        request,
        &token,
        device_token.as_ref().map(|token| token.as_str()),
    );
    let page_path = format!("{}/approve", state.address.base_path().as_str());
    // The token was found by its hash, so it is `av_appr_` and hex: nothing to escape. The
    // page's path without scheme and host: the browser goes back where it came from, the
    // base path included.
    redirect(
        &format!("{page_path}/{}?token={}", opened.proposal.id, opened.token),
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
            state,
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
        Ok(()) => outcome(state, &decision.opened, word, detail),
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
