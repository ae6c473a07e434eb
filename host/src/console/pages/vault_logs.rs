//! A vault's request log (`/vaults/{name}/logs`): one row per proxied request, newest first,
//! narrowed by service, status class, ingress and time span with a plain GET form, paged
//! with `before` cursors. Everything comes from `GET /v1/vaults/{name}/logs`.
//!
//! New entries appear without a reload: the first page's table names a fragment URL (the
//! same path with `fragment=rows&after=ID`) that answers only the `<tr>` rows newer than
//! `ID`, drawn by the same template; `console.js` asks for it every few seconds and puts
//! them on top. With JavaScript off, the "Show newer" link reloads the first page.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;

use super::vault::VaultFrame;
use super::{Chrome, encode_component};
use crate::console::{Console, render};

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    match (&console.request.method, segments) {
        (&Method::GET, ["vaults", name, "logs"]) => Some(logs(console, name).await),
        _ => None,
    }
}

/// How many rows a page holds.
const PAGE_ROWS: u32 = 50;

/// The time spans the form offers: the value in the URL, the words, the seconds back.
const SPANS: [(&str, &str, i64); 4] = [
    ("15m", "Last 15 minutes", 15 * 60),
    ("1h", "Last hour", 60 * 60),
    ("1d", "Last day", 24 * 60 * 60),
    ("7d", "Last 7 days", 7 * 24 * 60 * 60),
];
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
const INGRESSES: [(&str, &str); 2] = [
    ("explicit", "Explicit (/proxy)"),
    ("transparent", "Transparent (HTTPS_PROXY)"),
];

#[derive(Deserialize)]
struct LogPage {
    logs: Vec<Entry>,
    next_cursor: Option<i64>,
    latest_id: Option<i64>,
}

#[derive(Deserialize)]
struct Entry {
    id: i64,
    ingress: String,
    method: String,
    host: String,
    path: String,
    matched_service: Option<String>,
    status: u16,
    latency_ms: u64,
    error_code: Option<String>,
    created_at: String,
}

impl Entry {
    /// The badge's class for the status.
    fn tone(&self) -> &'static str {
        match self.status {
            200..=299 => "ok",
            300..=399 => "info",
            400..=499 => "warn",
            500..=599 => "danger",
            _ => "",
        }
    }

    /// `YYYY-MM-DD HH:MM:SS` of the RFC 3339 time, as a person reads it (UTC).
    fn when(&self) -> String {
        self.created_at.trim_end_matches('Z').replacen('T', " ", 1)
    }

    /// The clock time alone, for the table.
    fn clock(&self) -> String {
        let when = self.when();
        when.split_once(' ')
            .map(|(_, clock)| clock.to_owned())
            .unwrap_or(when)
    }
}

#[derive(Deserialize)]
struct Services {
    services: Vec<Service>,
}

#[derive(Deserialize)]
struct Service {
    name: String,
}

/// The form's values, as the URL gave them.
#[derive(Default)]
struct Filters {
    service: String,
    status: String,
    ingress: String,
    span: String,
}

impl Filters {
    fn read(console: &Console<'_>) -> Filters {
        let value = |name: &str| {
            console
                .request
                .query(name)
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        Filters {
            service: value("service"),
            status: value("status"),
            ingress: value("ingress"),
            span: value("span"),
        }
    }

    /// The filters as console query parameters (`&name=value` each, empty ones left out).
    fn console_query(&self) -> String {
        [
            ("service", &self.service),
            ("status", &self.status),
            ("ingress", &self.ingress),
            ("span", &self.span),
        ]
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("&{name}={}", encode_component(value)))
        .collect()
    }

    /// The filters as the API's query parameters; the span as a `since` time.
    fn api_query(&self) -> Result<String, String> {
        let mut query = String::new();
        if !self.service.is_empty() {
            query.push_str(&format!("&service={}", encode_component(&self.service)));
        }
        if !self.status.is_empty() {
            query.push_str(&format!(
                "&status_bucket={}",
                encode_component(&self.status)
            ));
        }
        if !self.ingress.is_empty() {
            query.push_str(&format!("&ingress={}", encode_component(&self.ingress)));
        }
        if !self.span.is_empty() {
            let Some((_, _, seconds)) = SPANS.iter().find(|(value, _, _)| *value == self.span)
            else {
                return Err(format!("There is no time span {:?}.", self.span));
            };
            let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(*seconds);
            let since = since
                .replace_nanosecond(0)
                .ok()
                .and_then(|since| {
                    since
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            query.push_str(&format!("&since={}", encode_component(&since)));
        }
        Ok(query)
    }
}

#[derive(askama::Template)]
#[template(path = "console/vault_logs.html")]
struct LogsPage {
    chrome: Chrome,
    vault: VaultFrame,
    filters: Filters,
    services: Vec<String>,
    spans: &'static [(&'static str, &'static str, i64)],
    classes: &'static [&'static str],
    ingresses: &'static [(&'static str, &'static str)],
    rows: Vec<Entry>,
    /// What the API refused in the filters, if it did.
    error: Option<String>,
    /// On the first page: the newest row's id, which the script follows from.
    latest: Option<i64>,
    /// The first page, with new rows followed.
    first: bool,
    /// Where the older rows are, if any.
    older: Option<String>,
    /// The filters as `&name=value` for links.
    query: String,
}

#[derive(askama::Template)]
#[template(path = "console/vault_log_rows.html")]
struct Rows {
    rows: Vec<Entry>,
}

async fn logs(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/logs").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let segment = vault.segment.clone();
    let filters = Filters::read(console);
    let cursor = |name: &str| {
        console
            .request
            .query(name)
            .and_then(|value| value.parse::<i64>().ok())
    };
    let fragment = console.request.query("fragment") == Some("rows");
    let (before, after) = (cursor("before"), cursor("after"));
    let api_query = match filters.api_query() {
        Ok(query) => query,
        Err(message) if fragment => return console.problem(StatusCode::BAD_REQUEST, &message),
        Err(message) => return logs_page(console, vault, filters, Err(message), before).await,
    };
    let position = match (fragment, before, after) {
        (true, _, Some(after)) => format!("&after={after}"),
        (true, _, None) => {
            return console.problem(StatusCode::BAD_REQUEST, "The rows need an after id.");
        }
        (false, Some(before), _) => format!("&before={before}"),
        (false, None, _) => String::new(),
    };
    let answer = console
        .get::<LogPage>(&format!(
            "/v1/vaults/{segment}/logs?limit={PAGE_ROWS}{position}{api_query}"
        ))
        .await;
    if fragment {
        return match answer {
            Ok(page) => render::page(StatusCode::OK, &Rows { rows: page.logs }),
            Err(error) => console.refused(error),
        };
    }
    match answer {
        Ok(page) => logs_page(console, vault, filters, Ok(page), before).await,
        Err(error) if error.status == StatusCode::BAD_REQUEST => {
            logs_page(console, vault, filters, Err(error.message), before).await
        }
        Err(error) => console.refused(error),
    }
}

async fn logs_page(
    console: &Console<'_>,
    vault: VaultFrame,
    filters: Filters,
    answer: Result<LogPage, String>,
    before: Option<i64>,
) -> Response<Full<Bytes>> {
    let segment = &vault.segment;
    let mut services: Vec<String> = console
        .get::<Services>(&format!("/v1/vaults/{segment}/services"))
        .await
        .map(|listed| listed.services.into_iter().map(|s| s.name).collect())
        .unwrap_or_default();
    if !filters.service.is_empty() && !services.contains(&filters.service) {
        services.push(filters.service.clone());
    }
    let query = filters.console_query();
    let first = before.is_none();
    let (rows, error, latest, older) = match answer {
        Ok(page) => {
            let older = page.next_cursor.map(|cursor| {
                format!(
                    "{}/vaults/{segment}/logs?before={cursor}{query}",
                    console.link("")
                )
            });
            // The first page follows on from its newest row, or from the start.
            let latest = first.then(|| page.latest_id.unwrap_or(0));
            (page.logs, None, latest, older)
        }
        Err(message) => (Vec::new(), Some(message), None, None),
    };
    console.page(&LogsPage {
        chrome: console.chrome(format!("Request log · {}", vault.name), "vaults"),
        vault,
        filters,
        services,
        spans: &SPANS,
        classes: &CLASSES,
        ingresses: &INGRESSES,
        rows,
        error,
        latest,
        first,
        older,
        query,
    })
}
