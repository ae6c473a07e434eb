//! Every error the proxy itself produces, tagged with the side that failed, and the one place
//! it becomes a response: `{"error": code, "message": ...}` with the status, and the header
//! `X-Agent-Vault-Proxy-Error: true` so an agent can tell the proxy's errors from the API's.
//!
//! Messages name hosts, services, vaults, plugins and credential *keys*; never a credential
//! value, a header value or a body.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::fill::ApplyError;
use crate::path::PathError;
use crate::plugin::registry::LookupError;
use crate::plugin::{CallError, ConfigError, PluginError};
use crate::ratelimit::Limited;
use crate::store::StoreError;
use crate::upstream::{ProxyBody, UpstreamError};
use crate::vault::placeholders::PlaceholderError;

/// Who is at fault, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Plugin,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("No owner account exists. Run 'agent-vault auth register' to create one.")]
    NotInitialized,
    #[error("{0}")]
    Unauthorized(String),
    /// The forward proxy's own authentication (`Proxy-Authorization`) is missing or wrong.
    #[error("{0}")]
    ProxyAuthRequired(String),
    /// A request inside a tunnel names another host than the tunnel's.
    #[error("{0}")]
    Misdirected(String),
    #[error("{0}")]
    BadRequest(String),
    /// A path whose meaning depends on who decodes it (`crate::path`).
    #[error("{0}")]
    InvalidPath(PathError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("No service matching host \"{host}\" in vault \"{vault}\"")]
    NoService {
        host: String,
        vault: String,
        base_url: String,
    },
    #[error("Service \"{service}\" is disabled in vault \"{vault}\"")]
    ServiceDisabled { service: String, vault: String },
    #[error("{0}")]
    PathNotAllowed(String),
    /// A method the proxy does not forward (TRACE, CONNECT inside a tunnel, or one outside
    /// the standard set that no allow rule names).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A credential would leave over plain HTTP and the service does not allow that.
    #[error(
        "Service \"{service}\" attaches a credential, which agent-vault sends only over TLS: \
         use https://{host}, or, for a lab upstream that has no TLS, set \
         \"allow_plaintext\": true on the service"
    )]
    PlaintextRefused { service: String, host: String },
    /// The service's plugin refused the request.
    #[error("{reason}")]
    Denied { status: u16, reason: String },
    #[error("Too many requests for this token and vault; retry later")]
    RateLimited(Limited),
    #[error("Credential \"{key}\" used by service \"{service}\" is not in vault \"{vault}\"")]
    CredentialNotFound {
        key: String,
        service: String,
        vault: String,
    },
    /// A sealed credential did not open: moved from another row, or damaged. The integrity
    /// of the store is in question, so it is logged as an error.
    #[error(
        "Credential \"{key}\" used by service \"{service}\" cannot be decrypted (it was not \
         sealed for this vault and key, or the data is damaged); nothing was sent"
    )]
    CredentialUnreadable {
        key: String,
        service: String,
        vault: String,
    },
    /// The service's plugin is not loaded, or not at the version the service pins.
    #[error("{0}")]
    PluginUnavailable(LookupError),
    /// The service's configuration does not work with its plugin.
    #[error("{0}")]
    PluginConfig(ConfigError),
    /// The service's plugin did not decide: its call failed or timed out, it reported a
    /// failure, its decision was invalid, or it already has its limit of slow calls running.
    #[error("{0}")]
    Plugin(PluginError),
    /// The plugin's decision could not be written into the request (`crate::fill`).
    #[error("{}", fill_message(plugin, service, error))]
    Fill {
        plugin: String,
        service: String,
        error: ApplyError,
    },
    /// A placeholder in the body could not be replaced (the value does not fit where it goes).
    #[error("{0}")]
    Placeholder(PlaceholderError),
    /// A compressed response of a service that redacts echoes and refuses those.
    #[error(
        "The upstream of service \"{service}\" sent a compressed response, which agent-vault \
         cannot check for echoed credentials; the service refuses those (its \
         compressed_responses setting is \"refuse\")"
    )]
    CompressedResponse { service: String },
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error("The request body is larger than {limit} bytes")]
    RequestTooLarge { limit: u64 },
    #[error("The upstream response is larger than {limit} bytes")]
    ResponseTooLarge { limit: u64 },
    /// The store could not be read.
    #[error("{0}")]
    Internal(StoreError),
    /// The request log cannot be written; nothing is forwarded that it could not record.
    #[error(
        "agent-vault cannot write its request log right now, so it forwards no requests; \
         retry later (the server's own log says why)"
    )]
    LogUnavailable,
}

/// What the agent reads when the store cannot be reached (PostgreSQL down or unreachable,
/// SQLite locked past its busy timeout): the proxy forwards nothing it could not check.
const DATABASE_UNAVAILABLE: &str = "agent-vault cannot reach its database right now, so it \
    forwards no requests; retry later (the server's own log says why)";

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::Fill {
                error: ApplyError::Placeholder(_),
                ..
            }
            | ProxyError::Placeholder(_) => Side::Internal,
            ProxyError::PluginUnavailable(_)
            | ProxyError::PluginConfig(_)
            | ProxyError::Plugin(_)
            | ProxyError::Fill { .. } => Side::Plugin,
            ProxyError::Upstream(_)
            | ProxyError::ResponseTooLarge { .. }
            | ProxyError::CompressedResponse { .. } => Side::Upstream,
            ProxyError::Internal(_)
            | ProxyError::CredentialNotFound { .. }
            | ProxyError::CredentialUnreadable { .. }
            | ProxyError::LogUnavailable => Side::Internal,
            _ => Side::Client,
        }
    }

    /// The machine-readable code of the body (and of the request log).
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NotInitialized => "not_initialized",
            ProxyError::Unauthorized(_) => "unauthorized",
            ProxyError::ProxyAuthRequired(_) => "proxy_auth_required",
            ProxyError::Misdirected(_) => "misdirected_request",
            ProxyError::BadRequest(_) | ProxyError::InvalidPath(_) => "bad_request",
            ProxyError::NotFound(_) => "not_found",
            ProxyError::Forbidden(_) | ProxyError::NoService { .. } => "forbidden",
            ProxyError::ServiceDisabled { .. } => "service_disabled",
            ProxyError::PathNotAllowed(_) | ProxyError::Denied { .. } => "path_not_allowed",
            ProxyError::MethodNotAllowed(_) => "method_not_allowed",
            ProxyError::PlaintextRefused { .. } => "plaintext_refused",
            ProxyError::RateLimited(limited) => limited.code(),
            ProxyError::CredentialNotFound { .. } => "credential_not_found",
            ProxyError::CredentialUnreadable { .. } => "credential_unreadable",
            ProxyError::Plugin(error) if is_busy(error) => "plugin_busy",
            ProxyError::PluginUnavailable(_)
            | ProxyError::PluginConfig(_)
            | ProxyError::Plugin(_) => "plugin_error",
            ProxyError::Fill {
                error: ApplyError::Placeholder(_),
                ..
            }
            | ProxyError::Placeholder(_) => "substitution_error",
            ProxyError::Fill { error, .. } if error.is_unrenderable_credential() => {
                "credential_unrenderable"
            }
            ProxyError::Fill { .. } => "plugin_error",
            ProxyError::CompressedResponse { .. } => "compressed_response",
            ProxyError::Upstream(error) => error.code(),
            ProxyError::RequestTooLarge { .. } => "request_too_large",
            ProxyError::ResponseTooLarge { .. } => "response_too_large",
            ProxyError::Internal(StoreError::Unavailable(_)) => "database_unavailable",
            ProxyError::Internal(_) => "internal",
            ProxyError::LogUnavailable => "request_log_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotInitialized => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::ProxyAuthRequired(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ProxyError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::BadRequest(_) | ProxyError::InvalidPath(_) => StatusCode::BAD_REQUEST,
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::Forbidden(_)
            | ProxyError::NoService { .. }
            | ProxyError::ServiceDisabled { .. }
            | ProxyError::PathNotAllowed(_)
            | ProxyError::PlaintextRefused { .. } => StatusCode::FORBIDDEN,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Denied { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN)
            }
            ProxyError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Plugin(error) if is_busy(error) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::CredentialNotFound { .. }
            | ProxyError::CredentialUnreadable { .. }
            | ProxyError::PluginUnavailable(_)
            | ProxyError::PluginConfig(_)
            | ProxyError::Plugin(_)
            | ProxyError::Fill { .. }
            | ProxyError::Placeholder(_)
            | ProxyError::CompressedResponse { .. }
            | ProxyError::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Upstream(error) => match error.code() {
                "upstream_timeout" => StatusCode::GATEWAY_TIMEOUT,
                "upstream_blocked" => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_GATEWAY,
            },
            ProxyError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Internal(StoreError::Unavailable(_)) | ProxyError::LogUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> Value {
        let message = match self {
            // Why is for the server's log (which names the database, its password hidden),
            // not for the agent.
            ProxyError::Internal(StoreError::Unavailable(_)) => DATABASE_UNAVAILABLE.to_owned(),
            _ => self.to_string(),
        };
        let mut body = json!({ "error": self.code(), "message": message });
        if let ProxyError::NoService { host, base_url, .. } = self {
            body["proposal_hint"] = json!({
                "host": host,
                "endpoint": "POST /v1/proposals",
                "supported_auth_types": crate::services::AUTH_TYPES,
            });
            body["help"] = json!(format!(
                "This request was intercepted by agent-vault. To see available services, GET \
                 {base_url}/discover. For usage instructions including how to create a proposal, \
                 GET {base_url}/v1/skills/cli"
            ));
        }
        body
    }

    /// The one place a proxy error becomes a response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        // The request log's writer says itself, once, why it cannot write. A plugin missing
        // here, or at another version than the service pins, is the operator's to fix too:
        // with several servers on one database, this server's plugin directory differs from
        // the one the service was pinned on.
        let operators = match self {
            ProxyError::LogUnavailable => false,
            ProxyError::PluginUnavailable(_) => true,
            _ => self.side() == Side::Internal,
        };
        if operators {
            tracing::error!(code = self.code(), "proxy error: {self}");
        }
        let retry_after = match &self {
            ProxyError::RateLimited(
                Limited::Rate { retry_after } | Limited::Concurrency { retry_after },
            ) => Some(*retry_after),
            ProxyError::LogUnavailable => Some(Duration::from_secs(1)),
            // As the API says (api/errors.rs).
            ProxyError::Internal(StoreError::Unavailable(_)) => Some(Duration::from_secs(5)),
            ProxyError::Plugin(error) if is_busy(error) => Some(Duration::from_secs(1)),
            _ => None,
        };
        let bytes = Bytes::from(self.body().to_string());
        let mut response = Response::new(
            Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "x-agent-vault-proxy-error",
            HeaderValue::from_static("true"),
        );
        if let Some(retry_after) = retry_after {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(whole_seconds(retry_after)),
            );
        }
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            headers.insert(
                http::header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"agent-vault\""),
            );
        }
        response
    }
}

/// Whether the plugin already had its limit of slow calls running: the agent may retry
/// shortly.
fn is_busy(error: &PluginError) -> bool {
    matches!(
        error,
        PluginError::Call {
            error: CallError::Busy { .. },
            ..
        }
    )
}

/// What the agent reads when a plugin's decision could not be written: a placeholder's own
/// error; for a credential that did not fit, no more than that (the agent learns nothing of
/// the secret; the server log at debug level says which check failed); else the cause.
fn fill_message(plugin: &str, service: &str, error: &ApplyError) -> String {
    match error {
        ApplyError::Placeholder(error) => error.to_string(),
        error if error.is_unrenderable_credential() => format!(
            "plugin {plugin} put a credential of service \"{service}\" where it cannot be \
             written (the server's log at debug level says which check failed)"
        ),
        error => format!("plugin {plugin}: {error}"),
    }
}

/// A `Retry-After` value: whole seconds, rounded up, at least one.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil().max(1.0) as u64
}
