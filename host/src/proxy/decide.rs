//! Decide: the service's plugin, what it needs of a request (`validate-config`, cached per
//! service), and its decision applied to the outgoing request (`crate::plugin`: credentials
//! rendered by the vault, placeholders replaced, signers last). Then the request as it will
//! leave is checked against the route again, so that nothing the plugin or a placeholder did
//! takes it where the agent's request could not go.

use std::sync::Arc;
use std::time::SystemTime;

use http::Method;

use super::cache::VaultView;
use super::{Caller, ProxyError, ProxyState, route};
use crate::plugin::apply::ApplyError;
use crate::plugin::contract::Requirements;
use crate::plugin::{Call, CallError, Outcome, Plugin, PluginConfigError, PluginError};
use crate::request::{RequestHead, Scheme};
use crate::services::{PluginBinding, Service};
use crate::vault::Credentials;
use crate::vault::substitute::Placeholders;

/// The plugin `binding` names, at the pinned version if the service pins one.
pub(super) fn plugin(
    state: &ProxyState,
    binding: &PluginBinding,
) -> Result<Arc<Plugin>, ProxyError> {
    state
        .plugins
        .get_pinned(&binding.plugin, binding.sha256.as_deref())
        .map_err(|error| ProxyError::Plugin(error.to_string()))
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
            PluginConfigError::Plugin(error) => plugin_failure(error, &service.name),
            error => ProxyError::Plugin(error.to_string()),
        })
}

/// The stage: `plugin` decides for `head`, its decision applied with `credentials` (dropped
/// here, as soon as they are written) and `placeholders`; then the result is checked.
pub(super) async fn authorize(
    plugin: &Plugin,
    (service, binding): (&Service, &PluginBinding),
    caller: &Caller,
    (credentials, placeholders): (Credentials, &Placeholders),
    head: &mut RequestHead,
    body_sha256: Option<&[u8; 32]>,
) -> Result<(), ProxyError> {
    let call = Call {
        service: &service.name,
        vault: &caller.vault.name,
        config: &binding.config,
        credentials: &credentials,
        now: SystemTime::now(),
        body_sha256,
        placeholders: Some(placeholders),
    };
    let leaving_for = Destination::of(head);
    match plugin.authorize(head, &call).await {
        Ok(Outcome::Forward) => {}
        Ok(Outcome::Deny { status, reason }) => return Err(ProxyError::Denied { status, reason }),
        Err(error) => return Err(plugin_failure(error, &service.name)),
    }
    drop(credentials);
    check_outgoing(service, plugin.name(), &leaving_for, head)
}

/// A plugin's failure as the agent sees it: a placeholder that does not fit
/// (`substitution_error`), a credential that does not fit where the plugin put it
/// (`credential_unrenderable`, saying no more), a plugin at its limit of slow calls
/// (`plugin_busy`), anything else `plugin_error`.
fn plugin_failure(error: PluginError, service: &str) -> ProxyError {
    match error {
        PluginError::Apply {
            error: ApplyError::Substitution(error),
            ..
        } => ProxyError::Substitution(error.to_string()),
        PluginError::Apply { plugin, error } if error.is_unrenderable_credential() => {
            ProxyError::CredentialUnrenderable {
                plugin,
                service: service.to_owned(),
            }
        }
        error @ PluginError::Call {
            error: CallError::Busy { .. },
            ..
        } => ProxyError::PluginBusy(error.to_string()),
        error => ProxyError::Plugin(error.to_string()),
    }
}

/// Where the request was going before the plugin ran: what no plugin may change.
#[derive(Debug, PartialEq, Eq)]
struct Destination {
    method: Method,
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Destination {
    fn of(head: &RequestHead) -> Destination {
        Destination {
            method: head.method.clone(),
            scheme: head.scheme,
            host: head.host.clone(),
            port: head.port,
        }
    }
}

/// The request as it will leave, after the plugin and the placeholders, checked as the route
/// checked the agent's: the same method, scheme, host and port, and a path the service covers
/// and its allow rules let through. A plugin's path rewrite cannot reach what the rules
/// exclude. The message names the plugin and never repeats the outgoing path, which may hold
/// a credential.
fn check_outgoing(
    service: &Service,
    plugin: &str,
    before: &Destination,
    head: &RequestHead,
) -> Result<(), ProxyError> {
    let allowed = Destination::of(head) == *before
        && route::canonical_path(&head.path).is_ok_and(|path| {
            (service.path.is_empty() || route::glob_matches(&service.path, &path))
                && route::allowed(&service.allow, head.method.as_str(), &path)
        });
    if allowed {
        return Ok(());
    }
    Err(ProxyError::PathNotAllowed(format!(
        "the request as plugin \"{plugin}\" leaves it is not allowed by service \"{}\": its \
         path and allow rules are checked again on the request after the plugin and the \
         placeholders",
        service.name
    )))
}
