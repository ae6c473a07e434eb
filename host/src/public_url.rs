//! Where clients find the control plane: the base path it serves under (`--base-path`, env
//! `AGENT_VAULT_BASE_PATH`) and the public address every link and redirect it hands out
//! carries (agent instructions, approval and invite links, `av_addr`).
//!
//! Behind a reverse proxy that serves agent-vault at `https://tools.example.com/agent-vault/`,
//! the server runs with `--base-path /agent-vault`: [`BasePath::enter`] takes the prefix off
//! each request before anything routes it, so the routes themselves never see it, and a
//! request outside the prefix reaches no route at all. The comparison is on the raw path, byte
//! for byte: `/agent-vaultX/...`, `//agent-vault/...` and `/agent-vault%2F...` are outside,
//! and what is left after the prefix is routed exactly as a request without one would be
//! (dot segments and encoded slashes included: they match no route, and the proxy's own path
//! rules refuse them).
//!
//! The address in links is, first, the one the operator configured (`AGENT_VAULT_ADDR`);
//! else, for a request from a reverse proxy in `--trusted-proxies`, the scheme and host it
//! names in `X-Forwarded-Proto` and `X-Forwarded-Host`; else the address the server listens
//! on. The base path is part of each. From any other peer those headers are ignored: a
//! client could otherwise have its approval link point at a host of its choosing.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Uri};

use crate::client_addr::TrustedProxies;

/// The path prefix everything is served under: empty, or `/` and segments, no trailing `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasePath(String);

/// Why a `--base-path` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BasePathError {
    #[error("{0:?} must start with /, like /agent-vault")]
    NoLeadingSlash(String),
    #[error("{0:?} has an empty segment (//)")]
    EmptySegment(String),
    #[error("{0:?} has a . or .. segment")]
    DotSegment(String),
    #[error(
        "{path:?} has {found:?}: use letters, digits, -, ., _ and ~ between the slashes \
         (no query, fragment or percent-encoding)"
    )]
    Character { path: String, found: char },
}

impl BasePath {
    /// `--base-path`: `""` and `/` are none; one trailing `/` is dropped.
    pub fn parse(text: &str) -> Result<BasePath, BasePathError> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "/" {
            return Ok(BasePath::default());
        }
        let Some(rest) = trimmed.strip_prefix('/') else {
            return Err(BasePathError::NoLeadingSlash(trimmed.to_owned()));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        for segment in rest.split('/') {
            if segment.is_empty() {
                return Err(BasePathError::EmptySegment(trimmed.to_owned()));
            }
            if segment == "." || segment == ".." {
                return Err(BasePathError::DotSegment(trimmed.to_owned()));
            }
            if let Some(found) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
            {
                return Err(BasePathError::Character {
                    path: trimmed.to_owned(),
                    found,
                });
            }
        }
        Ok(BasePath(format!("/{rest}")))
    }

    /// `/agent-vault`, or `""` without a base path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path a request for `path` names inside the base path (`/` for the prefix
    /// itself), or `None` if it is outside.
    pub fn inside<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.0.as_str())?;
        if rest.is_empty() {
            Some("/")
        } else if rest.starts_with('/') {
            Some(rest)
        } else {
            None
        }
    }

    /// Take the prefix off `request`'s target, query kept; `false` (and the request as it
    /// was) if the target is outside the base path.
    pub fn enter<B>(&self, request: &mut http::Request<B>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let uri = request.uri();
        let Some(rest) = self.inside(uri.path()) else {
            return false;
        };
        let target = match uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let mut parts = uri.clone().into_parts();
        let Ok(target) = target.parse() else {
            return false;
        };
        parts.path_and_query = Some(target);
        match Uri::from_parts(parts) {
            Ok(uri) => {
                *request.uri_mut() = uri;
                true
            }
            Err(_) => false,
        }
    }
}

/// The address links carry, base path included, and how to find it for one request.
#[derive(Debug, Clone)]
pub struct PublicAddress {
    /// The configured address, else the listening one; no trailing `/`.
    fixed: String,
    /// The operator set `fixed` (`AGENT_VAULT_ADDR`): no header overrides it.
    configured: bool,
    base_path: BasePath,
    trusted_proxies: TrustedProxies,
}

/// The TCP peer of a proxy request that came in on the control plane (a request
/// extension): the proxy makes a link only for a refusal, and only then works out the
/// address for this peer.
#[derive(Debug, Clone, Copy)]
pub struct ControlPlanePeer(pub IpAddr);

impl PublicAddress {
    /// `configured` is `AGENT_VAULT_ADDR` as given: with a path it is used as it is, without
    /// one the base path is added, as it is to the `listening` address.
    pub fn new(
        configured: Option<String>,
        listening: SocketAddr,
        base_path: BasePath,
        trusted_proxies: TrustedProxies,
    ) -> PublicAddress {
        let configured = configured
            .map(|address| address.trim().trim_end_matches('/').to_owned())
            .filter(|address| !address.is_empty());
        let fixed = match &configured {
            Some(address) if has_path(address) => address.clone(),
            Some(address) => format!("{address}{}", base_path.as_str()),
            None => format!("http://{listening}{}", base_path.as_str()),
        };
        PublicAddress {
            fixed,
            configured: configured.is_some(),
            base_path,
            trusted_proxies,
        }
    }

    /// The address for links made without a request to go by (the transparent proxy's).
    pub fn fixed(&self) -> &str {
        &self.fixed
    }

    pub fn base_path(&self) -> &BasePath {
        &self.base_path
    }

    /// The address for links in the answer to a request from the TCP peer `peer`.
    pub fn for_request(&self, peer: IpAddr, headers: &HeaderMap) -> String {
        if self.configured || !self.trusted_proxies.trusts(peer) {
            return self.fixed.clone();
        }
        match forwarded_origin(headers) {
            Some(origin) => format!("{origin}{}", self.base_path.as_str()),
            None => self.fixed.clone(),
        }
    }
}

/// Whether `address` names a path after its authority.
fn has_path(address: &str) -> bool {
    address
        .parse::<Uri>()
        .is_ok_and(|uri| !matches!(uri.path(), "" | "/"))
}

/// `scheme://host` from `X-Forwarded-Host` (and `X-Forwarded-Proto`, `http` if absent):
/// the last entry of each, the one the proxy next to the server wrote. `None` without a host
/// that is a plain `host[:port]`.
fn forwarded_origin(headers: &HeaderMap) -> Option<String> {
    let host = last_entry(headers, "x-forwarded-host")?;
    let authority: http::uri::Authority = host.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let scheme = match last_entry(headers, "x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Some(format!(
        "{scheme}://{}",
        authority.as_str().to_ascii_lowercase()
    ))
}

/// The last comma-separated entry of the header `name` over all its lines, trimmed.
fn last_entry(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let entry = value.rsplit(',').next()?.trim();
    (!entry.is_empty()).then(|| entry.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str) -> BasePath {
        BasePath::parse(text).unwrap()
    }

    #[test]
    fn a_base_path_is_normalised_or_refused_with_the_reason() {
        assert_eq!(base("/agent-vault/").as_str(), "/agent-vault");
        assert_eq!(base(" /a/b.c_d~e ").as_str(), "/a/b.c_d~e");
        assert_eq!(base("").as_str(), "");
        assert_eq!(base("/").as_str(), "");
        for (text, message) in [
            (
                "agent-vault",
                "\"agent-vault\" must start with /, like /agent-vault",
            ),
            ("/a//b", "\"/a//b\" has an empty segment (//)"),
            ("/a/../b", "\"/a/../b\" has a . or .. segment"),
            ("/.", "\"/.\" has a . or .. segment"),
            (
                "/a?x=1",
                "\"/a?x=1\" has '?': use letters, digits, -, ., _ and ~ between the slashes \
                 (no query, fragment or percent-encoding)",
            ),
            (
                "/a%2Fb",
                "\"/a%2Fb\" has '%': use letters, digits, -, ., _ and ~ between the slashes \
                 (no query, fragment or percent-encoding)",
            ),
        ] {
            assert_eq!(BasePath::parse(text).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn only_paths_under_the_prefix_are_inside_it() {
        let prefix = base("/agent-vault");
        assert_eq!(prefix.inside("/agent-vault/v1/status"), Some("/v1/status"));
        assert_eq!(prefix.inside("/agent-vault"), Some("/"));
        assert_eq!(prefix.inside("/agent-vault/"), Some("/"));
        assert_eq!(
            prefix.inside("/agent-vault/../v1/status"),
            Some("/../v1/status")
        );
        for outside in [
            "/agent-vaultX/v1/status",
            "//agent-vault/v1/status",
            "/agent-vault%2Fv1/status",
            "/Agent-Vault/v1/status",
            "/v1/status",
            "/",
        ] {
            assert_eq!(prefix.inside(outside), None, "{outside}");
        }
        assert_eq!(BasePath::default().inside("/v1/status"), Some("/v1/status"));
    }

    #[test]
    fn entering_keeps_the_query_and_an_absolute_target_s_authority() {
        let prefix = base("/agent-vault");
        let mut request = http::Request::get("/agent-vault/approve/3?token=av_appr_1")
            .body(())
            .unwrap();
        assert!(prefix.enter(&mut request));
        assert_eq!(request.uri(), "/approve/3?token=av_appr_1");
        let mut absolute = http::Request::get("http://vault.internal/agent-vault/health")
            .body(())
            .unwrap();
        assert!(prefix.enter(&mut absolute));
        assert_eq!(absolute.uri(), "http://vault.internal/health");
        let mut outside = http::Request::get("/health").body(()).unwrap();
        assert!(!prefix.enter(&mut outside));
        assert_eq!(outside.uri(), "/health");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_trusted_proxy_names_the_public_origin_and_no_one_else_does() {
        let listening: SocketAddr = "127.0.0.1:14321".parse().unwrap();
        let trusted = crate::client_addr::parse("10.0.0.0/8").unwrap();
        let address = PublicAddress::new(None, listening, base("/agent-vault"), trusted);
        assert_eq!(address.fixed(), "http://127.0.0.1:14321/agent-vault");
        let forwarded = headers(&[
            ("x-forwarded-host", "Tools.Example.com"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            address.for_request(ip("10.0.0.5"), &forwarded),
            "https://tools.example.com/agent-vault"
        );
        // Not a trusted proxy: the headers say nothing.
        assert_eq!(
            address.for_request(ip("203.0.113.7"), &forwarded),
            "http://127.0.0.1:14321/agent-vault"
        );
        // The last entry is the one the nearest proxy wrote; no proto is http.
        assert_eq!(
            address.for_request(
                ip("10.0.0.5"),
                &headers(&[("x-forwarded-host", "evil.example, tools.example.com:8443")])
            ),
            "http://tools.example.com:8443/agent-vault"
        );
        // Not a host: ignored.
        for bad in ["evil.example/path", "user@evil.example", ""] {
            assert_eq!(
                address.for_request(ip("10.0.0.5"), &headers(&[("x-forwarded-host", bad)])),
                "http://127.0.0.1:14321/agent-vault",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_configured_address_wins_and_gets_the_base_path_unless_it_has_a_path() {
        let listening: SocketAddr = "127.0.0.1:14321".parse().unwrap();
        let trusted = crate::client_addr::parse("10.0.0.0/8").unwrap();
        let plain = PublicAddress::new(
            Some("https://vault.example.com/".into()),
            listening,
            base("/agent-vault"),
            trusted.clone(),
        );
        assert_eq!(plain.fixed(), "https://vault.example.com/agent-vault");
        let forwarded = headers(&[("x-forwarded-host", "other.example")]);
        assert_eq!(
            plain.for_request(ip("10.0.0.5"), &forwarded),
            "https://vault.example.com/agent-vault"
        );
        let with_path = PublicAddress::new(
            Some("https://example.com/tools/vault".into()),
            listening,
            base("/agent-vault"),
            trusted,
        );
        assert_eq!(with_path.fixed(), "https://example.com/tools/vault");
    }
}
