//! Egress through an outbound (corporate) HTTP proxy, `--egress-proxy`: every upstream
//! connection, of both ingresses (requests, WebSocket handshakes, blind tunnels), is a
//! `CONNECT` tunnel through it, and everything above the TCP stream (TLS verified against the
//! upstream's own name, HTTP/1.1 or HTTP/2) runs end to end through the tunnel as it would
//! directly. `--no-egress-proxy` ([`NoProxy`]) names the hosts that are reached directly.
//!
//! The network guard still decides: the connector resolves and checks the target first
//! (`connect.rs`) and asks the proxy to `CONNECT` to the *checked IP address*, not the name. A
//! name would be resolved again by the proxy, which sits inside the network the guard keeps
//! the agent out of, and could then get a private address that was never checked (DNS
//! rebinding). The proxy's own address is not checked: the operator named it.
//!
//! The proxy's credentials (`http://user:password@host:port`) are a secret: they only leave
//! as the `Proxy-Authorization` header of the `CONNECT`, marked sensitive; [`EgressProxy`]
//! shows itself as `http://host:port` in every message and in `Debug`. The `CONNECT`
//! exchange is hyper's HTTP/1.1 client; on a 2xx the TCP stream is taken back from it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use base64::Engine as _;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::UpstreamError;

/// The outbound proxy every upstream connection goes through, and the hosts it is bypassed
/// for.
#[derive(Clone)]
pub struct EgressProxy {
    /// Lower case, an IPv6 address without brackets.
    host: String,
    port: u16,
    /// `Basic base64(user:password)`, marked sensitive.
    authorization: Option<HeaderValue>,
    bypass: NoProxy,
}

/// An `--egress-proxy` URL that cannot be used. The message never repeats the URL: it may
/// hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid egress proxy URL: {0}")]
pub struct InvalidEgressProxy(&'static str);

impl EgressProxy {
    /// `http://host:port` or `http://user:password@host:port` (user and password
    /// percent-encoded where they hold `:`, `@`, `/`, `?` or `#`). The port is required;
    /// nothing may follow it but `/`.
    pub fn parse(url: &str) -> Result<EgressProxy, InvalidEgressProxy> {
        let invalid = InvalidEgressProxy;
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                "expected http://HOST:PORT or http://USER:PASSWORD@HOST:PORT",
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" => {}
            "https" => {
                return Err(invalid(
                    "https:// (TLS to the proxy itself) is not supported; use http://HOST:PORT \
                     (the upstream's TLS still runs end to end inside the CONNECT tunnel)",
                ));
            }
            _ => {
                return Err(invalid(
                    "only http:// proxies are supported (HTTP CONNECT); SOCKS is not",
                ));
            }
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(invalid(
                "nothing may follow HOST:PORT (no path, query or fragment)",
            ));
        }
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((userinfo, authority)) => (Some(userinfo), authority),
            None => (None, rest),
        };
        let (host, port) = split_host_port(authority)?;
        let authorization = userinfo.map(basic_authorization).transpose()?;
        Ok(EgressProxy {
            host,
            port,
            authorization,
            bypass: NoProxy::default(),
        })
    }

    /// The same proxy, bypassed for the hosts `bypass` names.
    pub fn bypassing(mut self, bypass: NoProxy) -> EgressProxy {
        self.bypass = bypass;
        self
    }

    /// Whether a connection to `host` (canonical: lower case, no brackets) goes through the
    /// proxy.
    pub fn applies_to(&self, host: &str) -> bool {
        !self.bypass.matches(host)
    }

    /// Whether the proxy sends credentials.
    pub fn has_credentials(&self) -> bool {
        self.authorization.is_some()
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// The error for a failure on the way through the proxy to `host`.
    pub(super) fn failed(&self, host: &str, reason: String) -> UpstreamError {
        UpstreamError::EgressProxy {
            proxy: self.to_string(),
            host: host.to_owned(),
            reason,
        }
    }

    /// Over `stream`, a connection to the proxy, ask for a tunnel to `target` (a checked
    /// address of `host`, which names the upstream in messages); the stream, now the tunnel.
    pub(super) async fn open_tunnel(
        &self,
        stream: TcpStream,
        host: &str,
        target: SocketAddr,
        deadline: Instant,
    ) -> Result<TcpStream, TunnelRefused> {
        let failed = |reason: String| TunnelRefused {
            error: self.failed(host, reason),
            try_another_address: false,
        };
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake::<
                _,
                Empty<bytes::Bytes>,
            >(TokioIo::new(stream))
            .await
            .map_err(|error| failed(error.to_string()))?;
            let connection = connection.without_shutdown();
            let authority = target.to_string();
            let mut request = Request::new(Empty::new());
            *request.method_mut() = Method::CONNECT;
            *request.uri_mut() = authority
                .parse()
                .map_err(|_| failed("the target is not a valid authority".to_owned()))?;
            let headers = request.headers_mut();
            headers.insert(
                header::HOST,
                HeaderValue::from_str(&authority)
                    .map_err(|_| failed("the target is not a valid authority".to_owned()))?,
            );
            if let Some(authorization) = &self.authorization {
                headers.insert(header::PROXY_AUTHORIZATION, authorization.clone());
            }
            // Drive the connection until the answer is in (after a 2xx the connection may
            // finish first, handing the stream back); a refusal's connection is dropped with
            // its body unread.
            let send = sender.send_request(request);
            tokio::pin!(connection, send);
            let mut ended = None;
            let response = loop {
                tokio::select! {
                    response = &mut send => break response,
                    result = &mut connection, if ended.is_none() => ended = Some(result),
                }
            };
            let response = match response {
                Ok(response) => response,
                // The connection's own error says more than the request's.
                Err(error) => {
                    let reason = match ended {
                        Some(Err(ended)) => ended.to_string(),
                        _ => error.to_string(),
                    };
                    return Err(failed(reason));
                }
            };
            let status = response.status();
            if !status.is_success() {
                // A 5xx: the proxy could not reach this address; another of the host's might.
                let try_another_address = status.is_server_error();
                return Err(TunnelRefused {
                    try_another_address,
                    ..failed(refusal(status))
                });
            }
            drop(sender);
            let parts = match ended {
                Some(result) => result,
                None => connection.await,
            }
            .map_err(|error| failed(error.to_string()))?;
            if !parts.read_buf.is_empty() {
                return Err(failed(
                    "the proxy sent data after its answer to CONNECT, before the upstream could \
                     speak"
                        .to_owned(),
                ));
            }
            Ok(parts.io.into_inner())
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(TunnelRefused {
                    error: UpstreamError::Timeout {
                        host: host.to_owned(),
                        phase: "the egress proxy's answer to CONNECT",
                    },
                    try_another_address: false,
                })
            })
    }
}

/// Why no tunnel opened, and whether asking for another address of the same host could
/// change that (not for credentials or a policy refusal).
#[derive(Debug)]
pub(super) struct TunnelRefused {
    pub(super) error: UpstreamError,
    pub(super) try_another_address: bool,
}

/// What an answer other than 2xx to `CONNECT` means, for the message.
fn refusal(status: StatusCode) -> String {
    let described = match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    };
    match status.as_u16() {
        401 | 407 => format!(
            "the proxy refused its credentials ({described}); check the user and password of \
             the egress proxy URL"
        ),
        403 => format!("the proxy does not allow this tunnel ({described})"),
        _ => format!("the proxy answered CONNECT with {described}"),
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), InvalidEgressProxy> {
    let invalid = InvalidEgressProxy;
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or(invalid(
            "an IPv6 address must be in brackets, like [::1]:3128",
        ))?;
        address
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| invalid("the host in brackets is not an IPv6 address"))?;
        let port = after.strip_prefix(':').ok_or(invalid(
            "give the proxy's port, like http://proxy.example.com:3128",
        ))?;
        (address, port)
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or(invalid(
            "give the proxy's port, like http://proxy.example.com:3128",
        ))?;
        if host.contains(':') {
            return Err(invalid(
                "an IPv6 address must be in brackets, like [::1]:3128",
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b == b':')
    {
        return Err(invalid(
            "the host must be a DNS name or an IP address (an IPv6 one in brackets)",
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(number) if number != 0 && port.bytes().all(|b| b.is_ascii_digit()) => number,
        _ => return Err(invalid("the port must be a number from 1 to 65535")),
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// `user:password`, percent-decoded, as a `Proxy-Authorization: Basic` value (RFC 7617).
fn basic_authorization(userinfo: &str) -> Result<HeaderValue, InvalidEgressProxy> {
    let invalid = InvalidEgressProxy;
    let (user, password) = userinfo.split_once(':').ok_or(invalid(
        "credentials must be USER:PASSWORD (percent-encode a ':' or '@' in them)",
    ))?;
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|text| zeroize::Zeroizing::new(text.into_owned()))
            .map_err(|_| invalid("the credentials are not UTF-8 once percent-decoded"))
    };
    let (user, password) = (decode(user)?, decode(password)?);
    if user.is_empty() {
        return Err(invalid("the user name is empty"));
    }
    if user.contains(':') {
        return Err(invalid("the user name may not contain ':' (RFC 7617)"));
    }
    if user.chars().chain(password.chars()).any(char::is_control) {
        return Err(invalid(
            "the credentials may not contain control characters",
        ));
    }
    let pair = zeroize::Zeroizing::new(format!("{}:{}", user.as_str(), password.as_str()));
    let value = zeroize::Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ));
    let mut value =
        HeaderValue::from_str(&value).map_err(|_| invalid("the credentials cannot be a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl fmt::Display for EgressProxy {
    /// `http://host:port`, never the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("url", &self.to_string())
            .field("credentials", &self.has_credentials())
            .field("bypass", &self.bypass)
            .finish()
    }
}

/// `--no-egress-proxy`, in `NO_PROXY` syntax: comma-separated entries, each `*` (every host),
/// a host name (it and its subdomains), `.suffix` or `*.suffix` (subdomains only), an IP
/// address or a CIDR (targets given as an IP address in that range; names are not resolved
/// to match them, as in curl and Go).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<NoProxyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    Everything,
    /// The name and its subdomains.
    Name(String),
    /// Subdomains only (without the leading dot).
    Suffix(String),
    Network(IpNet),
}

/// A `--no-egress-proxy` entry that is none of the forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid --no-egress-proxy entry {0:?}: expected *, a host name, .suffix, an IP address or \
     a CIDR"
)]
pub struct InvalidNoProxy(String);

impl FromStr for NoProxy {
    type Err = InvalidNoProxy;

    fn from_str(list: &str) -> Result<NoProxy, InvalidNoProxy> {
        let mut entries = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = || InvalidNoProxy(entry.to_owned());
            let unbracketed = entry
                .strip_prefix('[')
                .and_then(|inner| inner.strip_suffix(']'))
                .unwrap_or(entry);
            let parsed = if entry == "*" {
                NoProxyEntry::Everything
            } else if let Ok(network) = entry.parse::<IpNet>() {
                NoProxyEntry::Network(network.trunc())
            } else if let Ok(address) = unbracketed.parse::<IpAddr>() {
                NoProxyEntry::Network(IpNet::from(address))
            } else {
                let (suffix, name) =
                    match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
                        Some(name) => (true, name),
                        None => (false, entry),
                    };
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
                if !valid {
                    return Err(invalid());
                }
                if suffix {
                    NoProxyEntry::Suffix(name)
                } else {
                    NoProxyEntry::Name(name)
                }
            };
            entries.push(parsed);
        }
        Ok(NoProxy { entries })
    }
}

impl NoProxy {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `host` (canonical: lower case, an IPv6 address without brackets) is reached
    /// directly.
    pub fn matches(&self, host: &str) -> bool {
        let address = host.parse::<IpAddr>().ok();
        let host = host.trim_end_matches('.');
        let is_subdomain = |name: &str| {
            host.strip_suffix(name)
                .is_some_and(|rest| rest.ends_with('.'))
        };
        self.entries.iter().any(|entry| match entry {
            NoProxyEntry::Everything => true,
            NoProxyEntry::Network(network) => address.is_some_and(|a| network.contains(&a)),
            NoProxyEntry::Name(name) => address.is_none() && (host == name || is_subdomain(name)),
            NoProxyEntry::Suffix(name) => address.is_none() && is_subdomain(name),
        })
    }
}

impl fmt::Display for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, entry) in self.entries.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match entry {
                NoProxyEntry::Everything => f.write_str("*")?,
                NoProxyEntry::Name(name) => f.write_str(name)?,
                NoProxyEntry::Suffix(name) => write!(f, ".{name}")?,
                NoProxyEntry::Network(network) => write!(f, "{network}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_url_gives_host_port_and_credentials_and_never_shows_them() {
        let proxy = EgressProxy::parse("http://alice:s%40cret@Proxy.Example.com:3128/").unwrap();
        assert_eq!(proxy.to_string(), "http://proxy.example.com:3128");
        let authorization = proxy.authorization.as_ref().unwrap();
        assert!(authorization.is_sensitive());
        // base64("alice:s@cret")
        assert_eq!(authorization, "Basic YWxpY2U6c0BjcmV0");
        let debug = format!("{proxy:?}");
        assert!(
            !debug.contains("cret") && !debug.contains("YWxp"),
            "{debug}"
        );

        let proxy = EgressProxy::parse("http://[::1]:8080").unwrap();
        assert_eq!(proxy.to_string(), "http://[::1]:8080");
        assert!(!proxy.has_credentials());
    }

    #[test]
    fn an_unusable_proxy_url_is_refused_without_repeating_it() {
        for (url, expected) in [
            (
                "https://u:hunter2@proxy:3128",
                "invalid egress proxy URL: https:// (TLS to the proxy itself) is not supported; \
                 use http://HOST:PORT (the upstream's TLS still runs end to end inside the \
                 CONNECT tunnel)",
            ),
            (
                "socks5://u:hunter2@proxy:1080",
                "invalid egress proxy URL: only http:// proxies are supported (HTTP CONNECT); \
                 SOCKS is not",
            ),
            (
                "http://u:hunter2@proxy",
                "invalid egress proxy URL: give the proxy's port, like \
                 http://proxy.example.com:3128",
            ),
            (
                "proxy:3128",
                "invalid egress proxy URL: expected http://HOST:PORT or \
                 http://USER:PASSWORD@HOST:PORT",
            ),
            (
                "http://hunter2@proxy:3128",
                "invalid egress proxy URL: credentials must be USER:PASSWORD (percent-encode a \
                 ':' or '@' in them)",
            ),
            (
                "http://proxy:3128/hunter2",
                "invalid egress proxy URL: nothing may follow HOST:PORT (no path, query or \
                 fragment)",
            ),
            (
                "http://proxy:0",
                "invalid egress proxy URL: the port must be a number from 1 to 65535",
            ),
        ] {
            let error = EgressProxy::parse(url).unwrap_err().to_string();
            assert_eq!(error, expected, "{url}");
        }
    }

    #[test]
    fn no_proxy_entries_match_like_curl_and_go() {
        let list: NoProxy = "internal.example, .corp.example, 10.0.0.0/8, ::1, [fd00::1]"
            .parse()
            .unwrap();
        assert!(list.matches("internal.example"));
        assert!(list.matches("api.internal.example"));
        assert!(!list.matches("notinternal.example"));
        assert!(!list.matches("corp.example"), ".suffix: subdomains only");
        assert!(list.matches("git.corp.example"));
        assert!(list.matches("10.1.2.3"));
        assert!(!list.matches("11.1.2.3"));
        assert!(list.matches("::1"));
        assert!(list.matches("fd00::1"));
        assert!(!list.matches("api.example.com"));
        assert_eq!(
            list.to_string(),
            "internal.example,.corp.example,10.0.0.0/8,::1/128,fd00::1/128"
        );

        let everything: NoProxy = "*".parse().unwrap();
        assert!(everything.matches("api.example.com") && everything.matches("127.0.0.1"));
        assert!("".parse::<NoProxy>().unwrap().is_empty());
        assert_eq!(
            "api.example.com, a b"
                .parse::<NoProxy>()
                .unwrap_err()
                .to_string(),
            "invalid --no-egress-proxy entry \"a b\": expected *, a host name, .suffix, an IP \
             address or a CIDR"
        );
    }

    #[test]
    fn a_refusal_names_what_the_proxy_said() {
        assert_eq!(
            refusal(StatusCode::PROXY_AUTHENTICATION_REQUIRED),
            "the proxy refused its credentials (407 Proxy Authentication Required); check the \
             user and password of the egress proxy URL"
        );
        assert_eq!(
            refusal(StatusCode::BAD_GATEWAY),
            "the proxy answered CONNECT with 502 Bad Gateway"
        );
    }
}
