//! The API's routes: which handler answers each method and path, the routes that work before
//! the first owner exists (health, status, registering, the approval page), and the two
//! answers that need no resource file (the transparent proxy's CA, the agent guide).

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use super::{
    ApiError, ApiState, Request, agent_invites, agents, approval_page, auth, credentials, logs,
    plugins, proposals, services, sessions, settings, status, users, vaults,
};

pub(super) async fn route(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let owned = request.segments();
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    let method = &request.method;
    // Routes that work before the first owner exists.
    match (method, segments.as_slice()) {
        (&Method::GET, ["health"]) => return status::health(state).await,
        (&Method::GET, ["v1", "mitm", "ca.pem"]) => return transparent_ca(state),
        (&Method::GET, ["v1", "status"]) => return status::status(state, request).await,
        (&Method::POST, ["v1", "auth", "register"]) => return auth::register(state, request).await,
        (&Method::POST, ["v1", "users", "invites", token, "accept"]) => {
            return users::accept_invite(state, request, token).await;
        }
        // The approval page answers in HTML, errors included.
        (&Method::GET, ["approve", id]) => return Ok(approval_page::show(state, request, id).await),
        (&Method::POST, ["approve", id, "login"]) => {
            return Ok(approval_page::login(state, request, id).await);
        }
        (&Method::POST, ["approve", id, "approve"]) => {
            return Ok(approval_page::approve(state, request, id).await);
        }
        (&Method::POST, ["approve", id, "reject"]) => {
            return Ok(approval_page::reject(state, request, id).await);
        }
        (_, ["v1", ..]) => {}
        _ => return Err(ApiError::not_found("no such endpoint")),
    }
    if !state.initialized().await? {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No owner account exists. Run 'agent-vault auth register' to create one.",
        )
        .with(json!({ "code": "not_initialized" })));
    }
    match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "skills", "cli"]) => Ok(skill(request)),
        (&Method::POST, ["v1", "invites", token, "redeem"]) => {
            agent_invites::redeem(state, request, token).await
        }
        (&Method::GET, ["v1", "invites", _, "redeem"]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Redeem an invite with POST; a GET never redeems it (link previews would)",
        )),
        (&Method::POST, ["v1", "auth", "login"]) => auth::login(state, request).await,
        (&Method::POST, ["v1", "auth", "logout"]) => auth::logout(state, request).await,
        (&Method::GET, ["v1", "auth", "me"]) => auth::me(state, request).await,
        (&Method::GET, ["v1", "auth", "sessions"]) => auth::sessions(state, request).await,
        (&Method::DELETE, ["v1", "auth", "sessions", id]) => {
            auth::revoke_session(state, request, id).await
        }
        (&Method::DELETE, ["v1", "auth", "devices", id]) => {
            auth::revoke_device(state, request, id).await
        }
        (&Method::POST, ["v1", "auth", "change-password"]) => {
            auth::change_password(state, request).await
        }

        (&Method::POST, ["v1", "vaults"]) => vaults::create(state, request).await,
        (&Method::GET, ["v1", "vaults"]) => vaults::list(state, request).await,
        (&Method::DELETE, ["v1", "vaults", name]) => vaults::delete(state, request, name).await,
        (&Method::GET, ["v1", "vaults", name, "context"]) => {
            vaults::context(state, request, name).await
        }
        (&Method::GET, ["v1", "admin", "vaults"]) => vaults::all(state, request).await,
        (&Method::GET, ["v1", "admin", "settings"]) => settings::get(state, request).await,
        (&Method::PUT, ["v1", "admin", "settings"]) => settings::put(state, request).await,
        (&Method::POST, ["v1", "vaults", name, "join"]) => vaults::join(state, request, name).await,
        (&Method::POST, ["v1", "vaults", name, "leave"]) => {
            vaults::leave(state, request, name).await
        }
        (&Method::POST, ["v1", "vaults", name, "rename"]) => {
            vaults::rename(state, request, name).await
        }
        (&Method::GET, ["v1", "vaults", name, "settings"]) => {
            vaults::settings(state, request, name).await
        }
        (&Method::PATCH, ["v1", "vaults", name, "settings"]) => {
            vaults::update_settings(state, request, name).await
        }
        (&Method::GET, ["v1", "vaults", name, "users"]) => {
            vaults::users(state, request, name).await
        }
        (&Method::POST, ["v1", "vaults", name, "users"]) => {
            vaults::add_user(state, request, name).await
        }
        (&Method::DELETE, ["v1", "vaults", name, "users", email]) => {
            vaults::remove_user(state, request, name, email).await
        }
        (&Method::POST, ["v1", "vaults", name, "users", email, "role"]) => {
            vaults::set_user_role(state, request, name, email).await
        }
        (&Method::GET, ["v1", "vaults", name, "agents"]) => {
            vaults::agents(state, request, name).await
        }
        (&Method::POST, ["v1", "vaults", name, "agents"]) => {
            vaults::add_agent(state, request, name).await
        }
        (&Method::DELETE, ["v1", "vaults", name, "agents", agent]) => {
            vaults::remove_agent(state, request, name, agent).await
        }
        (&Method::POST, ["v1", "vaults", name, "agents", agent, "role"]) => {
            vaults::set_agent_role(state, request, name, agent).await
        }

        (&Method::GET, ["v1", "credentials"]) => credentials::list(state, request).await,
        (&Method::POST, ["v1", "credentials"]) => credentials::set(state, request).await,
        (&Method::DELETE, ["v1", "credentials"]) => credentials::delete(state, request).await,

        (&Method::GET, ["v1", "vaults", name, "services", "credential-usage"]) => {
            services::credential_usage(state, request, name).await
        }
        (&Method::GET, ["v1", "vaults", name, "services"]) => {
            services::list(state, request, name).await
        }
        (&Method::POST, ["v1", "vaults", name, "services"]) => {
            services::upsert(state, request, name).await
        }
        (&Method::PUT, ["v1", "vaults", name, "services"]) => {
            services::replace(state, request, name).await
        }
        (&Method::DELETE, ["v1", "vaults", name, "services"]) => {
            services::clear(state, request, name).await
        }
        (&Method::PATCH, ["v1", "vaults", name, "services", service]) => {
            services::patch(state, request, name, service).await
        }
        (&Method::DELETE, ["v1", "vaults", name, "services", service]) => {
            services::remove(state, request, name, service).await
        }

        (&Method::POST, ["v1", "sessions"]) => sessions::create(state, request).await,
        (&Method::GET, ["v1", "sessions"]) => sessions::list(state, request).await,
        (&Method::DELETE, ["v1", "sessions", id]) => sessions::revoke(state, request, id).await,

        (&Method::POST, ["v1", "agents", "invites"]) => agent_invites::create(state, request).await,
        (&Method::GET, ["v1", "agents", "invites"]) => agent_invites::list(state, request).await,
        (&Method::DELETE, ["v1", "agents", "invites", token_or_id]) => {
            agent_invites::revoke(state, request, token_or_id).await
        }
        (&Method::POST, ["v1", "agents"]) => agents::create(state, request).await,
        (&Method::GET, ["v1", "agents"]) => agents::list(state, request).await,
        (&Method::GET, ["v1", "agents", name]) => agents::get(state, request, name).await,
        (&Method::DELETE, ["v1", "agents", name]) => agents::revoke(state, request, name).await,
        (&Method::POST, ["v1", "agents", name, "delete"]) => {
            agents::delete(state, request, name).await
        }
        (&Method::POST, ["v1", "agents", name, "rotate"]) => {
            agents::rotate(state, request, name).await
        }
        (&Method::POST, ["v1", "agents", name, "rename"]) => {
            agents::rename(state, request, name).await
        }
        (&Method::POST, ["v1", "agents", name, "role"]) => {
            agents::set_role(state, request, name).await
        }

        (&Method::GET, ["v1", "users"]) => users::list(state, request).await,
        (&Method::POST, ["v1", "users", "invites"]) => users::invite(state, request).await,
        (&Method::GET, ["v1", "users", "invites"]) => users::invites(state, request).await,
        (&Method::DELETE, ["v1", "users", "invites", token]) => {
            users::revoke_invite(state, request, token).await
        }
        (&Method::POST, ["v1", "admin", "users", email, "role"]) => {
            users::set_role(state, request, email).await
        }
        (&Method::DELETE, ["v1", "admin", "users", email]) => {
            users::remove(state, request, email).await
        }

        (&Method::GET, ["v1", "vaults", name, "logs"]) => logs::list(state, request, name).await,
        (&Method::GET, ["v1", "vaults", name, "logs", "stats"]) => {
            logs::stats(state, request, name).await
        }
        (&Method::GET, ["v1", "vaults", name, "discovered-hosts"]) => {
            logs::discovered_hosts(state, request, name).await
        }

        (&Method::GET, ["v1", "plugins"]) => plugins::list(state, request).await,
        (&Method::POST, ["v1", "plugins", "test"]) => plugins::test(state, request).await,

        (&Method::POST, ["v1", "proposals"]) => proposals::create(state, request).await,
        (&Method::GET, ["v1", "proposals"]) => proposals::list(state, request).await,
        (&Method::GET, ["v1", "proposals", id]) => proposals::get(state, request, id).await,
        (&Method::GET, ["v1", "admin", "proposals"]) => proposals::admin_list(state, request).await,
        (&Method::GET, ["v1", "admin", "proposals", id]) => {
            proposals::admin_get(state, request, id).await
        }
        (&Method::POST, ["v1", "admin", "proposals", id, "approve"]) => {
            proposals::admin_approve(state, request, id).await
        }
        (&Method::POST, ["v1", "admin", "proposals", id, "reject"]) => {
            proposals::admin_reject(state, request, id).await
        }

        _ => Err(ApiError::not_found("no such endpoint")),
    }
}

/// `GET /v1/mitm/ca.pem`: the local CA agents must trust, and the transparent proxy's port.
fn transparent_ca(state: &ApiState) -> Result<Response<Full<Bytes>>, ApiError> {
    let Some(transparent) = &state.transparent else {
        return Err(ApiError::not_found(
            "The transparent proxy is off on this server (--mitm-port 0)",
        ));
    };
    let mut response = Response::new(Full::new(Bytes::from(transparent.ca_pem.clone())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-pem-file"),
    );
    headers.insert("x-mitm-port", http::HeaderValue::from(transparent.port));
    Ok(response)
}

/// `GET /v1/skills/cli`: the agent guide, as markdown.
fn skill(request: &Request) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(crate::guide::agent_guide(
        &request.base_url,
    ))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    response
}
