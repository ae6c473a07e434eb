//! Open credentials: the service's credentials opened from the vault, once each, and
//! handed to their three uses: the plugin's slots ([`Credentials`]), the placeholders the
//! agent wrote ([`Placeholders`]), and the search for echoed values in the response
//! ([`Redactor`]). The values stay inside `crate::vault` types throughout.

use std::collections::HashMap;

use super::{Caller, LogDraft, ProxyError, ProxyState, Target};
use crate::proxy::cache::VaultView;
use crate::request::Scheme;
use crate::services::{PluginBinding, Service};
use crate::vault::placeholders::Placeholders;
use crate::vault::redact::Redactor;
use crate::vault::{Credentials, Secret, redactor};

/// A request's credentials, ready for each use.
#[derive(Debug)]
pub struct Opened {
    pub credentials: Credentials,
    pub placeholders: Placeholders,
    /// `None` when the service opts out of redaction or binds no credential.
    pub redactor: Option<Redactor>,
}

/// The stage: every credential `service` uses opened, unless the request would carry one in
/// clear text to a service that does not allow it.
pub(super) fn open_for_request(
    state: &ProxyState,
    caller: &Caller,
    view: &VaultView,
    (service, binding): (&Service, &PluginBinding),
    target: &Target,
    draft: &mut LogDraft,
) -> Result<Opened, ProxyError> {
    draft.credential_keys = service.credential_keys_with(binding);
    if target.scheme == Scheme::Http
        && !draft.credential_keys.is_empty()
        && !service.allow_plaintext
    {
        return Err(ProxyError::PlaintextRefused {
            service: service.name.clone(),
            host: target.host.clone(),
        });
    }
    open(
        state,
        caller,
        view,
        service,
        binding,
        &draft.credential_keys,
    )
}

/// Open every credential `service` uses: `keys`, its plugin's slots and its substitutions
/// (`Service::credential_keys_with`).
pub fn open(
    state: &ProxyState,
    caller: &Caller,
    view: &VaultView,
    service: &Service,
    binding: &PluginBinding,
    keys: &[String],
) -> Result<Opened, ProxyError> {
    let opened = open_keys(state, caller, view, service, keys)?;
    let credentials = Credentials::new(
        binding
            .credentials
            .iter()
            .map(|(slot, key)| (slot.clone(), opened[key.as_str()].clone())),
    );
    let placeholders = Placeholders::new(service.substitutions.iter().map(|substitution| {
        (
            substitution.key.clone(),
            substitution.placeholder.clone(),
            substitution.surfaces.clone(),
            opened[substitution.key.as_str()].clone(),
        )
    }));
    let redactor = if service.responses.redact_echo {
        echo_redactor(service, &opened)
    } else {
        None
    };
    Ok(Opened {
        credentials,
        placeholders,
        redactor,
    })
}

/// Each of `keys` opened once, from the vault's sealed credentials.
fn open_keys<'k>(
    state: &ProxyState,
    caller: &Caller,
    view: &VaultView,
    service: &Service,
    keys: &'k [String],
) -> Result<HashMap<&'k str, Secret>, ProxyError> {
    let mut opened: HashMap<&str, Secret> = HashMap::new();
    for key in keys.iter().map(String::as_str) {
        if opened.contains_key(key) {
            continue;
        }
        let sealed = view
            .credentials
            .get(key)
            .ok_or_else(|| ProxyError::CredentialNotFound {
                key: key.to_owned(),
                service: service.name.clone(),
                vault: caller.vault.name.clone(),
            })?;
        let secret = state
            .data_key
            .open_credential(&caller.vault.id, key, sealed)
            .map_err(|_| ProxyError::CredentialUnreadable {
                key: key.to_owned(),
                service: service.name.clone(),
                vault: caller.vault.name.clone(),
            })?;
        opened.insert(key, secret);
    }
    Ok(opened)
}

/// The search for `opened` values echoed in an answer. An echoed value becomes its
/// placeholder where it has one, so an agent that sends it back gets it filled again.
fn echo_redactor(service: &Service, opened: &HashMap<&str, Secret>) -> Option<Redactor> {
    let labels: Vec<(&Secret, String)> = opened
        .iter()
        .map(|(key, secret)| {
            let label = service
                .substitutions
                .iter()
                .find(|substitution| substitution.key == *key)
                .map_or_else(|| format!("[REDACTED:{key}]"), |s| s.placeholder.clone());
            (secret, label)
        })
        .collect();
    redactor(
        labels
            .iter()
            .map(|(secret, label)| (*secret, label.as_str())),
    )
}
