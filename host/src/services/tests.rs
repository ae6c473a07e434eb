//! Tests of services: the JSON document, its checks and errors, placeholders (services.rs).

use super::*;
use serde_json::json;

fn specs(value: Value) -> Vec<ServiceSpec> {
    serde_json::from_value(value).unwrap()
}

fn check(value: Value) -> Result<Vec<Service>, String> {
    validate(
        &specs(value),
        Rules {
            dev_mode: false,
            plugins: None,
        },
    )
}

#[test]
fn every_agent_vault_auth_type_maps_to_a_plugin() {
    let services = check(json!([
        {"name": "stripe", "host": "api.stripe.com", "auth": {"type": "bearer", "token": "STRIPE_KEY"}},
        {"name": "jira", "host": "acme.atlassian.net", "auth": {"type": "basic", "username": "JIRA_USER", "password": "JIRA_TOKEN"}},
        {"name": "anthropic", "host": "api.anthropic.com", "auth": {"type": "api-key", "key": "ANTHROPIC_KEY", "header": "x-api-key"}},
        {"name": "zendesk", "host": "*.zendesk.com", "auth": {"type": "custom", "headers": {"Authorization": "Token token={{ ZD_TOKEN }}"}}},
        {"name": "public", "host": "api.github.com/meta", "auth": {"type": "passthrough"}},
        {"name": "ledger", "host": "api.ledger.example:8443/v1/*", "auth": {"type": "plugin", "plugin": "ledger-signature", "config": {"allow-writes": true}, "credentials": {"key_id": "LEDGER_ID", "secret": "LEDGER_SECRET"}}}
    ]))
    .unwrap();
    let bindings: Vec<(String, Vec<(String, String)>)> = services
        .iter()
        .map(|s| (s.binding().plugin, s.binding().credentials))
        .collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        bindings[0],
        ("bearer".into(), vec![pair("token", "STRIPE_KEY")])
    );
    assert_eq!(
        bindings[1],
        (
            "basic".into(),
            vec![
                pair("username", "JIRA_USER"),
                pair("password", "JIRA_TOKEN")
            ]
        )
    );
    assert_eq!(
        bindings[2],
        ("api-key".into(), vec![pair("key", "ANTHROPIC_KEY")])
    );
    assert_eq!(
        services[2].binding().config.get("header"),
        Some("x-api-key")
    );
    assert_eq!(
        bindings[3],
        ("custom-headers".into(), vec![pair("ZD_TOKEN", "ZD_TOKEN")])
    );
    assert_eq!(
        services[3].binding().config.get("header.Authorization"),
        Some("Token token={{ ZD_TOKEN }}")
    );
    assert_eq!(bindings[4], ("passthrough".into(), vec![]));
    assert_eq!(bindings[5].0, "ledger-signature");
    assert_eq!(
        services[5].binding().config.get("allow-writes"),
        Some("true")
    );
    assert_eq!(services[5].inline_host(), "api.ledger.example:8443/v1/*");
    assert_eq!(services[4].path, "/meta");
}

#[test]
fn a_document_round_trips() {
    let services = check(json!([
        {"name": "stripe", "host": "API.Stripe.com:443/v1/*", "enabled": false,
         "auth": {"type": "bearer", "token": "STRIPE_KEY"},
         "allow": [{"methods": ["GET"], "paths": ["/v1/charges*"]}]}
    ]))
    .unwrap();
    assert_eq!(from_document(&to_document(&services)).unwrap(), services);
    assert_eq!(services[0].host, "api.stripe.com");
    assert!(!services[0].enabled);
}

/// Found by the `services` fuzz target: a path with `://` was accepted, but its stored
/// inline form (`host/path`) read back as a host with a scheme, and the vault's
/// services could no longer be read at all.
#[test]
fn a_path_holding_a_url_survives_storage_and_a_scheme_is_still_refused() {
    let services = check(json!([{ "name": "goto", "host": "api.example.com",
        "path": "/go/https://x.example/*", "auth": { "type": "passthrough" } }]))
    .unwrap();
    assert_eq!(
        services[0].inline_host(),
        "api.example.com/go/https://x.example/*"
    );
    assert_eq!(from_document(&to_document(&services)), Ok(services));
    for host in [
        "https://api.example.com",
        "http://api.example.com/a",
        "api.example.com://x",
    ] {
        assert_eq!(
            check(json!([{ "name": "xyz", "host": host, "auth": { "type": "passthrough" } }])),
            Err(format!(
                "service 0: host {host:?} must not include a scheme"
            ))
        );
    }
}

#[test]
fn errors_name_the_service_and_the_field() {
    let cases = [
        (json!([{"name": "abc"}]), "service 0: host is required"),
        (
            json!([{"host": "api.x.com", "auth": {"type": "bearer", "token": "K"}}]),
            "service 0: name is required",
        ),
        (
            json!([{"name": "ab", "host": "api.x.com"}]),
            "service 0: name \"ab\" must be at least 3 characters",
        ),
        (
            json!([{"name": "a--b", "host": "api.x.com"}]),
            "service 0: name \"a--b\" must not contain consecutive hyphens",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com"}]),
            "service 0: auth: type is required (supported: bearer, basic, api-key, custom, passthrough, plugin)",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com", "auth": {"type": "bearer"}}]),
            "service 0: auth: \"token\" is required for bearer auth",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com", "auth": {"type": "bearer", "token": "K", "key": "X"}}]),
            "service 0: auth: unexpected field \"key\" for bearer auth (only token)",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com", "auth": {"type": "bearer", "token": "stripe_key"}}]),
            "service 0: auth: token \"stripe_key\" must be UPPER_SNAKE_CASE (e.g. STRIPE_KEY)",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com", "auth": {"type": "passthrough", "token": "K"}}]),
            "service 0: auth: unexpected field \"token\" for passthrough auth (no credential fields are permitted)",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com", "description": "x", "auth": {"type": "passthrough"}}]),
            "service 0: description is no longer supported; remove it",
        ),
        (
            json!([{"name": "abc", "host": "localhost", "auth": {"type": "passthrough"}}]),
            "service 0: host \"localhost\" is an IP address or internal name; only public host names are allowed (development mode allows them)",
        ),
        (
            json!([{"name": "abc", "host": "*.com", "auth": {"type": "passthrough"}}]),
            "service 0: wildcard \"*.com\" must cover a domain with a dot, like *.example.com",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com/v1/**", "auth": {"type": "passthrough"}}]),
            "service 0: path \"/v1/**\" must not contain ** (a single * already crosses /)",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com", "auth": {"type": "passthrough"}}, {"name": "abc", "host": "api.y.com", "auth": {"type": "passthrough"}}]),
            "service 1: duplicate name \"abc\" (also at service 0)",
        ),
        (
            json!([{"name": "abc", "host": "api.x.com", "auth": {"type": "passthrough"}, "allow": [{"methods": ["get"]}]}]),
            "service 0: allow 0: method \"get\" must be an upper-case HTTP method or *",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(check(input.clone()).unwrap_err(), expected, "{input}");
    }
}

#[test]
fn internal_hosts_are_allowed_in_development_mode() {
    let services = validate(
        &specs(
            json!([{"name": "local", "host": "127.0.0.1:8080", "auth": {"type": "passthrough"}}]),
        ),
        Rules {
            dev_mode: true,
            plugins: None,
        },
    )
    .unwrap();
    assert_eq!(services[0].port, Some(8080));
}

#[test]
fn the_example_in_the_control_plane_docs_is_valid() {
    let doc = include_str!("../../../docs/control-plane.md");
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/control-plane.md has a yaml example");
    #[derive(Deserialize)]
    struct Document {
        services: Vec<ServiceSpec>,
    }
    let document: Document = serde_norway::from_str(yaml).unwrap();
    let services = validate(
        &document.services,
        Rules {
            dev_mode: false,
            plugins: None,
        },
    )
    .unwrap();
    assert_eq!(services[1].binding().plugin, "ledger-signature");
    assert_eq!(services[0].allow[0].methods, ["GET", "POST"]);
}
fn with_substitutions(substitutions: Value) -> Result<Vec<Service>, String> {
    check(json!([{
        "name": "telegram", "host": "api.telegram.org",
        "auth": {"type": "passthrough"},
        "substitutions": substitutions,
    }]))
}

#[test]
fn placeholders_must_look_like_placeholders() {
    for bad in ["account_sid", "abc", "____", "__a b__", "__tök__"] {
        let error = with_substitutions(json!([{"key": "SID", "placeholder": bad}])).expect_err(bad);
        assert!(error.contains("placeholder"), "{bad}: {error}");
    }
    let error =
        with_substitutions(json!([{"key": "SID", "placeholder": "account_sid"}])).unwrap_err();
    assert!(error.contains("\"__account_sid__\""), "{error}");
    for good in ["__account_sid__", "sid.value", "~sid~", "__SID__"] {
        with_substitutions(json!([{"key": "SID", "placeholder": good}])).expect(good);
    }
}

#[test]
fn substitutions_default_to_path_and_query_and_name_known_surfaces_once() {
    let services =
        with_substitutions(json!([{"key": "BOT_TOKEN", "placeholder": "__bot_token__"}])).unwrap();
    assert_eq!(
        services[0].substitutions[0].surfaces,
        [Surface::Path, Surface::Query]
    );
    assert_eq!(services[0].credential_keys(), ["BOT_TOKEN"]);
    let error =
        with_substitutions(json!([{"key": "SID", "placeholder": "__sid__", "in": ["cookie"]}]))
            .unwrap_err();
    assert!(
        error.contains("invalid substitution surface \"cookie\""),
        "{error}"
    );
    let error = with_substitutions(
        json!([{"key": "SID", "placeholder": "__sid__", "in": ["body", "body"]}]),
    )
    .unwrap_err();
    assert!(error.contains("listed twice"), "{error}");
    let error = with_substitutions(json!([{"key": "SID", "placeholder": "__sid__", "in": []}]))
        .unwrap_err();
    assert!(error.contains("at least one"), "{error}");
    let error = with_substitutions(json!([
        {"key": "A_KEY", "placeholder": "__same__"},
        {"key": "B_KEY", "placeholder": "__same__", "in": ["body"]},
    ]))
    .unwrap_err();
    assert!(error.contains("already used"), "{error}");
    let error = with_substitutions(json!([{"key": "sid", "placeholder": "__sid__"}])).unwrap_err();
    assert!(error.contains("UPPER_SNAKE_CASE"), "{error}");
    let error =
        with_substitutions(json!([{"key": "SID", "placeholder": "__sid__", "where": ["path"]}]))
            .unwrap_err();
    assert!(error.contains("unexpected field \"where\""), "{error}");
}

#[test]
fn substitutions_and_response_settings_survive_storage() {
    let services = check(json!([{
        "name": "twilio", "host": "api.twilio.com",
        "auth": {"type": "basic", "username": "TWILIO_SID", "password": "TWILIO_TOKEN"},
        "substitutions": [{"key": "TWILIO_SID", "placeholder": "__sid__", "in": ["path", "body", "websocket"]}],
        "redact_echo": false,
        "compressed_responses": "pass",
    }]))
    .unwrap();
    assert!(!services[0].responses.redact_echo);
    assert_eq!(services[0].responses.compressed, CompressedResponses::Pass);
    assert_eq!(from_document(&to_document(&services)).unwrap(), services);
    assert_eq!(
        services[0].to_json()["substitutions"],
        json!([{"key": "TWILIO_SID", "placeholder": "__sid__", "in": ["path", "body", "websocket"]}])
    );
    let defaults = check(json!([{
        "name": "stripe", "host": "api.stripe.com",
        "auth": {"type": "bearer", "token": "STRIPE_KEY"},
    }]))
    .unwrap();
    assert_eq!(defaults[0].responses, ResponsePolicy::default());
    assert!(defaults[0].to_json().get("redact_echo").is_none());
    let error = check(json!([{
        "name": "stripe", "host": "api.stripe.com",
        "auth": {"type": "bearer", "token": "STRIPE_KEY"},
        "compressed_responses": "gzip",
    }]))
    .unwrap_err();
    assert!(error.contains("\"refuse\" or \"pass\""), "{error}");
}
