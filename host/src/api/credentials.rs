//! `/v1/credentials`: set, list and delete a vault's credentials.
//!
//! Values are sealed (vault id, key name and key version bound in) before they reach the
//! store. Every role lists names; members and admins set and delete values. Reading values
//! back (`?reveal=true`) is for people only (`access::require_reveal`): an agent or a vault
//! session never receives one, whatever its role. Every reveal is logged at INFO (who, which
//! vault, which keys; never a value), so that reading a secret back leaves a trace.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::vaults::{Check, check};
use super::{ApiError, ApiState, Request, find_vault, ok, vault_name_or_default};
use crate::auth::{Actor, Session, access};
use crate::services::check_credential_key;
use crate::store::{StoredCredential, Vault, VaultRole};
use crate::vault::Secret;

/// The vault a credential request is about: the one named, else a scoped session's own,
/// else `default`.
async fn target_vault(
    state: &ApiState,
    session: &Session,
    named: Option<&str>,
) -> Result<Vault, ApiError> {
    if let (None | Some(""), Actor::Scoped { vault_id, .. }) = (named, &session.actor) {
        let id = vault_id.clone();
        return state
            .db
            .run(move |store| store.vault_by_id(&id))
            .await?
            .ok_or_else(|| ApiError::not_found("Vault not found"));
    }
    find_vault(state, &vault_name_or_default(named)).await
}

pub async fn list(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let vault = target_vault(state, &session, request.query("vault")).await?;
    let reveal = request.query("reveal") == Some("true");
    if reveal {
        let (actor, checked) = (session.actor.clone(), vault.clone());
        state
            .db
            .run(move |store| Ok(access::require_reveal(store, &actor, &checked)))
            .await??;
    } else {
        check(state, &session.actor, &vault, Check::Role(VaultRole::Proxy)).await?;
    }
    let vault_id = vault.id.clone();
    let mut keys = state
        .db
        .run(move |store| store.credential_keys(&vault_id))
        .await?;
    if let Some(key) = request.query("key") {
        if !keys.iter().any(|k| k == key) {
            return Err(ApiError::not_found(format!("Credential not found: {key}")));
        }
        keys.retain(|k| k == key);
    }
    if !reveal {
        return ok(&json!({ "keys": keys }));
    }
    let vault_id = vault.id.clone();
    let wanted = keys.clone();
    let sealed = state
        .db
        .run(move |store| {
            wanted
                .iter()
                .filter_map(|key| store.credential(&vault_id, key).transpose())
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let mut credentials = Vec::new();
    for stored in sealed {
        let secret = state
            .data_key
            .open_credential(&vault.id, &stored.key, &stored.sealed)
            .map_err(|error| {
                ApiError::new(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Credential {} cannot be decrypted: {error}", stored.key),
                )
            })?;
        credentials.push(json!({
            "key": stored.key,
            "type": "static",
            "value": secret.reveal_utf8_lossy(),
        }));
    }
    tracing::info!(
        vault = %vault.name,
        keys = %keys.join(","),
        by = %session.actor.display_name(),
        "credential values revealed"
    );
    ok(&json!({ "keys": keys, "credentials": credentials }))
}

#[derive(Deserialize)]
struct SetCredentials {
    vault: Option<String>,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
}

pub async fn set(state: &ApiState, request: &Request) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let body: SetCredentials = request.json_with_secrets()?;
    let vault = target_vault(state, &session, body.vault.as_deref()).await?;
    check(
        state,
        &session.actor,
        &vault,
        Check::Role(VaultRole::Member),
    )
    .await?;
    if body.credentials.is_empty() {
        return Err(ApiError::bad_request("At least one credential is required"));
    }
    let mut sealed = Vec::with_capacity(body.credentials.len());
    for (key, value) in body.credentials {
        check_credential_key(&key)
            .map_err(|message| ApiError::bad_request(format!("credential key {message}")))?;
        if value.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Credential {key:?} cannot be empty"
            )));
        }
        let secret = Secret::new(value);
        sealed.push(StoredCredential {
            sealed: state.data_key.seal_credential(&vault.id, &key, &secret)?,
            key,
        });
    }
    let keys: Vec<String> = sealed.iter().map(|c| c.key.clone()).collect();
    let vault_id = vault.id.clone();
    state
        .db
        .run(move |store| store.put_credentials(&vault_id, &sealed))
        .await?;
    ok(&json!({ "set": keys }))
}

#[derive(Deserialize)]
struct DeleteCredentials {
    vault: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
}

pub async fn delete(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let session = request.session(state).await?;
    let body: DeleteCredentials = request.json()?;
    let vault = target_vault(state, &session, body.vault.as_deref()).await?;
    check(
        state,
        &session.actor,
        &vault,
        Check::Role(VaultRole::Member),
    )
    .await?;
    if body.keys.is_empty() {
        return Err(ApiError::bad_request("At least one key is required"));
    }
    let vault_id = vault.id.clone();
    let keys = body.keys;
    let deleted = state
        .db
        .run(move |store| store.delete_credentials(&vault_id, &keys))
        .await?;
    ok(&json!({ "deleted": deleted }))
}
