//! `/v1/vaults/{name}/services`: what a vault's credentials are for and how they attach.
//!
//! Reading needs any role in the vault; writing needs vault admin. Every write validates the
//! whole resulting list (names, hosts, path globs, auth fields, the plugin, its
//! configuration and its credential slots) and fails with one message naming the service
//! and the field. Writes to one vault's services are serialised so none is lost.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::vaults::{Check, authorized_vault};
use super::{ApiError, ApiState, Request, ok};
use crate::services::{self, Rules, Service, ServiceSpec};
use crate::store::{Vault, VaultRole};

#[derive(Deserialize)]
struct ServicesBody {
    #[serde(default)]
    services: Vec<ServiceSpec>,
}

pub(super) async fn load(state: &ApiState, vault: &Vault) -> Result<Vec<Service>, ApiError> {
    let id = vault.id.clone();
    match state.db.run(move |store| store.services(&id)).await? {
        Some(document) => services::from_document(&document).map_err(|message| {
            tracing::error!(vault = %vault.name, "{message}");
            ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "the vault's services cannot be read",
            )
        }),
        None => Ok(Vec::new()),
    }
}

async fn save(state: &ApiState, vault: &Vault, services: &[Service]) -> Result<(), ApiError> {
    let (id, document) = (vault.id.clone(), services::to_document(services));
    state
        .db
        .run(move |store| store.set_services(&id, &document))
        .await?;
    Ok(())
}

fn validate(state: &ApiState, specs: &[ServiceSpec]) -> Result<Vec<Service>, ApiError> {
    let rules = Rules {
        dev_mode: state.dev_mode,
        plugins: Some(&state.plugins),
    };
    services::validate(specs, rules)
        .map_err(|message| ApiError::bad_request(format!("Invalid services: {message}")))
}

async fn vault_for(
    state: &ApiState,
    request: &Request,
    name: &str,
    role: VaultRole,
) -> Result<Vault, ApiError> {
    let (_, vault) = authorized_vault(state, request, name, Check::Role(role)).await?;
    Ok(vault)
}

pub async fn list(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = vault_for(state, request, name, VaultRole::Proxy).await?;
    let services = load(state, &vault).await?;
    let json: Vec<_> = services.iter().map(Service::to_json).collect();
    ok(&json!({ "vault": vault.name, "services": json }))
}

/// `GET /v1/vaults/{name}/services/credential-usage?key=`: the services that use a
/// credential key, say before it is deleted or rotated.
pub async fn credential_usage(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = vault_for(state, request, name, VaultRole::Proxy).await?;
    let key = request
        .query("key")
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::bad_request("key is required"))?;
    let services = load(state, &vault).await?;
    let using: Vec<_> = services
        .iter()
        .filter(|service| service.credential_keys().iter().any(|used| used == key))
        .map(|service| json!({ "name": service.name, "host": service.inline_host() }))
        .collect();
    ok(&json!({ "services": using }))
}

pub async fn upsert(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = vault_for(state, request, name, VaultRole::Admin).await?;
    let body: ServicesBody = request.json()?;
    if body.services.is_empty() {
        return Err(ApiError::bad_request("At least one service is required"));
    }
    let incoming = validate(state, &body.services)?;
    let _writing = state.services_lock.lock().await;
    let mut services = load(state, &vault).await?;
    let mut upserted = Vec::new();
    for service in incoming {
        upserted.push(service.name.clone());
        match services
            .iter_mut()
            .find(|existing| existing.name == service.name)
        {
            Some(existing) => *existing = service,
            None => services.push(service),
        }
    }
    save(state, &vault, &services).await?;
    ok(&json!({ "vault": vault.name, "upserted": upserted, "services_count": services.len() }))
}

pub async fn replace(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = vault_for(state, request, name, VaultRole::Admin).await?;
    let body: ServicesBody = request.json()?;
    let services = validate(state, &body.services)?;
    let _writing = state.services_lock.lock().await;
    save(state, &vault, &services).await?;
    ok(&json!({ "vault": vault.name, "services_count": services.len() }))
}

pub async fn clear(
    state: &ApiState,
    request: &Request,
    name: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = vault_for(state, request, name, VaultRole::Admin).await?;
    let _writing = state.services_lock.lock().await;
    save(state, &vault, &[]).await?;
    ok(&json!({ "vault": vault.name, "cleared": true }))
}

/// The index of the service named `name_or_host`, else of the one service on that host.
fn find(services: &[Service], name_or_host: &str) -> Result<usize, ApiError> {
    if let Some(index) = services.iter().position(|s| s.name == name_or_host) {
        return Ok(index);
    }
    let wanted = name_or_host.to_ascii_lowercase();
    let on_host: Vec<usize> = services
        .iter()
        .enumerate()
        .filter(|(_, s)| s.host == wanted || s.inline_host() == wanted)
        .map(|(index, _)| index)
        .collect();
    match on_host.as_slice() {
        [index] => Ok(*index),
        [] => Err(ApiError::not_found(format!(
            "Service not found: {name_or_host}"
        ))),
        many => {
            let candidates: Vec<_> = many
                .iter()
                .map(|&i| json!({ "name": services[i].name, "host": services[i].inline_host() }))
                .collect();
            Err(ApiError::conflict(format!(
                "multiple services match host \"{name_or_host}\" — retry with a service name"
            ))
            .with(json!({ "candidates": candidates })))
        }
    }
}

#[derive(Deserialize)]
struct Patch {
    enabled: Option<bool>,
}

pub async fn patch(
    state: &ApiState,
    request: &Request,
    name: &str,
    target: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = vault_for(state, request, name, VaultRole::Admin).await?;
    let body: Patch = request.json()?;
    let enabled = body.enabled.ok_or_else(|| {
        ApiError::bad_request("enabled is the only field that can be changed, and it is required")
    })?;
    let _writing = state.services_lock.lock().await;
    let mut services = load(state, &vault).await?;
    let index = find(&services, target)?;
    services[index].enabled = enabled;
    save(state, &vault, &services).await?;
    let service = &services[index];
    ok(
        &json!({ "vault": vault.name, "name": service.name, "host": service.inline_host(), "enabled": enabled }),
    )
}

pub async fn remove(
    state: &ApiState,
    request: &Request,
    name: &str,
    target: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let vault = vault_for(state, request, name, VaultRole::Admin).await?;
    let _writing = state.services_lock.lock().await;
    let mut services = load(state, &vault).await?;
    let index = find(&services, target)?;
    let removed = services.remove(index);
    save(state, &vault, &services).await?;
    ok(&json!({
        "vault": vault.name,
        "removed": removed.name,
        "removed_host": removed.inline_host(),
        "services_count": services.len(),
    }))
}
