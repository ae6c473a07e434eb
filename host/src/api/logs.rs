//! `GET /v1/vaults/{name}/logs`: the vault's request log, newest first, paged by id cursors
//! (`before` for older entries, `after` for newer ones), optionally only the entries of one
//! `ingress` (`explicit`, or `transparent`, which Agent Vault calls `mitm`), one
//! `status_bucket` (`2xx` to `5xx`), one `service`, or made `since`/`until` a time (RFC 3339).
//! Members and admins only.
//!
//! `GET /v1/vaults/{name}/logs/stats?window=hour|day`: how many of those requests finished
//! in each minute of the last hour (60 intervals) or each quarter hour of the last day (96),
//! by status class, counted by the store in one grouped query. The same access rule.
//!
//! `GET /v1/vaults/{name}/discovered-hosts`: the hosts agents tried that no service of the
//! vault covers, from the same log, most tried first: where a new service is likely wanted.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::json;

use super::vaults::{Check, authorized_vault};
use super::{ApiError, ApiState, Request, ok, rfc3339};
use crate::store::{LogBuckets, LogFilter, LogQuery, UnixTime, VaultRole};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

pub async fn list(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Member)).await?;
    let cursor = |name: &str| -> Result<Option<i64>, ApiError> {
        request
            .query(name)
            .map(|value| {
                value
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("{name} must be a log id")))
            })
            .transpose()
    };
    let (before, after) = (cursor("before")?, cursor("after")?);
    if before.is_some() && after.is_some() {
        return Err(ApiError::bad_request(
            "before and after cannot be used together",
        ));
    }
    let limit = match request.query("limit") {
        Some(value) => value
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}")))?,
        None => DEFAULT_LIMIT,
    };
    let query = LogQuery {
        before,
        after,
        limit,
        filter: filter(request)?,
    };
    let vault_id = vault.id.clone();
    let entries = state
        .db
        .run(move |store| store.logs(&vault_id, &query))
        .await?;
    let next_cursor = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let latest_id = entries.first().map(|e| e.id);
    let logs: Vec<_> = entries
        .iter()
        .map(|entry| {
            json!({
                "id": entry.id,
                "ingress": entry.ingress,
                "method": entry.method,
                "host": entry.host,
                "path": entry.path,
                "matched_service": entry.matched_service,
                "credential_keys": entry.credential_keys,
                "status": entry.status,
                "latency_ms": entry.latency_ms,
                "error_code": entry.error_code,
                "actor_type": entry.actor.as_ref().map(|a| a.kind),
                "actor_id": entry.actor.as_ref().map(|a| a.id.clone()),
                "created_at": rfc3339(entry.created_at),
            })
        })
        .collect();
    ok(&json!({ "logs": logs, "next_cursor": next_cursor, "latest_id": latest_id }))
}

/// The `ingress`, `status_bucket` and `service` parameters; empty ones are no condition.
fn filter(request: &Request) -> Result<LogFilter, ApiError> {
    let given = |name: &str| request.query(name).filter(|value| !value.is_empty());
    let ingress = given("ingress")
        .map(|ingress| match ingress {
            "explicit" => Ok("explicit"),
            "transparent" | "mitm" => Ok("transparent"),
            other => Err(ApiError::bad_request(format!(
                "ingress must be explicit or transparent (mitm), not {other:?}"
            ))),
        })
        .transpose()?;
    let status = given("status_bucket")
        .map(|bucket| match bucket.as_bytes() {
            [hundreds @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
                let from = u16::from(hundreds - b'0') * 100;
                Ok((from, from + 99))
            }
            _ => Err(ApiError::bad_request(format!(
                "status_bucket must be 1xx to 5xx, not {bucket:?}"
            ))),
        })
        .transpose()?;
    let time = |name: &str| -> Result<Option<UnixTime>, ApiError> {
        given(name)
            .map(|value| {
                time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                    .map(|time| time.unix_timestamp())
                    .map_err(|_| {
                        ApiError::bad_request(format!(
                            "{name} must be a time like 2025-01-31T12:00:00Z, not {value:?}"
                        ))
                    })
            })
            .transpose()
    };
    Ok(LogFilter {
        ingress: ingress.map(str::to_owned),
        status,
        service: given("service").map(str::to_owned),
        since: time("since")?,
        until: time("until")?,
    })
}

/// The status classes the stats count, in the order they are stacked; `other` is what has
/// no status of these (a blind tunnel's 0, a 1xx).
const CLASSES: [(u16, &str); 4] = [(2, "2xx"), (3, "3xx"), (4, "4xx"), (5, "5xx")];

pub async fn stats(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Member)).await?;
    let window = request.query("window").unwrap_or("hour");
    let (width, count) = match window {
        "hour" => (60, 60),
        "day" => (15 * 60, 96),
        other => {
            return Err(ApiError::bad_request(format!(
                "window must be hour or day, not {other:?}"
            )));
        }
    };
    // Intervals on whole minutes (quarter hours), the last one holding now.
    let now = crate::store::now();
    let buckets = LogBuckets {
        since: (now.div_euclid(width) + 1) * width - width * i64::from(count),
        width,
        count,
    };
    let vault_id = vault.id.clone();
    let counts = state
        .db
        .run(move |store| store.log_counts(&vault_id, &buckets))
        .await?;
    // [2xx, 3xx, 4xx, 5xx, other] per interval.
    let mut table = vec![[0u64; 5]; count as usize];
    for counted in counts {
        let Some(row) = table.get_mut(counted.bucket as usize) else {
            continue;
        };
        let column = CLASSES
            .iter()
            .position(|(class, _)| *class == counted.class)
            .unwrap_or(4);
        row[column] += counted.requests;
    }
    let by_class = |row: &[u64; 5]| {
        let mut object = serde_json::Map::new();
        for (column, (_, label)) in CLASSES.iter().enumerate() {
            object.insert((*label).to_owned(), row[column].into());
        }
        object.insert("other".to_owned(), row[4].into());
        object
    };
    let mut totals = [0u64; 5];
    let listed: Vec<_> = table
        .iter()
        .enumerate()
        .map(|(index, row)| {
            for (total, n) in totals.iter_mut().zip(row) {
                *total += n;
            }
            let mut bucket = by_class(row);
            let start = buckets.since + width * index as i64;
            bucket.insert("start".to_owned(), rfc3339(start).into());
            bucket
        })
        .collect();
    ok(&json!({
        "window": window,
        "bucket_seconds": width,
        "since": rfc3339(buckets.since),
        "until": rfc3339(buckets.until()),
        "buckets": listed,
        "totals": by_class(&totals),
    }))
}

/// How many discovered hosts are answered by default, and at most.
const HOSTS_DEFAULT: usize = 5;
const HOSTS_MAX: usize = 100;

pub async fn discovered_hosts(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(VaultRole::Member)).await?;
    let limit = match request.query("limit") {
        Some(value) => value
            .parse::<usize>()
            .ok()
            .filter(|limit| *limit <= HOSTS_MAX)
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 0 to {HOSTS_MAX}")))?,
        None => HOSTS_DEFAULT,
    };
    let vault_id = vault.id.clone();
    let seen = state
        .db
        .run(move |store| store.unmatched_hosts(&vault_id))
        .await?;
    let services = super::services::load(state, &vault).await?;
    // Port-stripped: one row per host name, over the ports it was tried on, leaving out
    // what a service covers by now.
    let mut hosts: Vec<(String, u64, i64)> = Vec::new();
    for host_seen in seen {
        let (host, port) = split_port(&host_seen.host);
        if crate::proxy::route::covers_host(&services, host, port) {
            continue;
        }
        match hosts.iter_mut().find(|(name, _, _)| name == host) {
            Some((_, requests, last_seen)) => {
                *requests += host_seen.requests;
                *last_seen = (*last_seen).max(host_seen.last_seen);
            }
            None => hosts.push((host.to_owned(), host_seen.requests, host_seen.last_seen)),
        }
    }
    hosts.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    let total = hosts.len();
    let listed: Vec<_> = hosts
        .into_iter()
        .take(limit)
        .map(|(host, requests, last_seen)| {
            json!({ "host": host, "request_count": requests, "last_seen": rfc3339(last_seen) })
        })
        .collect();
    ok(&json!({ "hosts": listed, "total": total }))
}

/// `host:port` (IPv6 in brackets) as logged; 443 if there is no port.
fn split_port(logged: &str) -> (&str, u16) {
    match logged.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => match port.parse() {
            Ok(port) => (host.trim_start_matches('[').trim_end_matches(']'), port),
            Err(_) => (logged, 443),
        },
        _ => (logged, 443),
    }
}
