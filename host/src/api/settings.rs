//! `/v1/admin/settings`: the instance's settings, read by owners and changed by an owner
//! signed in as a person (an owner-role agent reads them but does not change them: what
//! agents may do is decided by people).
//!
//! One setting so far, `agents_can_approve_proposals` (default `false`): whether agents with
//! the member or admin role in a vault may approve and reject proposals there. Even then no
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
    ok(&load(state).await?)
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
    ok(&load(state).await?)
}
