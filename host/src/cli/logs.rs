//! `agent-vault vault logs`: the vault's request log, one line per proxied request, oldest
//! first; with `--follow`, new requests as they are logged, until interrupted.
//!
//! The API pages newest first with id cursors (`api/logs.rs`): the newest entries come from
//! `before` pages, new ones from `after=<latest id>`, which answers the entries right after
//! the cursor so that a burst longer than a page is read in full.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::client::{Client, ClientArgs, ClientError, query_value, segment};
use super::vault_select::VaultSelect;

/// The most entries the API answers at once.
const PAGE: u32 = 200;
/// How often `--follow` asks for new entries.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// How many of the newest entries to print.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 50)]
    limit: u32,
    /// Keep printing new entries as they are logged, until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only the requests of this service.
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Only the requests answered with this class of status: 2xx, 3xx, 4xx or 5xx.
    #[arg(long, value_name = "NXX")]
    status: Option<String>,
    /// Only the requests that came in by this door: explicit (/proxy/...) or transparent
    /// (HTTPS_PROXY).
    #[arg(long, value_name = "INGRESS")]
    ingress: Option<String>,
    #[command(flatten)]
    vault: VaultSelect,
}

pub fn run(args: &ClientArgs, logs_args: &LogsArgs) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    let vault = logs_args.vault.resolve(&args.data_dir()?)?;
    // Every page's query starts with the filters, so each request adds `limit=...` and a
    // cursor to `{path}`.
    let mut path = format!("/v1/vaults/{}/logs?", segment(&vault));
    for (name, value) in [
        ("service", &logs_args.service),
        ("status_bucket", &logs_args.status),
        ("ingress", &logs_args.ingress),
    ] {
        if let Some(value) = value {
            path.push_str(&format!("{name}={}&", query_value(value)));
        }
    }

    let (mut entries, latest) = newest(&client, &path, logs_args.limit)?;
    entries.reverse();
    if entries.is_empty() && logs_args.limit > 0 && !logs_args.follow {
        let filtered = path.ends_with('&');
        let matching = if filtered { " that match" } else { "" };
        eprintln!("No requests{matching} logged in vault {vault}.");
    }
    if !print(&entries)? || !logs_args.follow {
        return Ok(());
    }
    follow(&client, &path, latest.unwrap_or(0))
}

/// Up to `limit` of the newest entries, newest first, and the newest id.
fn newest(client: &Client, path: &str, limit: u32) -> anyhow::Result<(Vec<Value>, Option<i64>)> {
    let mut entries = Vec::new();
    let mut latest = None;
    let mut before: Option<i64> = None;
    while entries.len() < limit as usize {
        let want = (limit as usize - entries.len()).min(PAGE as usize);
        let mut query = format!("{path}limit={want}");
        if let Some(before) = before {
            query.push_str(&format!("&before={before}"));
        }
        let page = client.get(&query)?;
        latest = latest.or_else(|| page["latest_id"].as_i64());
        entries.extend(logs_of(&page)?);
        match page["next_cursor"].as_i64() {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    if limit == 0 {
        // Nothing to print, but `--follow` starts after the newest entry.
        latest = client.get(&format!("{path}limit=1"))?["latest_id"].as_i64();
    }
    Ok((entries, latest))
}

/// Print entries newer than `after` every second until interrupted (or stdout is closed).
fn follow(client: &Client, path: &str, mut after: i64) -> anyhow::Result<()> {
    let mut unreachable = false;
    loop {
        let page = match client.get(&format!("{path}after={after}&limit={PAGE}")) {
            Ok(page) => page,
            // A server restarting is waited for; anything it says is final.
            Err(
                error @ (ClientError::Unreachable { .. }
                | ClientError::Timeout { .. }
                | ClientError::Transport { .. }),
            ) => {
                if !unreachable {
                    eprintln!("{error}; still trying");
                    unreachable = true;
                }
                std::thread::sleep(POLL);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        unreachable = false;
        let mut entries = logs_of(&page)?;
        entries.reverse();
        if !print(&entries)? {
            return Ok(());
        }
        if let Some(latest) = page["latest_id"].as_i64() {
            after = latest;
        }
        // A full page means more are waiting: read on without sleeping.
        if entries.len() < PAGE as usize {
            std::thread::sleep(POLL);
        }
    }
}

fn logs_of(page: &Value) -> anyhow::Result<Vec<Value>> {
    page["logs"].as_array().cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "the server's answer has no \"logs\"; is it an agent-vault server of the same version?"
        )
    })
}

/// Print entries, one line each; `false` once stdout is closed (`| head`).
fn print(entries: &[Value]) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    for entry in entries {
        match writeln!(stdout, "{}", line(entry)).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(false),
            Err(error) => return Err(error).context("writing to standard output"),
        }
    }
    Ok(true)
}

/// `TIME METHOD HOST/PATH STATUS LATENCY SERVICE KEYS ERROR`, `-` for what is missing.
fn line(entry: &Value) -> String {
    let text = |field: &str| match entry[field].as_str() {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => "-".to_owned(),
    };
    // 0: the request was never sent upstream.
    let status = match entry["status"].as_u64() {
        Some(status) if status > 0 => status.to_string(),
        _ => "-".to_owned(),
    };
    let latency = entry["latency_ms"]
        .as_u64()
        .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms"));
    let keys: Vec<&str> = entry["credential_keys"]
        .as_array()
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keys = if keys.is_empty() {
        "-".to_owned()
    } else {
        keys.join(",")
    };
    format!(
        "{}  {:<7} {}{}  {:>3}  {:>6}  {}  {}  {}",
        text("created_at"),
        text("method"),
        entry["host"].as_str().unwrap_or("-"),
        entry["path"].as_str().unwrap_or(""),
        status,
        latency,
        text("matched_service"),
        keys,
        text("error_code"),
    )
}

#[cfg(test)]
mod tests {
    use super::line;
    use serde_json::json;

    #[test]
    fn a_line_holds_what_the_request_log_keeps() {
        let entry = json!({
            "id": 7, "ingress": "explicit", "method": "POST", "host": "api.stripe.com",
            "path": "/v1/charges", "matched_service": "stripe",
            "credential_keys": ["STRIPE_KEY", "STRIPE_ACCOUNT"], "status": 201,
            "latency_ms": 85, "error_code": null, "actor_type": "agent", "actor_id": "a1",
            "created_at": "2023-11-14T22:13:20Z"
        });
        assert_eq!(
            line(&entry),
            "2023-11-14T22:13:20Z  POST    api.stripe.com/v1/charges  201    85ms  stripe  STRIPE_KEY,STRIPE_ACCOUNT  -"
        );
        let refused = json!({
            "method": "GET", "host": "api.example.com:8443", "path": "/x",
            "matched_service": null, "credential_keys": [], "status": 0, "latency_ms": 0,
            "error_code": "no_match", "created_at": "2023-11-14T22:13:21Z"
        });
        assert_eq!(
            line(&refused),
            "2023-11-14T22:13:21Z  GET     api.example.com:8443/x    -     0ms  -  -  no_match"
        );
    }
}
