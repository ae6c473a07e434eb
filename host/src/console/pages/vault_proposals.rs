//! A vault's proposals (`/vaults/{name}/proposals`): what agents asked for, pending first,
//! and one proposal's page (`/proposals/{id}`) with what it would change and the forms that
//! approve it (the credential values typed in password fields) or reject it (a reason the
//! agent reads). Reading and deciding go through `/v1/admin/proposals`, so the approval
//! page's rules hold here too: only a member or admin of the vault decides, never on a
//! proposal they made or an agent of their session made. The words a reviewer reads are
//! the approval page's (`proposals/wording.rs`).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::Chrome;
use super::vault::VaultFrame;
use crate::console::{Console, Fields};
use crate::proposals::wording;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    match (&console.request.method, segments) {
        (&Method::GET, ["vaults", name, "proposals"]) => Some(list(console, name).await),
        (&Method::GET, ["vaults", name, "proposals", id]) => {
            Some(show(console, name, id, None).await)
        }
        (&Method::POST, ["vaults", name, "proposals", id, "approve"]) => {
            Some(decide(console, name, id, Decision::Approve).await)
        }
        (&Method::POST, ["vaults", name, "proposals", id, "reject"]) => {
            Some(decide(console, name, id, Decision::Reject).await)
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct Listed {
    proposals: Vec<Proposal>,
}

/// A proposal as `/v1/admin/proposals` gives it.
#[derive(Deserialize)]
struct Proposal {
    id: i64,
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    user_message: String,
    review_note: Option<String>,
    created_at: String,
    expires_at: String,
    #[serde(default)]
    credentials: Vec<Slot>,
    /// The changes to services in words; absent when the proposal no longer fits the vault.
    changes: Option<Vec<String>>,
    #[serde(default)]
    proposed_by: String,
}

#[derive(Deserialize)]
struct Slot {
    #[serde(default)]
    action: Option<String>,
    key: String,
    description: Option<String>,
    obtain: Option<String>,
    obtain_instructions: Option<String>,
}

impl Slot {
    fn deletes(&self) -> bool {
        self.action.as_deref() == Some("delete")
    }

    /// The form field of its value.
    fn field(&self) -> String {
        format!("credential:{}", self.key)
    }

    /// `obtain`, if it is a web address a link may point to.
    fn obtain_link(&self) -> Option<&str> {
        self.obtain
            .as_deref()
            .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
    }
}

impl Proposal {
    fn tone(&self) -> &'static str {
        match self.status.as_str() {
            "pending" => "warn",
            "applied" => "ok",
            "rejected" => "danger",
            _ => "",
        }
    }

    fn pending(&self) -> bool {
        self.status == "pending"
    }

    fn summary(&self) -> &str {
        if self.message.is_empty() {
            &self.user_message
        } else {
            &self.message
        }
    }

    fn to_set(&self) -> Vec<&Slot> {
        self.credentials.iter().filter(|s| !s.deletes()).collect()
    }

    fn to_delete(&self) -> Vec<&str> {
        self.credentials
            .iter()
            .filter(|s| s.deletes())
            .map(|s| s.key.as_str())
            .collect()
    }
}

/// `YYYY-MM-DD HH:MM` of an RFC 3339 time, UTC.
fn when(rfc3339: &str) -> String {
    rfc3339
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
        .chars()
        .take(16)
        .collect()
}

#[derive(askama::Template)]
#[template(path = "console/vault_proposals.html")]
struct ListPage {
    chrome: Chrome,
    vault: VaultFrame,
    pending: Vec<Proposal>,
    past: Vec<Proposal>,
}

async fn list(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/proposals").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let listed = match console
        .get::<Listed>(&format!("/v1/admin/proposals?vault={}", vault.segment))
        .await
    {
        Ok(listed) => listed,
        Err(error) => return console.refused(error),
    };
    let (mut pending, mut past): (Vec<_>, Vec<_>) =
        listed.proposals.into_iter().partition(Proposal::pending);
    // Newest first.
    pending.sort_by_key(|p| std::cmp::Reverse(p.id));
    past.sort_by_key(|p| std::cmp::Reverse(p.id));
    console.page(&ListPage {
        chrome: console.chrome(format!("Proposals · {}", vault.name), "vaults"),
        vault,
        pending,
        past,
    })
}

#[derive(askama::Template)]
#[template(path = "console/vault_proposal.html")]
struct DetailPage {
    chrome: Chrome,
    vault: VaultFrame,
    proposal: Proposal,
    asks: String,
    /// What the last decision's API call refused.
    error: Option<String>,
    /// The reason typed before a refused reject, given back.
    reason: String,
    no_longer_fits: &'static str,
    values_go_to_the_vault: &'static str,
    reason_label: &'static str,
    message_to_you: &'static str,
    why: &'static str,
}

/// What a refused form leaves on the page: the API's message and the reason typed.
struct Refusal {
    status: StatusCode,
    message: String,
    reason: String,
}

async fn show(
    console: &Console<'_>,
    name: &str,
    id: &str,
    refusal: Option<Refusal>,
) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/proposals").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let proposal = match console
        .get::<Proposal>(&format!(
            "/v1/admin/proposals/{}?vault={}",
            super::encode_component(id),
            vault.segment
        ))
        .await
    {
        Ok(proposal) => proposal,
        Err(error) => return console.refused(error),
    };
    let (status, error, reason) = match refusal {
        Some(refusal) => (refusal.status, Some(refusal.message), refusal.reason),
        None => (StatusCode::OK, None, String::new()),
    };
    console.page_with_status(
        status,
        &DetailPage {
            chrome: console.chrome(
                format!("Proposal {} · {}", proposal.id, vault.name),
                "vaults",
            ),
            asks: wording::asks_for_access(&proposal.proposed_by),
            vault,
            proposal,
            error,
            reason,
            no_longer_fits: wording::NO_LONGER_FITS,
            values_go_to_the_vault: wording::VALUES_GO_TO_THE_VAULT,
            reason_label: wording::REASON_LABEL,
            message_to_you: wording::MESSAGE_TO_YOU,
            why: wording::WHY,
        },
    )
}

#[derive(Clone, Copy)]
enum Decision {
    Approve,
    Reject,
}

async fn decide(
    console: &Console<'_>,
    name: &str,
    id: &str,
    decision: Decision,
) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(page) => return page,
    };
    let vault = match console.vault_frame(name, "/proposals").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let path = format!(
        "/v1/admin/proposals/{}/{}",
        super::encode_component(id),
        match decision {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    );
    let reason = fields
        .get("reason")
        .map(|reason| reason.as_str().to_owned())
        .unwrap_or_default();
    let body = match decision {
        Decision::Approve => json!({ "vault": vault.name, "credentials": credentials(&fields) }),
        Decision::Reject => json!({ "vault": vault.name, "reason": reason }),
    };
    let answer = console.send(Method::POST, &path, &body).await;
    // The values are in `body` and `fields` only; both go here.
    drop(body);
    drop(fields);
    match answer {
        Ok(_) => {
            let notice = match decision {
                Decision::Approve => format!("Proposal {id} approved: the vault has its changes."),
                Decision::Reject => format!("Proposal {id} rejected."),
            };
            console.done(
                &format!(
                    "/vaults/{}/proposals/{}",
                    vault.segment,
                    super::encode_component(id)
                ),
                &notice,
            )
        }
        Err(error) => {
            let refusal = Refusal {
                status: error.status,
                message: error.message,
                // A refused approval gives no value back: they are secrets.
                reason: match decision {
                    Decision::Reject => reason,
                    Decision::Approve => String::new(),
                },
            };
            show(console, name, id, Some(refusal)).await
        }
    }
}

/// The credential values typed in the approve form, by key.
fn credentials(fields: &Fields) -> serde_json::Map<String, serde_json::Value> {
    fields
        .iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("credential:")?;
            Some((key.to_owned(), json!(value.as_str())))
        })
        .collect()
}
