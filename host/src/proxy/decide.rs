//! Decide: the service's plugin, what it needs of a request (`validate-config`, cached per
//! service), and its checked decision for the request (`crate::plugin`): a plan for the fill
//! stage, or a refusal.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::cache::VaultView;
use super::{Caller, ProxyError, ProxyState};
use crate::fill::Plan;
use crate::metrics::{PluginOutcome, metrics};
use crate::plugin::contract::Requirements;
use crate::plugin::{Call, CallError, Plugin, PluginConfigError, PluginError, Verdict};
use crate::request::RequestHead;
use crate::services::{PluginBinding, Service};
use crate::vault::Credentials;

/// The plugin `binding` names, at the pinned version if the service pins one.
pub(super) fn plugin(
    state: &ProxyState,
    binding: &PluginBinding,
) -> Result<Arc<Plugin>, ProxyError> {
    state
        .plugins
        .get_pinned(&binding.plugin, binding.sha256.as_deref())
        .map_err(ProxyError::PluginUnavailable)
}

/// What the plugin needs of a request to `service` (its credential slots, the body's hash).
pub(super) async fn requirements(
    view: &VaultView,
    service: &Service,
    plugin: &Plugin,
) -> Result<Requirements, ProxyError> {
    view.requirements(service, plugin)
        .await
        .map_err(|error| match error {
            PluginConfigError::Plugin(error) => ProxyError::Plugin(error),
            PluginConfigError::Config(error) => ProxyError::PluginConfig(error),
        })
}

/// The stage: what `plugin` decides for `head` at `now`, seeing the names of `credentials`'
/// slots.
pub(super) async fn decide(
    plugin: &Plugin,
    (service, binding): (&Service, &PluginBinding),
    caller: &Caller,
    credentials: &Credentials,
    head: &RequestHead,
    (body_sha256, now): (Option<&[u8; 32]>, SystemTime),
) -> Result<Plan, ProxyError> {
    let call = Call {
        service: &service.name,
        vault: &caller.vault.name,
        config: &binding.config,
        credentials,
        now,
        body_sha256,
        placeholders: None,
    };
    let started = Instant::now();
    let verdict = plugin.decide(head, &call).await;
    let outcome = match &verdict {
        Ok(_) => PluginOutcome::Decided,
        Err(PluginError::Call {
            error: CallError::Timeout(_),
            ..
        }) => PluginOutcome::TimedOut,
        Err(_) => PluginOutcome::Failed,
    };
    metrics().plugin_call(plugin.name(), outcome, started.elapsed());
    match verdict {
        Ok(Verdict::Forward(plan)) => Ok(plan),
        Ok(Verdict::Deny { status, reason }) => Err(ProxyError::Denied { status, reason }),
        Err(error) => Err(ProxyError::Plugin(error)),
    }
}
