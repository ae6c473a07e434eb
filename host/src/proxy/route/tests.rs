//! Tests of routing: which service a request is for, and whether it lets it through (route.rs).

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
fn only_standard_methods_go_unless_a_rule_names_another() {
    let method = |name: &str| http::Method::from_bytes(name.as_bytes()).unwrap();
    assert_eq!(check_method(&[], &method("GET")), Ok(()));
    assert_eq!(check_method(&[], &method("PATCH")), Ok(()));
    assert_eq!(
        check_method(&[], &method("TRACE")),
        Err(MethodRefusal::Trace)
    );
    assert_eq!(
        check_method(&[], &method("CONNECT")),
        Err(MethodRefusal::Connect)
    );
    assert_eq!(
        check_method(&[], &method("TRACK")),
        Err(MethodRefusal::NotStandard("TRACK".into()))
    );
    let star = vec![AllowRule {
        methods: vec!["*".into()],
        paths: vec![],
    }];
    assert!(check_method(&star, &method("PROPFIND")).is_err());
    let webdav = vec![AllowRule {
        methods: vec!["PROPFIND".into(), "TRACE".into()],
        paths: vec!["/dav/*".into()],
    }];
    assert_eq!(check_method(&webdav, &method("PROPFIND")), Ok(()));
    assert_eq!(
        check_method(&webdav, &method("TRACE")),
        Err(MethodRefusal::Trace)
    );
}

#[test]
fn override_headers_are_judged_like_the_request() {
    let mut headers = http::HeaderMap::new();
    let taken = |headers: &http::HeaderMap| {
        taken_for(&http::Method::POST, "/v1/items", headers).map(|pairs| {
            pairs
                .into_iter()
                .map(|(method, path)| format!("{method} {path}"))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(taken(&headers).unwrap(), ["POST /v1/items"]);
    headers.insert("x-http-method-override", "DELETE".parse().unwrap());
    headers.insert("x-original-url", "/admin/../x?y=1".parse().unwrap());
    assert_eq!(taken(&headers), Err(PathError::DotSegment));
    headers.insert("x-original-url", "/admin?y=1".parse().unwrap());
    assert_eq!(
        taken(&headers).unwrap(),
        [
            "POST /v1/items",
            "POST /admin",
            "DELETE /v1/items",
            "DELETE /admin"
        ]
    );
    headers.insert("x-http-method-override", "not a method".parse().unwrap());
    assert_eq!(taken(&headers), Err(PathError::BadOverride));
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
