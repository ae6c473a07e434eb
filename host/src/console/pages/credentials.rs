//! A vault's credentials (`/vaults/{name}/credentials`): the keys it holds and the services
//! that use each, and the forms that set, rotate, reveal and delete one.
//!
//! A value goes one way only: typed into a password field and sent to `POST /v1/credentials`.
//! The one exception is a reveal, an explicit form post answered with a page that shows the
//! value once (`GET /v1/credentials?reveal=true`, where the API decides who may and logs that
//! it happened); no other page, redirect or notice ever carries a value.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::vault::VaultFrame;
use super::{Chrome, encode_component};
use crate::api::ApiError;
use crate::console::{Console, Fields};

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    Some(match (&console.request.method, segments) {
        (&Method::GET, ["vaults", name, "credentials"]) => {
            show(console, name, Outcome::default()).await
        }
        (&Method::POST, ["vaults", name, "credentials"]) => set(console, name).await,
        (&Method::POST, ["vaults", name, "credentials", key, "reveal"]) => {
            reveal(console, name, key).await
        }
        (&Method::POST, ["vaults", name, "credentials", key, "delete"]) => {
            delete(console, name, key).await
        }
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct Usage {
    services: Vec<UsingService>,
}

#[derive(Deserialize)]
struct UsingService {
    name: String,
}

#[derive(Deserialize)]
struct Revealed {
    credentials: Vec<RevealedValue>,
}

#[derive(Deserialize)]
struct RevealedValue {
    key: String,
    value: String,
}

/// A credential on the page.
struct Row {
    key: String,
    /// The key as a path segment.
    segment: String,
    /// The services whose auth or placeholders use it.
    used_by: Vec<String>,
}

/// What the last form left on the page: an error to show next to the form (with the key
/// that was typed, never the value), or a value revealed once.
#[derive(Default)]
struct Outcome {
    error: Option<String>,
    typed_key: String,
    revealed: Option<(String, Zeroizing<String>)>,
}

#[derive(askama::Template)]
#[template(path = "console/credentials.html")]
struct Credentials {
    chrome: Chrome,
    vault: VaultFrame,
    rows: Vec<Row>,
    /// Whether the person's role lets them set, rotate, reveal and delete (the API checks
    /// again on every post; this only hides forms that would be refused).
    can_write: bool,
    error: Option<String>,
    typed_key: String,
    /// A key and its value, shown in this answer only.
    revealed: Option<(String, Zeroizing<String>)>,
}

async fn show(console: &Console<'_>, name: &str, outcome: Outcome) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/credentials").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let segment = vault.segment.clone();
    let keys = match console
        .get::<Keys>(&format!("/v1/credentials?vault={segment}"))
        .await
    {
        Ok(keys) => keys.keys,
        Err(error) => return console.refused(error),
    };
    let mut rows = Vec::with_capacity(keys.len());
    for key in keys {
        let used_by = console
            .get::<Usage>(&format!(
                "/v1/vaults/{segment}/services/credential-usage?key={}",
                encode_component(&key)
            ))
            .await
            .map(|usage| usage.services.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        rows.push(Row {
            segment: encode_component(&key),
            key,
            used_by,
        });
    }
    let status = match &outcome.error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let can_write = vault.role.as_deref() != Some("proxy");
    console.page_with_status(
        status,
        &Credentials {
            chrome: console.chrome(format!("Credentials · {}", vault.name), "vaults"),
            vault,
            rows,
            can_write,
            error: outcome.error,
            typed_key: outcome.typed_key,
            revealed: outcome.revealed,
        },
    )
}

fn field(fields: &Fields, name: &str) -> String {
    fields
        .get(name)
        .map(|value| value.trim().to_owned())
        .unwrap_or_default()
}

/// `POST /vaults/{name}/credentials`: set a new key or rotate an existing one.
async fn set(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let key = field(&fields, "key");
    let rotating = fields.contains_key("rotate");
    let value = fields.get("value").cloned().unwrap_or_default();
    let body = json!({ "vault": name, "credentials": { key.as_str(): value.as_str() } });
    match console.send(Method::POST, "/v1/credentials", &body).await {
        Ok(_) => {
            let said = if rotating { "rotated" } else { "set" };
            console.done(
                &format!("/vaults/{}/credentials", encode_component(name)),
                &format!("Credential {key} {said}."),
            )
        }
        Err(error) => form_error(console, name, error, key).await,
    }
}

/// An API refusal of a form: a 400's message is shown beside the form, with what was typed
/// (but the value); any other refusal (not allowed, no such vault) is the error page.
async fn form_error(
    console: &Console<'_>,
    name: &str,
    error: ApiError,
    typed_key: String,
) -> Response<Full<Bytes>> {
    if error.status != StatusCode::BAD_REQUEST {
        return console.refused(error);
    }
    let outcome = Outcome {
        error: Some(error.message),
        typed_key,
        revealed: None,
    };
    show(console, name, outcome).await
}

/// `POST /vaults/{name}/credentials/{key}/reveal`: the value, in this answer only.
async fn reveal(console: &Console<'_>, name: &str, key: &str) -> Response<Full<Bytes>> {
    if let Err(refused) = console.form() {
        return refused;
    }
    let path = format!(
        "/v1/credentials?vault={}&reveal=true&key={}",
        encode_component(name),
        encode_component(key)
    );
    let revealed = match console.get::<Revealed>(&path).await {
        Ok(revealed) => revealed,
        Err(error) => return console.refused(error),
    };
    let Some(found) = revealed.credentials.into_iter().find(|c| c.key == key) else {
        return console.problem(
            StatusCode::NOT_FOUND,
            &format!("Credential not found: {key}"),
        );
    };
    let outcome = Outcome {
        revealed: Some((found.key, Zeroizing::new(found.value))),
        ..Outcome::default()
    };
    let mut page = show(console, name, outcome).await;
    // A page with a secret on it is not kept by the browser or anything in between.
    page.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    page
}

/// `POST /vaults/{name}/credentials/{key}/delete`.
async fn delete(console: &Console<'_>, name: &str, key: &str) -> Response<Full<Bytes>> {
    if let Err(refused) = console.form() {
        return refused;
    }
    let body = json!({ "vault": name, "keys": [key] });
    match console.send(Method::DELETE, "/v1/credentials", &body).await {
        Ok(_) => console.done(
            &format!("/vaults/{}/credentials", encode_component(name)),
            &format!("Credential {key} deleted."),
        ),
        Err(error) => console.refused(error),
    }
}
