//! How the upstream client is set up: [`UpstreamSettings`] (trust anchors, `--resolve` pins,
//! the network allowlist, timeouts, a resolver of the embedder's own, the egress proxy),
//! reading a
//! `--upstream-ca` file, parsing a `--resolve` pin, and the errors of a setting the client
//! cannot be built with.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::EgressProxy;

/// How the proxy reaches upstreams.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Extra trust anchors (PEM files given with `--upstream-ca`), on top of the webpki roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// `--resolve HOST:PORT:ADDR` pins, like curl's: connect to ADDR for HOST:PORT without DNS.
    pub resolve: Vec<ResolvePin>,
    /// `AGENT_VAULT_NETWORK_ALLOWLIST`: ranges allowed even though private, loopback, ...
    pub allowlist: Vec<IpNet>,
    /// Resolving the host and opening the TCP connection, all addresses together.
    pub connect_timeout: Duration,
    /// Waiting for the upstream: for the TLS handshake, while it does not take the request
    /// body, and from the end of the request to the response head.
    pub response_header_timeout: Duration,
    /// How long a pooled connection may stay unused.
    pub idle_timeout: Duration,
    /// The addresses agent-vault itself listens on, which the proxy never connects to.
    pub own_listeners: Vec<SocketAddr>,
    /// Name lookups other than the system's (`None`: the system resolver).
    pub resolver: Option<Resolver>,
    /// `--egress-proxy`: every connection (but those its bypass list names) is a `CONNECT`
    /// tunnel through it.
    pub egress_proxy: Option<EgressProxy>,
}

/// A name lookup in place of the system resolver: `(host, port)` to its addresses. For
/// embedders with a resolver of their own, and for tests that need DNS to misbehave.
#[derive(Clone)]
pub struct Resolver(pub Arc<LookupFn>);

/// What a [`Resolver`] calls: `(host, port)` to the host's addresses.
pub type LookupFn = dyn Fn(&str, u16) -> std::io::Result<Vec<IpAddr>> + Send + Sync;

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            extra_roots: Vec::new(),
            resolve: Vec::new(),
            allowlist: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            response_header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            own_listeners: Vec::new(),
            resolver: None,
            egress_proxy: None,
        }
    }
}

/// A setting the upstream client cannot be built with.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("cannot read the CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error(
        "the CA file {} holds no certificate; it must be PEM with \
         -----BEGIN CERTIFICATE----- blocks",
        path.display()
    )]
    NoCertificates { path: PathBuf },
    #[error("certificate {number} of the CA file {} is not a usable CA: {reason}", path.display())]
    BadCaCertificate {
        path: PathBuf,
        number: usize,
        reason: String,
    },
    #[error("extra trust anchor {number} is not a usable CA certificate: {reason}")]
    BadRoot { number: usize, reason: String },
    #[error("setting up TLS failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Read the certificates of a PEM file given with `--upstream-ca` (one or several; other
/// PEM sections, such as keys, are skipped).
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamConfigError> {
    let unreadable = |error: rustls_pki_types::pem::Error| UpstreamConfigError::CaFile {
        path: path.to_owned(),
        reason: match error {
            rustls_pki_types::pem::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        },
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(unreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    if certificates.is_empty() {
        return Err(UpstreamConfigError::NoCertificates {
            path: path.to_owned(),
        });
    }
    for (index, certificate) in certificates.iter().enumerate() {
        RootCertStore::empty()
            .add(certificate.clone())
            .map_err(|error| UpstreamConfigError::BadCaCertificate {
                path: path.to_owned(),
                number: index + 1,
                reason: error.to_string(),
            })?;
    }
    Ok(certificates)
}

/// `--resolve HOST:PORT:ADDR`: connections to HOST:PORT go to ADDR, without DNS. The address
/// is still checked by [`netguard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvePin {
    /// Lower case.
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

/// A `--resolve` value that [`ResolvePin::from_str`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --resolve {input:?}: {reason}")]
pub struct InvalidResolvePin {
    input: String,
    reason: &'static str,
}

impl FromStr for ResolvePin {
    type Err = InvalidResolvePin;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidResolvePin {
            input: input.to_owned(),
            reason,
        };
        let (host, rest) = input.split_once(':').ok_or_else(|| {
            invalid("expected HOST:PORT:ADDR, like api.example.com:443:127.0.0.1")
        })?;
        let (port, addr) = rest.split_once(':').ok_or_else(|| {
            invalid("expected HOST:PORT:ADDR, like api.example.com:443:127.0.0.1")
        })?;
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(invalid(
                "the host must be a DNS name (letters, digits, '-', '_' and '.')",
            ));
        }
        let port = match port.parse::<u16>() {
            Ok(number) if number != 0 && port.bytes().all(|b| b.is_ascii_digit()) => number,
            _ => return Err(invalid("the port must be a number from 1 to 65535")),
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(addr);
        let addr = addr.parse::<IpAddr>().map_err(|_| {
            invalid("the address must be one IP address, an IPv6 one in brackets like [::1]")
        })?;
        Ok(ResolvePin {
            host: host.to_ascii_lowercase(),
            port,
            addr,
        })
    }
}

impl fmt::Display for ResolvePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(addr) => write!(f, "{}:{}:{addr}", self.host, self.port),
            IpAddr::V6(addr) => write!(f, "{}:{}:[{addr}]", self.host, self.port),
        }
    }
}
