//! `/v1/admin/settings`: the instance's settings, read by owners and changed by an owner
//! signed in as a person (an owner-role agent reads them but does not change them: what
//! agents may do is decided by people).
//!
//! One setting so far, `agents_can_approve_proposals` (default `false`): whether agents with
//! the member or admin role in a vault may approve and reject proposals there. The answer
//! also shows the rate limits in force (`rate_limit`), which are the server's start-up
//! configuration (`--rate-limit-profile`, `AGENT_VAULT_RATELIMIT_*`): read here, not changed. Even then no
//! one decides on a proposal they made (`auth::access::check_review`). Settings are kept in
//! the store as text, one row each; a setting without a row has its default, and a value
//! that cannot be read counts as the default (off), with an error in the server log.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Request, ok};
use crate::auth::access::{self, Denied};
use crate::store::InstanceRole;

/// The store key of [`InstanceSettings::agents_can_approve_proposals`].
const AGENTS_CAN_APPROVE_PROPOSALS: &str = "agents_can_approve_proposals";

/// The rate limits a server started with, as `GET /v1/admin/settings` shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitsInForce {
    /// `default`, `strict`, `loose` or `off`.
    pub profile: String,
    /// The limits after the `AGENT_VAULT_RATELIMIT_*` variables; none when off.
    pub tiers: Option<Tiers>,
    /// Where they come from: they change only with a restart.
    pub source: &'static str,
    pub locked: bool,
}

/// The limits of each tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tiers {
    pub proxy: Tier,
    pub global: Tier,
    pub auth: Tier,
}

/// One tier's limits (a rate, burst or concurrency of 0 is no limit).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tier {
    /// Requests per second.
    pub rate: f64,
    pub burst: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// How long a request waits for a slot before it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u128>,
}

impl RateLimitsInForce {
    pub fn new(profile: &str, limits: Option<crate::ratelimit::RateLimits>) -> Self {
        RateLimitsInForce {
            profile: profile.to_owned(),
            tiers: limits.map(|limits| Tiers {
                proxy: Tier {
                    rate: limits.proxy_rate,
                    burst: limits.proxy_burst,
                    concurrency: Some(limits.proxy_concurrency),
                    wait_ms: Some(limits.proxy_wait.as_millis()),
                },
                global: Tier {
                    rate: limits.global_rate,
                    burst: limits.global_burst,
                    concurrency: Some(limits.global_concurrency),
                    wait_ms: Some(limits.global_wait.as_millis()),
                },
                auth: Tier {
                    rate: limits.auth_rate,
                    burst: limits.auth_burst,
                    concurrency: None,
                    wait_ms: None,
                },
            }),
            source: "server start: --rate-limit-profile and AGENT_VAULT_RATELIMIT_* variables",
            locked: true,
        }
    }
}

/// The instance's settings, as `GET /v1/admin/settings` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InstanceSettings {
    /// Agents with the member or admin role in a vault may approve and reject the proposals
    /// of others there.
    pub agents_can_approve_proposals: bool,
}

/// The body of `PUT /v1/admin/settings`: the settings to change; the others stay.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsUpdate {
    agents_can_approve_proposals: Option<bool>,
}

/// The instance's settings now.
pub async fn load(state: &ApiState) -> Result<InstanceSettings, ApiError> {
    let stored = state
        .db
        .run(|store| store.instance_setting(AGENTS_CAN_APPROVE_PROPOSALS))
        .await?;
    let agents_can_approve_proposals = match stored.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            tracing::error!(
                "instance setting {AGENTS_CAN_APPROVE_PROPOSALS} has the unreadable value \
                 {other:?}; it counts as false until an owner sets it again"
            );
            false
        }
    };
    Ok(InstanceSettings {
        agents_can_approve_proposals,
    })
}

/// `GET /v1/admin/settings`.
pub async fn get(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Owner)?;
    answer(state).await
}

/// The settings and the rate limits in force.
async fn answer(state: &ApiState) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut body = serde_json::to_value(load(state).await?).expect("settings serialize");
    body["rate_limit"] = serde_json::to_value(&state.rate_limits).expect("limits serialize");
    ok(&body)
}

/// `PUT /v1/admin/settings`: change the settings the body names; the answer is all of them.
pub async fn put(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    access::require_instance(&session.actor, InstanceRole::Owner)?;
    if !session.actor.is_person() {
        return Err(Denied::SettingsAreForPeople.into());
    }
    let update: SettingsUpdate = request.json()?;
    if let Some(allowed) = update.agents_can_approve_proposals {
        let value = if allowed { "true" } else { "false" };
        state
            .db
            .run(move |store| store.set_instance_setting(AGENTS_CAN_APPROVE_PROPOSALS, Some(value)))
            .await?;
        tracing::info!(
            by = %session.actor.display_name(),
            "instance setting {AGENTS_CAN_APPROVE_PROPOSALS} set to {allowed}"
        );
    }
    answer(state).await
}
