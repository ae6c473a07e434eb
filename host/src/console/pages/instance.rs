//! The instance page (`/manage/settings`, owners): the instance's settings
//! (`GET`/`PUT /v1/admin/settings`, which refuse anyone but an owner) and the transparent
//! proxy: where to download its CA (`/v1/mitm/ca.pem`, which answers without a session) and
//! its port, or that it is off.

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::Chrome;
use crate::console::Console;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    let post = console.request.method == Method::POST;
    Some(match segments {
        ["manage", "settings"] if !post => page(console).await,
        ["manage", "settings"] if post => save(console).await,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Settings {
    agents_can_approve_proposals: bool,
}

#[derive(askama::Template)]
#[template(path = "console/instance.html")]
struct Instance {
    chrome: Chrome,
    settings: Settings,
    /// The transparent proxy's port, when it listens.
    transparent_port: Option<u16>,
}

async fn page(console: &Console<'_>) -> Response<Full<Bytes>> {
    let settings = match console.get::<Settings>("/v1/admin/settings").await {
        Ok(settings) => settings,
        Err(error) => return console.refused(error),
    };
    console.page(&Instance {
        chrome: console.chrome("Instance", "instance"),
        settings,
        transparent_port: console.state.transparent.as_ref().map(|t| t.port),
    })
}

async fn save(console: &Console<'_>) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    // A checkbox left unticked is not sent at all.
    let allowed = fields.contains_key("agents_can_approve_proposals");
    console
        .act(
            Method::PUT,
            "/v1/admin/settings",
            &json!({ "agents_can_approve_proposals": allowed }),
            "/manage/settings",
            "Settings saved.",
        )
        .await
}
