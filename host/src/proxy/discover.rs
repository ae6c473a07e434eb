//! `GET /discover`: what an agent can reach through this vault: the services (name and host,
//! and the placeholders to write where a credential goes, for services that have them) and
//! the names of the credentials, never their values. A service written without a port covers
//! every port of its host, and says so (`"any_port": true`).

use http::Response;
use hyper::body::Incoming;
use serde_json::json;

use super::{ProxyError, ProxyState, authenticate, full};
use crate::upstream::ProxyBody;

pub async fn discover(
    state: &ProxyState,
    request: &http::Request<Incoming>,
    client: std::net::IpAddr,
) -> Result<Response<ProxyBody>, ProxyError> {
    if request.method() != http::Method::GET {
        return Err(ProxyError::BadRequest("use GET /discover".into()));
    }
    let caller = authenticate::caller(state, request.headers(), client).await?;
    let view = state
        .cache
        .view(&caller.vault)
        .await
        .map_err(ProxyError::Internal)?;
    let services: Vec<_> = view
        .services
        .iter()
        .map(|service| {
            let mut entry = json!({ "name": service.name, "host": service.inline_host() });
            if service.port.is_none() {
                // As in Agent Vault, a host without a port is covered on every port.
                entry["any_port"] = json!(true);
            }
            if !service.substitutions.is_empty() {
                entry["placeholders"] = service
                    .substitutions
                    .iter()
                    .map(|substitution| {
                        let surfaces: Vec<&str> =
                            substitution.surfaces.iter().map(|s| s.as_str()).collect();
                        json!({ "placeholder": substitution.placeholder, "in": surfaces })
                    })
                    .collect();
            }
            entry
        })
        .collect();
    let mut keys: Vec<&String> = view.credentials.keys().collect();
    keys.sort();
    let body = json!({
        "vault": caller.vault.name,
        "services": services,
        "available_credentials": keys,
    });
    let mut response = Response::new(full(body.to_string().into()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
