//! Why a request got no response from the upstream: [`UpstreamError`], its code for the
//! error body and the request log, and `classify`, which finds the failing step by the types
//! in hyper-util's error chain (the connector's own error, rustls), never by message text.
//! Messages name the host and the failing step, never a header or a body.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;

use super::connect::ConnectError;
use super::netguard;

/// Why a request did not get a response from the upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("{}", blocked_message(host, addr, reason))]
    Blocked {
        host: String,
        addr: IpAddr,
        reason: netguard::Blocked,
    },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("the TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    /// The egress proxy (`--egress-proxy`, shown as `http://host:port`, never with its
    /// credentials) could not be reached or would not open a tunnel to `host`.
    #[error("the egress proxy {proxy} could not open a tunnel to {host}: {reason}")]
    EgressProxy {
        proxy: String,
        host: String,
        reason: String,
    },
    #[error("timed out waiting for {host} ({phase})")]
    Timeout { host: String, phase: &'static str },
    #[error("the exchange with {host} failed: {reason}")]
    Protocol { host: String, reason: String },
    /// The request's own body failed while it was being sent (the agent went away, or a
    /// size limit the caller put on the body). `cause` is the body's error, for downcasting.
    #[error("the request body failed while it was sent to {host}: {cause}")]
    RequestBody {
        host: String,
        cause: Arc<dyn StdError + Send + Sync>,
    },
}

impl UpstreamError {
    /// The machine-readable code for the error body and the request log.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Blocked { .. } => "upstream_blocked",
            UpstreamError::Timeout { .. } => "upstream_timeout",
            UpstreamError::RequestBody { .. } => "request_body_error",
            UpstreamError::EgressProxy { .. } => "egress_proxy_error",
            UpstreamError::Resolve { .. }
            | UpstreamError::Connect { .. }
            | UpstreamError::Tls { .. }
            | UpstreamError::Protocol { .. } => "upstream_error",
        }
    }
}

fn blocked_message(host: &str, addr: &IpAddr, reason: &netguard::Blocked) -> String {
    let what = if host == addr.to_string() {
        format!("{addr} is {reason}")
    } else {
        format!("{host} resolves to {addr}, {reason}")
    };
    if reason.range == netguard::Range::Metadata {
        what
    } else {
        format!(
            "{what}; the proxy does not connect there unless AGENT_VAULT_NETWORK_ALLOWLIST holds it"
        )
    }
}

/// Find what failed by the types in the error's chain.
pub(super) fn classify(host: &str, error: &hyper_util::client::legacy::Error) -> UpstreamError {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(ConnectError(error)) = current.downcast_ref::<ConnectError>() {
            return error.clone();
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return UpstreamError::Tls {
                host: host.to_owned(),
                reason: tls_reason(tls),
            };
        }
        if current
            .downcast_ref::<rustls_pki_types::InvalidDnsNameError>()
            .is_some()
        {
            return UpstreamError::Tls {
                host: host.to_owned(),
                reason: "the host is not a valid TLS server name".to_owned(),
            };
        }
        // `io::Error::source` skips the error it wraps; rustls errors travel wrapped in one.
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        };
    }
    let reason = chain_text(error);
    if error.is_connect() {
        UpstreamError::Connect {
            host: host.to_owned(),
            reason,
        }
    } else {
        UpstreamError::Protocol {
            host: host.to_owned(),
            reason,
        }
    }
}

pub(super) fn tls_reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            format!("{error}; if the upstream uses a private CA, trust it with --upstream-ca")
        }
        _ => error.to_string(),
    }
}

/// The messages under hyper-util's own ("client error (Connect)"), joined.
fn chain_text(error: &hyper_util::client::legacy::Error) -> String {
    let mut parts = Vec::new();
    let mut next = error.source();
    while let Some(current) = next {
        parts.push(current.to_string());
        next = current.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}
