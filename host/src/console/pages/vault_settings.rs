//! A vault's settings (`/vaults/{name}/settings`): its name, where proposals are announced
//! (the webhook), what the proxy does with a host no service covers, and deleting it.
//!
//! Everything here is `GET`/`PATCH /v1/vaults/{name}/settings`, `POST .../rename` and
//! `DELETE /v1/vaults/{name}`; the API decides who may (a vault admin or an owner) and
//! refuses to rename or delete the default vault.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::vault::VaultFrame;
use super::{Chrome, encode_component};
use crate::console::{Console, Fields};

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    Some(match (&console.request.method, segments) {
        (&Method::GET, ["vaults", name, "settings"]) => show(console, name, None).await,
        (&Method::POST, ["vaults", name, "settings"]) => update(console, name).await,
        (&Method::POST, ["vaults", name, "rename"]) => rename(console, name).await,
        (&Method::POST, ["vaults", name, "delete"]) => delete(console, name).await,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Settings {
    unmatched_host_policy: String,
    /// Whether a webhook is set (everyone who can see the vault may know).
    #[serde(default)]
    proposal_webhook: bool,
    /// The URL itself (`null` when none): the API gives this field only to those who may
    /// change the settings, so its presence is what shows the forms.
    #[serde(default, deserialize_with = "present")]
    proposal_webhook_url: Option<Option<String>>,
}

/// A field that is there, `null` or not: `Some(None)` for `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// What was typed into a form the API refused, to show again beside its message.
struct Refusal {
    message: String,
    new_name: String,
    webhook: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/vault_settings.html")]
struct SettingsPage {
    chrome: Chrome,
    vault: VaultFrame,
    is_default: bool,
    /// Whether the person may change settings: the API showed them the webhook field.
    can_change: bool,
    deny_unmatched: bool,
    has_webhook: bool,
    webhook: String,
    new_name: String,
    error: Option<String>,
}

async fn show(
    console: &Console<'_>,
    name: &str,
    refusal: Option<Refusal>,
) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/settings").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let settings = match console
        .get::<Settings>(&format!("/v1/vaults/{}/settings", vault.segment))
        .await
    {
        Ok(settings) => settings,
        Err(error) => return console.refused(error),
    };
    let can_change = settings.proposal_webhook_url.is_some();
    let (error, new_name, typed_webhook) = match refusal {
        Some(refusal) => (Some(refusal.message), refusal.new_name, refusal.webhook),
        None => (None, String::new(), None),
    };
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    console.page_with_status(
        status,
        &SettingsPage {
            chrome: console.chrome(format!("Settings · {}", vault.name), "vaults"),
            is_default: vault.name == "default",
            can_change,
            deny_unmatched: settings.unmatched_host_policy == "deny",
            has_webhook: settings.proposal_webhook,
            webhook: typed_webhook
                .or(settings.proposal_webhook_url.flatten())
                .unwrap_or_default(),
            new_name,
            error,
            vault,
        },
    )
}

fn field(fields: &Fields, name: &str) -> String {
    fields
        .get(name)
        .map(|value| value.trim().to_owned())
        .unwrap_or_default()
}

fn settings_path(name: &str) -> String {
    format!("/vaults/{}/settings", encode_component(name))
}

/// `POST /vaults/{name}/settings`: the webhook and the unmatched-host policy.
async fn update(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let webhook = field(&fields, "proposal_webhook_url");
    let policy = match field(&fields, "unmatched_host_policy").as_str() {
        "deny" => "deny",
        _ => "passthrough",
    };
    let body = json!({ "proposal_webhook_url": webhook, "unmatched_host_policy": policy });
    let path = format!("/v1/vaults/{}/settings", encode_component(name));
    match console.send(Method::PATCH, &path, &body).await {
        Ok(_) => console.done(&settings_path(name), "Settings saved."),
        Err(error) if error.status == StatusCode::BAD_REQUEST => {
            let refusal = Refusal {
                message: error.message,
                new_name: String::new(),
                webhook: Some(webhook),
            };
            show(console, name, Some(refusal)).await
        }
        Err(error) => console.refused(error),
    }
}

/// `POST /vaults/{name}/rename`: then on to the settings under the new name.
async fn rename(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let new_name = field(&fields, "name");
    let path = format!("/v1/vaults/{}/rename", encode_component(name));
    match console
        .send(Method::POST, &path, &json!({ "name": new_name }))
        .await
    {
        Ok(_) => console.done(
            &settings_path(&new_name),
            &format!("Vault {name} is now {new_name}; agents must use the new name."),
        ),
        Err(error) if error.status == StatusCode::BAD_REQUEST => {
            let refusal = Refusal {
                message: error.message,
                new_name,
                webhook: None,
            };
            show(console, name, Some(refusal)).await
        }
        Err(error) => console.refused(error),
    }
}

/// `POST /vaults/{name}/delete`: the vault, its credentials and services, gone.
async fn delete(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    if let Err(refused) = console.form() {
        return refused;
    }
    let path = format!("/v1/vaults/{}", encode_component(name));
    match console.send(Method::DELETE, &path, &json!({})).await {
        Ok(_) => console.done("/", &format!("Vault {name} deleted.")),
        Err(error) => console.refused(error),
    }
}
