//! Route: which of a vault's services a request is for, and whether that service lets it
//! through.
//!
//! Matching follows Agent Vault: the exact host beats a `*.` wildcard (one label, never the
//! apex), a service with the request's port beats one without a port, the longest literal path
//! prefix (the characters before the first `*`) wins, then declaration order. Paths are
//! matched in their canonical form, and a path whose meaning depends on who decodes it is
//! refused (`crate::path`). What is left is forwarded as the agent wrote it: an unambiguous
//! spelling of the path the rules were checked on.

use super::cache::VaultView;
use super::{Caller, LogDraft, ProxyError, ProxyState, Target};
use crate::authority::display_authority;
use crate::public_url::ControlPlanePeer;
use crate::services::{AllowRule, Service};

pub use crate::path::{PathError, canonical_path};

/// `*` matches any run of characters, `/` included; everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// Whether `host` (lower case) is covered by a service host: equal, or one extra label under a
/// `*.` wildcard.
fn host_tier(service_host: &str, host: &str) -> Option<u8> {
    if service_host == host {
        return Some(2);
    }
    let domain = service_host.strip_prefix("*.")?;
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then_some(1)
}

/// The service for a request to `host:port` with canonical path `path`, if any.
pub fn match_service<'a>(
    services: &'a [Service],
    host: &str,
    port: u16,
    path: &str,
) -> Option<&'a Service> {
    let mut best: Option<(&Service, (u8, u8, usize))> = None;
    for service in services {
        let Some(host_rank) = host_tier(&service.host, host) else {
            continue;
        };
        let port_rank = match service.port {
            Some(wanted) if wanted == port => 1,
            Some(_) => continue,
            None => 0,
        };
        let prefix_len = if service.path.is_empty() {
            0
        } else if glob_matches(&service.path, path) {
            service.path.find('*').unwrap_or(service.path.len())
        } else {
            continue;
        };
        let rank = (host_rank, port_rank, prefix_len);
        // Strictly better only: on a tie the earlier declaration stays.
        if best.is_none_or(|(_, best_rank)| rank > best_rank) {
            best = Some((service, rank));
        }
    }
    best.map(|(service, _)| service)
}

/// Whether any service covers `host:port`, on some path: the transparent proxy intercepts
/// such a host and tunnels any other one blind.
pub fn covers_host(services: &[Service], host: &str, port: u16) -> bool {
    services.iter().any(|service| {
        host_tier(&service.host, host).is_some() && service.port.is_none_or(|wanted| wanted == port)
    })
}

/// Methods forwarded whatever the rules: the ones APIs are built on.
const STANDARD_METHODS: [http::Method; 7] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::PATCH,
    http::Method::OPTIONS,
];

/// Why a method is not forwarded at all (before the allow rules' paths are looked at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodRefusal {
    #[error(
        "TRACE is not forwarded: the upstream would echo the request back, credential included"
    )]
    Trace,
    #[error(
        "CONNECT is not forwarded: a tunnel inside a tunnel would carry requests no rule checks"
    )]
    Connect,
    #[error(
        "{0} is not a standard HTTP method; it is forwarded only if an allow rule names it \
         (\"methods\": [\"{0}\"]; \"*\" does not count)"
    )]
    NotStandard(String),
}

/// Whether `method` may be forwarded at all: the standard methods may, TRACE and CONNECT
/// never, and any other (WebDAV's PROPFIND, a made-up TRACK) only when one of the service's
/// allow rules names it, so that a method the rules' author never thought of does not carry
/// the credential.
pub fn check_method(rules: &[AllowRule], method: &http::Method) -> Result<(), MethodRefusal> {
    if *method == http::Method::TRACE {
        return Err(MethodRefusal::Trace);
    }
    if *method == http::Method::CONNECT {
        return Err(MethodRefusal::Connect);
    }
    let named = || {
        rules
            .iter()
            .any(|rule| rule.methods.iter().any(|m| m == method.as_str()))
    };
    if STANDARD_METHODS.contains(method) || named() {
        Ok(())
    } else {
        Err(MethodRefusal::NotStandard(method.as_str().to_owned()))
    }
}

/// Headers some servers and frameworks read as the request's real method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// Headers some servers and frameworks read as the request's real path.
const PATH_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// Every (method, canonical path) the request may be taken for: its own, and the ones its
/// override headers name (`X-HTTP-Method-Override: DELETE`, `X-Original-URL: /admin`), which
/// an upstream that honours them would act on. The route checks each, so that a service that
/// allows only `POST /v1/items*` cannot be asked to `DELETE /admin` through a header.
pub fn taken_for(
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<Vec<(http::Method, String)>, PathError> {
    let mut methods = vec![method.clone()];
    for name in METHOD_OVERRIDES {
        for value in headers.get_all(name) {
            let named = http::Method::from_bytes(value.as_bytes().trim_ascii())
                .map_err(|_| PathError::BadOverride)?;
            methods.push(named);
        }
    }
    let mut paths = vec![path.to_owned()];
    for name in PATH_OVERRIDES {
        for value in headers.get_all(name) {
            let text = value.to_str().map_err(|_| PathError::BadOverride)?;
            let without_query = text.split(['?', '#']).next().unwrap_or_default();
            paths.push(canonical_path(without_query)?);
        }
    }
    Ok(methods
        .iter()
        .flat_map(|method| paths.iter().map(move |path| (method.clone(), path.clone())))
        .collect())
}

/// Whether the service's allow rules let `method` on `path` through (no rules: anything).
pub fn allowed(rules: &[AllowRule], method: &str, path: &str) -> bool {
    rules.is_empty()
        || rules.iter().any(|rule| {
            let method_ok =
                rule.methods.is_empty() || rule.methods.iter().any(|m| m == "*" || m == method);
            let path_ok =
                rule.paths.is_empty() || rule.paths.iter().any(|glob| glob_matches(glob, path));
            method_ok && path_ok
        })
}

/// The stage: the service of `view` the agent's request is for, once its host, port and path
/// are covered, the service is enabled, and its rules let the method and path through (and
/// any other an override header asks the upstream for).
pub(super) fn select_service<'v>(
    state: &ProxyState,
    caller: &Caller,
    view: &'v VaultView,
    target: &Target,
    parts: &http::request::Parts,
    draft: &mut LogDraft,
) -> Result<&'v Service, ProxyError> {
    let path = canonical_path(&target.path).map_err(ProxyError::InvalidPath)?;
    let service =
        match_service(&view.services, &target.host, target.port, &path).ok_or_else(|| {
            ProxyError::NoService {
                host: display_authority(&target.host, target.port),
                vault: caller.vault.name.clone(),
                base_url: match parts.extensions.get::<ControlPlanePeer>() {
                    Some(peer) => state.address.for_request(peer.0, &parts.headers),
                    None => state.address.fixed().to_owned(),
                },
            }
        })?;
    draft.service = Some(service.name.clone());
    if !service.enabled {
        return Err(ProxyError::ServiceDisabled {
            service: service.name.clone(),
            vault: caller.vault.name.clone(),
        });
    }
    let taken_for =
        taken_for(&parts.method, &path, &parts.headers).map_err(ProxyError::InvalidPath)?;
    for (method, path) in &taken_for {
        check_method(&service.allow, method).map_err(|refusal| {
            ProxyError::MethodNotAllowed(format!("{refusal} (service \"{}\")", service.name))
        })?;
        if !allowed(&service.allow, method.as_str(), path) {
            return Err(ProxyError::PathNotAllowed(format!(
                "{method} {path} is not allowed by the allow rules of service \"{}\"",
                service.name
            )));
        }
    }
    Ok(service)
}

#[cfg(test)]
mod tests;
