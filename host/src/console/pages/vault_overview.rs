//! A vault's first page (`/vaults/{name}`): what it holds at a glance, with a way to each
//! part of it, and the picture of its traffic over the last hour or day
//! (`GET /v1/vaults/{name}/logs/stats`, drawn by `console/chart.rs`).

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use serde::Deserialize;

use super::Chrome;
use super::vault::{VaultCounts, VaultFrame};
use crate::console::Console;
use crate::console::chart::{self, Interval};

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    match (&console.request.method, segments) {
        (&Method::GET, ["vaults", name]) => Some(overview(console, name).await),
        _ => None,
    }
}

/// Requests per status class, as the stats route counts them.
#[derive(Deserialize)]
struct Counts {
    #[serde(rename = "2xx")]
    ok: u64,
    #[serde(rename = "3xx")]
    redirect: u64,
    #[serde(rename = "4xx")]
    refused: u64,
    #[serde(rename = "5xx")]
    failed: u64,
    other: u64,
}

impl Counts {
    /// In the order of `chart::CLASSES`.
    fn columns(&self) -> [u64; 5] {
        [
            self.ok,
            self.redirect,
            self.refused,
            self.failed,
            self.other,
        ]
    }
}

#[derive(Deserialize)]
struct Stats {
    buckets: Vec<StatsBucket>,
    totals: Counts,
}

#[derive(Deserialize)]
struct StatsBucket {
    start: String,
    #[serde(flatten)]
    counts: Counts,
}

/// The traffic panel: the picture and what it shows in words.
struct Traffic {
    /// `hour` or `day`.
    window: &'static str,
    /// Markup from `chart::traffic_svg`, which escapes every text it holds.
    svg: String,
    /// (CSS class, class name, requests) per status class, for the legend.
    totals: Vec<(&'static str, &'static str, u64)>,
    total: u64,
}

#[derive(askama::Template)]
#[template(path = "console/vault_overview.html")]
struct Overview {
    chrome: Chrome,
    vault: VaultFrame,
    counts: VaultCounts,
    /// None where the person may not read the request log.
    traffic: Option<Traffic>,
}

async fn overview(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let segment = &vault.segment;
    let counts = console.vault_counts(segment).await;
    let window = match console.request.query("window") {
        Some("day") => "day",
        _ => "hour",
    };
    let traffic = console
        .get::<Stats>(&format!("/v1/vaults/{segment}/logs/stats?window={window}"))
        .await
        .ok()
        .map(|stats| traffic(window, &stats));
    console.page(&Overview {
        chrome: console.chrome(vault.name.clone(), "vaults"),
        vault,
        counts,
        traffic,
    })
}

fn traffic(window: &'static str, stats: &Stats) -> Traffic {
    let intervals: Vec<Interval> = stats
        .buckets
        .iter()
        .map(|bucket| {
            let clock = clock_time(&bucket.start);
            Interval {
                label: format!("{clock} UTC"),
                tick: clock,
                counts: bucket.counts.columns(),
            }
        })
        .collect();
    let title = match window {
        "day" => "Requests per 15 minutes over the last day, by status class",
        _ => "Requests per minute over the last hour, by status class",
    };
    let totals: Vec<_> = chart::CLASSES
        .iter()
        .zip(stats.totals.columns())
        .map(|((class, word), requests)| (*class, *word, requests))
        .collect();
    Traffic {
        window,
        svg: chart::traffic_svg(&intervals, title),
        total: totals.iter().map(|(_, _, requests)| requests).sum(),
        totals,
    }
}

/// `HH:MM` (UTC) of an RFC 3339 time (the time itself if it is not one).
fn clock_time(rfc3339: &str) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|time| {
            let time = time.to_offset(time::UtcOffset::UTC);
            format!("{:02}:{:02}", time.hour(), time.minute())
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}
