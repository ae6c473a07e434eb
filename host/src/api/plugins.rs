//! `/v1/plugins`: the plugins this server has loaded, what each describes, the plugin
//! directory's load errors, and a dry run of one plugin on a request someone describes.
//!
//! Who may call: listing takes the instance role member or owner, people and agents alike
//! (agents propose services, and a service names a plugin and its configuration keys); a
//! vault-scoped session acts only inside its vault and is refused. A dry run takes the same
//! role and a person: it runs plugin code on the plugin threads the proxy uses, within each
//! plugin's limit of slow calls, so an agent looping on it could make real requests wait.
//!
//! A dry run never opens a vault: the credential values are the ones typed in the request
//! (made up), and the answer shows them masked (`crate::plugin::dry_run`, the code
//! `agent-vault plugin test` runs too). Every part of its input has a size limit.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Request, ok};
use crate::auth::access::{self, Denied};
use crate::plugin::contract::BodyNeed;
use crate::plugin::dry_run::{self, DryRun, DryRunOutcome};
use crate::plugin::registry::{Listing, Status};
use crate::plugin::{Plugin, Source};
use crate::store::InstanceRole;
use crate::vault::Secret;

/// The longest URL a dry run takes, in bytes.
pub const MAX_URL: usize = 8 * 1024;
/// The most headers, config entries or credentials a dry run takes (each).
pub const MAX_ENTRIES: usize = 64;
/// The longest header line, config value or credential value, in bytes.
pub const MAX_VALUE: usize = 8 * 1024;
/// The largest body a dry run hashes, in bytes.
pub const MAX_DRY_RUN_BODY: usize = 64 * 1024;

/// The vault name a dry run's plugin sees.
const DRY_RUN_VAULT: &str = "dry run";

/// `GET /v1/plugins`.
pub async fn list(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Member)?;
    let mut plugins = Vec::new();
    let mut errors = Vec::new();
    for listing in state.plugins.list() {
        match &listing.status {
            Status::Active => {}
            // The file of the same name serves, and is listed as its own entry.
            Status::Overridden => continue,
            Status::ServingPrevious(error) => errors.push(json!({
                "file": file_name(&listing),
                "error": format!(
                    "{}; the previous version of {} still serves",
                    without_dir(error, &listing),
                    listing.name
                ),
            })),
            Status::Failed(error) => {
                errors.push(json!({
                    "file": file_name(&listing),
                    "error": format!("{}; no plugin of that name serves from it", without_dir(error, &listing)),
                }));
                continue;
            }
        }
        if let Some(plugin) = state.plugins.get(&listing.name) {
            plugins.push(describe(&plugin));
        }
    }
    ok(&json!({ "plugins": plugins, "errors": errors }))
}

/// One plugin as `GET /v1/plugins` shows it.
fn describe(plugin: &Plugin) -> Value {
    let info = plugin.info();
    let keys = |entries: Vec<(&str, bool, &str)>| -> Vec<Value> {
        entries
            .into_iter()
            .map(|(name, required, description)| {
                json!({ "name": name, "required": required, "description": description })
            })
            .collect()
    };
    json!({
        "name": plugin.name(),
        "version": info.version,
        "sha256": plugin.sha256(),
        "origin": match plugin.source() {
            Source::Builtin => "builtin",
            Source::File(_) => "file",
        },
        "description": info.description,
        "config": keys(info.config.iter().map(|key| (key.name.as_str(), key.required, key.description.as_str())).collect()),
        "slots": keys(info.credentials.iter().map(|slot| (slot.name.as_str(), slot.required, slot.description.as_str())).collect()),
        // A plugin that skips the hash when a header is present still reads the body.
        "body": match info.body {
            BodyNeed::None => "none",
            BodyNeed::Sha256 | BodyNeed::Sha256UnlessHeader(_) => "sha256",
        },
    })
}

/// The plugin file's name, without the server's directory.
fn file_name(listing: &Listing) -> String {
    match &listing.source {
        Source::File(path) => path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| listing.name.clone()),
        Source::Builtin => listing.name.clone(),
    }
}

/// A load error with the file's full path (which says where the server keeps its data)
/// shortened to the file's name.
fn without_dir(error: &str, listing: &Listing) -> String {
    match &listing.source {
        Source::File(path) => error.replace(&path.display().to_string(), &file_name(listing)),
        Source::Builtin => error.to_owned(),
    }
}

/// The body of `POST /v1/plugins/test`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRunRequest {
    plugin: String,
    #[serde(default = "get")]
    method: String,
    url: String,
    /// `Name: value`, one per header.
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Made-up values by slot name.
    #[serde(default)]
    credentials: BTreeMap<String, String>,
    /// RFC 3339; the server's clock if absent.
    now: Option<String>,
}

fn get() -> String {
    "GET".to_owned()
}

/// `POST /v1/plugins/test`.
pub async fn test(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Member)?;
    if !session.actor.is_person() {
        return Err(Denied::DryRunIsForPeople.into());
    }
    let body: DryRunRequest = request.json_with_secrets()?;
    check_sizes(&body)?;
    let plugin = state.plugins.get(&body.plugin).ok_or_else(|| {
        ApiError::not_found(format!("no plugin named {:?} is loaded", body.plugin))
    })?;
    let now = match &body.now {
        Some(text) => dry_run::parse_now(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "now {text:?} is not an RFC 3339 time such as 2015-08-30T12:36:00Z"
            ))
        })?,
        None => SystemTime::now(),
    };
    let input = DryRun {
        method: body.method,
        url: body.url,
        headers: body.headers,
        body: body.body.into_bytes(),
        config: body.config.into_iter().collect(),
        credentials: body
            .credentials
            .into_iter()
            .map(|(slot, value)| (slot, Secret::new(value)))
            .collect(),
        now,
        service: "test".to_owned(),
        // Warm plugin instances are kept per vault name: a name no vault can have (a vault's
        // is a slug) keeps the dry runs' instances apart from every vault's requests.
        vault: DRY_RUN_VAULT.to_owned(),
    };
    match dry_run::dry_run(&plugin, &input, false).await {
        Ok(DryRunOutcome::Forward(shown)) => ok(&json!({
            "outcome": "forward",
            "request": {
                "line": shown.line,
                "headers": shown.headers.iter()
                    .map(|(name, value)| json!({ "name": name, "value": value }))
                    .collect::<Vec<_>>(),
            },
        })),
        Ok(DryRunOutcome::Deny { status, reason }) => ok(&json!({
            "outcome": "deny",
            "status": status,
            "reason": reason,
        })),
        Err(error) if error.is_plugin_failure() => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            error.to_string(),
        )
        .with(json!({ "code": "plugin_error" }))),
        Err(error) => Err(ApiError::bad_request(error.to_string())),
    }
}

/// Refuse a dry run whose input is over a limit, naming the part and the limit (never the
/// value: it may be a credential).
fn check_sizes(body: &DryRunRequest) -> Result<(), ApiError> {
    let too_large = |what: &str, limit: usize| {
        Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is larger than {limit} bytes"),
        ))
    };
    let too_many = |what: &str| {
        Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a dry run takes at most {MAX_ENTRIES} {what}"),
        ))
    };
    if body.url.len() > MAX_URL {
        return too_large("the URL", MAX_URL);
    }
    if body.body.len() > MAX_DRY_RUN_BODY {
        return too_large("the body", MAX_DRY_RUN_BODY);
    }
    if body.headers.len() > MAX_ENTRIES {
        return too_many("headers");
    }
    if body.config.len() > MAX_ENTRIES {
        return too_many("config entries");
    }
    if body.credentials.len() > MAX_ENTRIES {
        return too_many("credentials");
    }
    if body.headers.iter().any(|header| header.len() > MAX_VALUE) {
        return too_large("a header", MAX_VALUE);
    }
    if body
        .config
        .iter()
        .any(|(key, value)| key.len() > MAX_VALUE || value.len() > MAX_VALUE)
    {
        return too_large("a config entry", MAX_VALUE);
    }
    if body
        .credentials
        .iter()
        .any(|(slot, value)| slot.len() > MAX_VALUE || value.len() > MAX_VALUE)
    {
        return too_large("a credential", MAX_VALUE);
    }
    Ok(())
}
