//! The instance page (`/manage/settings`, owners): the instance's settings
//! (`GET`/`PUT /v1/admin/settings`, which refuse anyone but an owner), the rate limits in
//! force (read only: they are the server's start-up configuration), and the transparent
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
    rate_limit: RateLimit,
}

#[derive(Deserialize)]
struct RateLimit {
    profile: String,
    /// None when the limits are off.
    tiers: Option<Tiers>,
}

#[derive(Deserialize)]
struct Tiers {
    proxy: Tier,
    global: Tier,
    auth: Tier,
}

#[derive(Deserialize)]
struct Tier {
    rate: f64,
    burst: u32,
    concurrency: Option<u32>,
    wait_ms: Option<u64>,
}

/// A tier as a table row: its name, what it limits, and its limits in words.
struct TierRow {
    name: &'static str,
    scope: &'static str,
    rate: String,
    burst: u32,
    concurrency: String,
    wait: String,
}

impl Tier {
    fn row(&self, name: &'static str, scope: &'static str) -> TierRow {
        let rate = if self.rate >= 1.0 {
            format!("{:.0} per second", self.rate)
        } else {
            format!("{:.0} per minute", self.rate * 60.0)
        };
        TierRow {
            name,
            scope,
            rate,
            burst: self.burst,
            concurrency: self.concurrency.map_or("-".into(), |n| n.to_string()),
            wait: self.wait_ms.map_or("-".into(), |ms| format!("{ms} ms")),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/instance.html")]
struct Instance {
    chrome: Chrome,
    settings: Settings,
    /// The rate limits' tiers, empty when they are off.
    tiers: Vec<TierRow>,
    /// The transparent proxy's port, when it listens.
    transparent_port: Option<u16>,
}

async fn page(console: &Console<'_>) -> Response<Full<Bytes>> {
    let settings = match console.get::<Settings>("/v1/admin/settings").await {
        Ok(settings) => settings,
        Err(error) => return console.refused(error),
    };
    let tiers = settings
        .rate_limit
        .tiers
        .as_ref()
        .map(|tiers| {
            vec![
                tiers.proxy.row("proxy", "each token's requests"),
                tiers.global.row("global", "all requests together"),
                tiers
                    .auth
                    .row("auth", "sign-in attempts per client address"),
            ]
        })
        .unwrap_or_default();
    console.page(&Instance {
        chrome: console.chrome("Instance", "instance"),
        settings,
        tiers,
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
