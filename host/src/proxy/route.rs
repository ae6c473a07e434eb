//! Route: which of a vault's services a request is for, and whether that service lets it
//! through.
//!
//! Matching follows Agent Vault: the exact host beats a `*.` wildcard (one label, never the
//! apex), a service with the request's port beats one without a port, the longest literal path
//! prefix (the characters before the first `*`) wins, then declaration order. Paths are
//! matched in a canonical form — percent-decoded once, `\` read as `/`, runs of `/` collapsed —
//! and a request path with `.` or `..` segments (however encoded) is refused outright, so no
//! spelling of a path can reach what a rule excludes.

use crate::services::{AllowRule, Service};

/// Why a request path cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must not contain \".\" or \"..\" segments (in any encoding)")]
    DotSegment,
    #[error("the path has a \"%\" that is not followed by two hex digits")]
    BadEncoding,
}

/// The form of a request path that services and allow rules are matched against.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                // Two hex digits and nothing else: `from_str_radix` alone would also take a
                // sign, reading `%+c` as a control character where the upstream sees text.
                let hex = bytes
                    .get(index + 1..index + 3)
                    .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                    .ok_or(PathError::BadEncoding)?;
                let text = std::str::from_utf8(hex).map_err(|_| PathError::BadEncoding)?;
                let value = u8::from_str_radix(text, 16).map_err(|_| PathError::BadEncoding)?;
                decoded.push(value);
                index += 3;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut canonical = String::with_capacity(decoded.len() + 1);
    for segment in decoded.split('/') {
        match segment {
            "" => {}
            "." | ".." => return Err(PathError::DotSegment),
            segment => {
                canonical.push('/');
                canonical.push_str(segment);
            }
        }
    }
    if canonical.is_empty() || (decoded.ends_with('/') && !canonical.ends_with('/')) {
        canonical.push('/');
    }
    Ok(canonical)
}

/// `*` matches any run of characters, `/` included; everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// Whether `host` (lower case) is covered by a service host: equal, or one extra label under a
/// `*.` wildcard.
fn host_tier(service_host: &str, host: &str) -> Option<u8> {
    if service_host == host {
        return Some(2);
    }
    let domain = service_host.strip_prefix("*.")?;
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then_some(1)
}

/// The service for a request to `host:port` with canonical path `path`, if any.
pub fn match_service<'a>(
    services: &'a [Service],
    host: &str,
    port: u16,
    path: &str,
) -> Option<&'a Service> {
    let mut best: Option<(&Service, (u8, u8, usize))> = None;
    for service in services {
        let Some(host_rank) = host_tier(&service.host, host) else {
            continue;
        };
        let port_rank = match service.port {
            Some(wanted) if wanted == port => 1,
            Some(_) => continue,
            None => 0,
        };
        let prefix_len = if service.path.is_empty() {
            0
        } else if glob_matches(&service.path, path) {
            service.path.find('*').unwrap_or(service.path.len())
        } else {
            continue;
        };
        let rank = (host_rank, port_rank, prefix_len);
        // Strictly better only: on a tie the earlier declaration stays.
        if best.is_none_or(|(_, best_rank)| rank > best_rank) {
            best = Some((service, rank));
        }
    }
    best.map(|(service, _)| service)
}

/// Whether any service covers `host:port`, on some path: the transparent proxy intercepts
/// such a host and tunnels any other one blind.
pub fn covers_host(services: &[Service], host: &str, port: u16) -> bool {
    services.iter().any(|service| {
        host_tier(&service.host, host).is_some() && service.port.is_none_or(|wanted| wanted == port)
    })
}

/// Whether the service's allow rules let `method` on `path` through (no rules: anything).
pub fn allowed(rules: &[AllowRule], method: &str, path: &str) -> bool {
    rules.is_empty()
        || rules.iter().any(|rule| {
            let method_ok =
                rule.methods.is_empty() || rule.methods.iter().any(|m| m == "*" || m == method);
            let path_ok =
                rule.paths.is_empty() || rule.paths.iter().any(|glob| glob_matches(glob, path));
            method_ok && path_ok
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{Rules, ServiceSpec, validate};
    use serde_json::json;

    fn services(value: serde_json::Value) -> Vec<Service> {
        let specs: Vec<ServiceSpec> = serde_json::from_value(value).unwrap();
        validate(
            &specs,
            Rules {
                dev_mode: true,
                plugins: None,
            },
        )
        .unwrap()
    }

    fn bearer(name: &str, host: &str) -> serde_json::Value {
        json!({ "name": name, "host": host, "auth": { "type": "bearer", "token": "T" } })
    }

    fn routed<'a>(list: &'a [Service], host: &str, port: u16, path: &str) -> Option<&'a str> {
        match_service(list, host, port, &canonical_path(path).unwrap()).map(|s| s.name.as_str())
    }

    #[test]
    fn the_exact_host_beats_a_wildcard_which_covers_one_label() {
        let list = services(json!([
            bearer("gh-wild", "*.github.com/repos/*"),
            bearer("gh-api", "api.github.com")
        ]));
        assert_eq!(
            routed(&list, "api.github.com", 443, "/repos/x"),
            Some("gh-api")
        );
        assert_eq!(
            routed(&list, "uploads.github.com", 443, "/repos/x"),
            Some("gh-wild")
        );
        assert_eq!(routed(&list, "github.com", 443, "/"), None);
        assert_eq!(routed(&list, "a.b.github.com", 443, "/repos/x"), None);
    }

    #[test]
    fn the_longest_literal_prefix_wins() {
        let list = services(json!([
            bearer("slack-bot", "slack.com/api/*"),
            bearer("slack-conn", "slack.com/api/apps.connections.*")
        ]));
        assert_eq!(
            routed(&list, "slack.com", 443, "/api/apps.connections.open"),
            Some("slack-conn")
        );
        assert_eq!(
            routed(&list, "slack.com", 443, "/api/chat.postMessage"),
            Some("slack-bot")
        );
        assert_eq!(routed(&list, "slack.com", 443, "/oauth/v2/authorize"), None);
    }

    #[test]
    fn a_port_specific_service_beats_a_portless_one() {
        let list = services(json!([
            bearer("svc-any", "internal.corp.com"),
            bearer("svc-3000", "internal.corp.com:3000")
        ]));
        assert_eq!(
            routed(&list, "internal.corp.com", 3000, "/"),
            Some("svc-3000")
        );
        assert_eq!(
            routed(&list, "internal.corp.com", 4000, "/"),
            Some("svc-any")
        );
    }

    #[test]
    fn declaration_order_breaks_ties() {
        let list = services(json!([
            bearer("first", "api.example.com"),
            bearer("second", "api.example.com")
        ]));
        assert_eq!(routed(&list, "api.example.com", 443, "/"), Some("first"));
    }

    #[test]
    fn a_path_without_star_must_match_exactly() {
        let list = services(json!([bearer("meta", "api.github.com/meta")]));
        assert_eq!(routed(&list, "api.github.com", 443, "/meta"), Some("meta"));
        assert_eq!(routed(&list, "api.github.com", 443, "/meta/x"), None);
    }

    #[test]
    fn canonical_paths_collapse_slashes_decode_once_and_refuse_dot_segments() {
        assert_eq!(canonical_path("/a//b///c/").unwrap(), "/a/b/c/");
        assert_eq!(canonical_path("").unwrap(), "/");
        assert_eq!(canonical_path("/repos%2Fx").unwrap(), "/repos/x");
        assert_eq!(canonical_path("/a%5Cb").unwrap(), "/a/b");
        assert_eq!(
            canonical_path("/%252e%252e/x").unwrap(),
            "/%2e%2e/x",
            "decoded once, like the upstream"
        );
        for traversal in [
            "/a/../admin",
            "/a/./b",
            "/a/%2e%2e/admin",
            "/a/%2E%2e/admin",
            "/a/.%2E/b",
            "/a%2f..%2fadmin",
            "/a\\..\\admin",
            "/..",
        ] {
            assert_eq!(
                canonical_path(traversal),
                Err(PathError::DotSegment),
                "{traversal}"
            );
        }
        assert_eq!(canonical_path("/a%zz"), Err(PathError::BadEncoding));
    }

    #[test]
    fn an_escape_is_two_hex_digits_never_a_signed_number() {
        for bad in ["/a%+c", "/a%+0/b", "/%+f", "/a%-1", "/a% 1"] {
            assert_eq!(canonical_path(bad), Err(PathError::BadEncoding), "{bad}");
        }
        assert_eq!(canonical_path("/a%2bc").unwrap(), "/a+c");
    }

    #[test]
    fn allow_rules_match_method_and_canonical_path() {
        let rules = vec![AllowRule {
            methods: vec!["GET".into()],
            paths: vec!["/v1/charges*".into()],
        }];
        let check = |method, path: &str| allowed(&rules, method, &canonical_path(path).unwrap());
        assert!(check("GET", "/v1/charges"));
        assert!(check("GET", "/v1//charges/ch_1"));
        assert!(!check("POST", "/v1/charges"));
        assert!(!check("GET", "/v1/refunds"));
        assert!(!check("GET", "/V1/charges"), "matching is case-sensitive");
        assert!(allowed(&[], "DELETE", "/anything"));
    }

    #[test]
    fn globs() {
        assert!(glob_matches("/v1/*", "/v1/a/b"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("/a*b*c", "/aXXbYYc"));
        assert!(!glob_matches("/a*b*c", "/aXXbYY"));
        assert!(glob_matches("/exact", "/exact"));
        assert!(!glob_matches("/exact", "/exact/"));
    }
}
