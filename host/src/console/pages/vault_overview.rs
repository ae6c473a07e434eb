//! A vault's first page (`/vaults/{name}`): what it holds at a glance, with a way to each
//! part of it.

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use serde::Deserialize;

use super::Chrome;
use super::vault::VaultFrame;
use crate::console::Console;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    match (&console.request.method, segments) {
        (&Method::GET, ["vaults", name]) => Some(overview(console, name).await),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct Services {
    services: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Proposals {
    proposals: Vec<serde_json::Value>,
}

#[derive(askama::Template)]
#[template(path = "console/vault_overview.html")]
struct Overview {
    chrome: Chrome,
    vault: VaultFrame,
    services: usize,
    credentials: usize,
    /// None where the person may not review proposals.
    pending: Option<usize>,
}

async fn overview(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let segment = &vault.segment;
    let services = console
        .get::<Services>(&format!("/v1/vaults/{segment}/services"))
        .await
        .map(|s| s.services.len())
        .unwrap_or(0);
    let credentials = console
        .get::<Keys>(&format!("/v1/credentials?vault={segment}"))
        .await
        .map(|k| k.keys.len())
        .unwrap_or(0);
    let pending = console
        .get::<Proposals>(&format!(
            "/v1/admin/proposals?vault={segment}&status=pending"
        ))
        .await
        .ok()
        .map(|p| p.proposals.len());
    console.page(&Overview {
        chrome: console.chrome(vault.name.clone(), "vaults"),
        vault,
        services,
        credentials,
        pending,
    })
}
