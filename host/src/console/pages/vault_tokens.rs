//! A vault's "Tokens" tab (`/vaults/{name}/tokens`): the vault's scoped sessions
//! (`GET /v1/sessions?vault=`), minting one with a TTL and a label (`POST /v1/sessions`, the
//! proxy role) and revoking one. A member or admin of the vault may; the API refuses a
//! proxy-role person. A minted token is shown once, in the answer to the form that made it,
//! with how to hand it to a sandbox; the list never shows a token again.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::vault::VaultFrame;
use super::{Chrome, Lifetimes, Refusal, encode_component, field, status_of};
use crate::console::Console;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    let post = console.request.method == Method::POST;
    Some(match segments {
        ["vaults", name, "tokens"] if !post => page(console, name, Shown::default()).await,
        ["vaults", name, "tokens"] if post => mint(console, name).await,
        ["vaults", name, "tokens", id, "revoke"] if post => revoke(console, name, id).await,
        _ => return None,
    })
}

/// How long a minted token works: the choices of the form, in seconds (the API takes 5
/// minutes to 7 days).
static TOKEN_LIFETIMES: Lifetimes = Lifetimes {
    choices: &[
        ("3600", "1 hour"),
        ("28800", "8 hours"),
        ("86400", "24 hours"),
        ("259200", "3 days"),
        ("604800", "7 days"),
    ],
    default: "86400",
};

#[derive(Deserialize)]
struct Sessions {
    sessions: Vec<Session>,
}

#[derive(Deserialize)]
struct Session {
    id: String,
    #[serde(default)]
    label: String,
    vault_role: String,
    created_by: Option<CreatedBy>,
    #[serde(deserialize_with = "super::moment")]
    created_at: String,
    #[serde(default, deserialize_with = "super::maybe_moment")]
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct CreatedBy {
    display_name: Option<String>,
}

impl Session {
    fn by(&self) -> &str {
        self.created_by
            .as_ref()
            .and_then(|by| by.display_name.as_deref())
            .unwrap_or("someone since removed")
    }
}

#[derive(Deserialize)]
struct Minted {
    token: String,
    #[serde(deserialize_with = "super::moment")]
    expires_at: String,
    av_addr: String,
}

/// What the page shows besides the list: the token just minted, or why minting failed
/// (with the label and TTL as typed).
#[derive(Default)]
struct Shown {
    minted: Option<Minted>,
    error: Option<Refusal>,
    label: String,
    ttl: String,
}

#[derive(askama::Template)]
#[template(path = "console/vault_tokens.html")]
struct Tokens {
    chrome: Chrome,
    lifetimes: &'static Lifetimes,
    vault: VaultFrame,
    sessions: Vec<Session>,
    shown: Shown,
}

async fn page(console: &Console<'_>, name: &str, shown: Shown) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/tokens").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let sessions = match console
        .get::<Sessions>(&format!("/v1/sessions?vault={}", vault.segment))
        .await
    {
        Ok(listed) => listed.sessions,
        Err(error) => return console.refused(error),
    };
    let status = status_of(shown.error.as_ref());
    console.page_with_status(
        status,
        &Tokens {
            lifetimes: &TOKEN_LIFETIMES,
            chrome: console.chrome(format!("{} · tokens", vault.name), "vaults"),
            vault,
            sessions,
            shown,
        },
    )
}

async fn mint(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let label = field(&fields, "label");
    let ttl = field(&fields, "ttl");
    let Some(seconds) = TOKEN_LIFETIMES.seconds(&ttl) else {
        let shown = Shown {
            error: Some(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Pick how long the token works from the list.",
            )),
            label,
            ttl: String::new(),
            minted: None,
        };
        return page(console, name, shown).await;
    };
    let body = json!({
        "vault": name,
        "vault_role": "proxy",
        "ttl_seconds": seconds,
        "label": label,
    });
    let shown = match console.send(Method::POST, "/v1/sessions", &body).await {
        Ok(answer) => match serde_json::from_value::<Minted>(answer) {
            Ok(minted) => Shown {
                minted: Some(minted),
                ..Shown::default()
            },
            Err(_) => {
                return console.problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The console could not read the server's answer.",
                );
            }
        },
        Err(error) if error.status == StatusCode::BAD_REQUEST => Shown {
            error: Some(error.into()),
            label,
            ttl,
            minted: None,
        },
        Err(error) => return console.refused(error),
    };
    page(console, name, shown).await
}

async fn revoke(console: &Console<'_>, name: &str, id: &str) -> Response<Full<Bytes>> {
    let vault = encode_component(name);
    console
        .act(
            Method::DELETE,
            &format!("/v1/sessions/{}?vault={vault}", encode_component(id)),
            &json!({}),
            &format!("/vaults/{vault}/tokens"),
            "Token revoked; it no longer works.",
        )
        .await
}
