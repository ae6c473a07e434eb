//! Fill: the plugin's plan written into the outgoing request (`crate::fill`: credentials
//! rendered by the vault, placeholders in the path, query and headers, signers last), the
//! credentials dropped as soon as they are written. Then the request as it will leave is
//! checked against the route again, so that nothing the plugin or a placeholder did takes it
//! where the agent's request could not go.

use std::time::SystemTime;

use http::Method;

use super::{ProxyError, route};
use crate::fill::{self, ApplyContext, Plan};
use crate::request::{RequestHead, Scheme};
use crate::services::Service;
use crate::vault::Credentials;
use crate::vault::placeholders::Placeholders;

/// The stage: `plan` applied to `head` with `credentials` (dropped here) and `placeholders`,
/// at the `now` the plugin saw; then the result is checked.
pub(super) fn fill(
    plan: &Plan,
    (service, plugin): (&Service, &str),
    (credentials, placeholders): (Credentials, &Placeholders),
    head: &mut RequestHead,
    (body_sha256, now): (Option<&[u8; 32]>, SystemTime),
) -> Result<(), ProxyError> {
    let leaving_for = Destination::of(head);
    let context = ApplyContext {
        credentials: &credentials,
        now,
        body_sha256,
        placeholders: Some(placeholders),
    };
    fill::apply(plan, head, context, None).map_err(|error| ProxyError::Fill {
        plugin: plugin.to_owned(),
        service: service.name.clone(),
        error,
    })?;
    drop(credentials);
    check_outgoing(service, plugin, &leaving_for, head)
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
