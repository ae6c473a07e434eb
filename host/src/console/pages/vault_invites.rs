//! A vault's "Agent invites" tab (`/vaults/{name}/invites`): invites that bring a new agent
//! into this vault (`/v1/agents/invites`, those naming this vault), creating one (the prompt
//! to paste into the agent shown once, in the answer to the form) and revoking a pending
//! one. Who may see and revoke which invite is the API's rule (owners any, members their
//! own); granting a role in the vault needs its admin, which the API checks too.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::vault::VaultFrame;
use super::{Chrome, Lifetimes, Refusal, encode_component, field, picked, status_of};
use crate::console::Console;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    let post = console.request.method == Method::POST;
    Some(match segments {
        ["vaults", name, "invites"] if !post => page(console, name, Shown::default()).await,
        ["vaults", name, "invites"] if post => create(console, name).await,
        ["vaults", name, "invites", id, "revoke"] if post => revoke(console, name, id).await,
        _ => return None,
    })
}

/// How long an invite works: the form's choices, in seconds (the API takes 5 minutes to 7
/// days).
static INVITE_LIFETIMES: Lifetimes = Lifetimes {
    choices: &[
        ("3600", "1 hour"),
        ("86400", "24 hours"),
        ("259200", "3 days"),
        ("604800", "7 days"),
    ],
    default: "86400",
};

#[derive(Deserialize)]
struct Invites {
    invites: Vec<Invite>,
}

#[derive(Deserialize)]
struct Invite {
    id: String,
    name: String,
    status: String,
    vaults: Vec<Assigned>,
    #[serde(deserialize_with = "super::moment")]
    expires_at: String,
    #[serde(deserialize_with = "super::moment")]
    created_at: String,
}

#[derive(Deserialize)]
struct Assigned {
    vault_name: String,
    vault_role: String,
}

/// A pending invite for this vault, as listed.
struct Pending {
    id: String,
    name: String,
    role: String,
    status: String,
    created_at: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct Created {
    name: String,
    prompt: String,
    #[serde(deserialize_with = "super::moment")]
    expires_at: String,
}

/// What the page shows besides the list: the invite just made, or why making it failed
/// (with the form as typed).
#[derive(Default)]
struct Shown {
    created: Option<Created>,
    error: Option<Refusal>,
    name: String,
    role: String,
    ttl: String,
}

#[derive(askama::Template)]
#[template(path = "console/vault_invites.html")]
struct InvitesPage {
    chrome: Chrome,
    lifetimes: &'static Lifetimes,
    vault: VaultFrame,
    invites: Vec<Pending>,
    shown: Shown,
}

async fn page(console: &Console<'_>, name: &str, shown: Shown) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/invites").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let listed = match console.get::<Invites>("/v1/agents/invites").await {
        Ok(listed) => listed.invites,
        Err(error) => return console.refused(error),
    };
    let invites = listed
        .into_iter()
        .filter(|invite| invite.status == "pending" || invite.status == "expired")
        .filter_map(|invite| {
            let role = invite
                .vaults
                .iter()
                .find(|assigned| assigned.vault_name == vault.name)?
                .vault_role
                .clone();
            Some(Pending {
                id: invite.id,
                name: invite.name,
                role,
                status: invite.status,
                created_at: invite.created_at,
                expires_at: invite.expires_at,
            })
        })
        .collect();
    let status = status_of(shown.error.as_ref());
    console.page_with_status(
        status,
        &InvitesPage {
            lifetimes: &INVITE_LIFETIMES,
            chrome: console.chrome(format!("{} · agent invites", vault.name), "vaults"),
            vault,
            invites,
            shown,
        },
    )
}

async fn create(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let mut shown = Shown {
        name: field(&fields, "name"),
        role: field(&fields, "role"),
        ttl: field(&fields, "ttl"),
        ..Shown::default()
    };
    let Some(seconds) = INVITE_LIFETIMES.seconds(&shown.ttl) else {
        shown.error = Some(Refusal::new(
            StatusCode::BAD_REQUEST,
            "Pick how long the invite works from the list.",
        ));
        shown.ttl.clear();
        return page(console, name, shown).await;
    };
    let body = json!({
        "name": shown.name,
        "vaults": [{ "vault_name": name, "vault_role": picked(&shown.role) }],
        "ttl_seconds": seconds,
    });
    match console
        .send(Method::POST, "/v1/agents/invites", &body)
        .await
    {
        Ok(answer) => match serde_json::from_value::<Created>(answer) {
            Ok(created) => {
                let shown = Shown {
                    created: Some(created),
                    ..Shown::default()
                };
                page(console, name, shown).await
            }
            Err(_) => console.problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The console could not read the server's answer.",
            ),
        },
        Err(error) if error.status.is_client_error() && error.status != StatusCode::NOT_FOUND => {
            shown.error = Some(error.into());
            page(console, name, shown).await
        }
        Err(error) => console.refused(error),
    }
}

async fn revoke(console: &Console<'_>, name: &str, id: &str) -> Response<Full<Bytes>> {
    console
        .act(
            Method::DELETE,
            &format!("/v1/agents/invites/{}", encode_component(id)),
            &json!({}),
            &format!("/vaults/{}/invites", encode_component(name)),
            "",
        )
        .await
}
