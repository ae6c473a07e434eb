//! Each standard plugin, on the exact request it sends, and on the configurations it
//! accepts and refuses.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent_vault::plugin::contract::BodyNeed;
use agent_vault::plugin::{ConfigError, Plugin, PluginConfigError};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::support::{Attempt, config, request, standard};

fn plugin(name: &str) -> Arc<Plugin> {
    standard()
        .get(name)
        .unwrap_or_else(|| panic!("standard plugin {name} is loaded"))
}

fn slots(plugin: &Plugin, pairs: &[(&str, &str)]) -> Vec<String> {
    plugin
        .validate_config(&config(pairs))
        .unwrap()
        .credentials
        .into_iter()
        .map(|slot| slot.name)
        .collect()
}

fn rejected(plugin: &Plugin, pairs: &[(&str, &str)]) -> String {
    match plugin.validate_config(&config(pairs)) {
        Err(PluginConfigError::Config(error)) => error.to_string(),
        other => panic!("expected the configuration to be rejected, got {other:?}"),
    }
}

#[test]
fn bearer_replaces_the_agents_authorization() {
    let bearer = plugin("bearer");
    let sent = Attempt::new(
        &bearer,
        request(
            "GET",
            "https://api.example.com/v1/charges",
            &[("authorization", "Bearer agent-token")],
        ),
    )
    .credentials(&[("token", "sk_test_123")])
    .run();
    assert_eq!(
        sent.forwarded().header("authorization"),
        ["Bearer sk_test_123"]
    );
    assert!(sent.request.headers["authorization"].is_sensitive());
    assert_eq!(slots(&bearer, &[]), ["token"]);
}

#[test]
fn basic_with_u_and_p_is_dtpw() {
    let basic = plugin("basic");
    let sent = Attempt::new(&basic, request("GET", "https://api.example.com/", &[]))
        .credentials(&[("username", "u"), ("password", "p")])
        .run();
    assert_eq!(sent.forwarded().header("authorization"), ["Basic dTpw"]);
}

#[test]
fn basic_without_a_password_sends_an_empty_one() {
    let basic = plugin("basic");
    let sent = Attempt::new(&basic, request("GET", "https://api.example.com/", &[]))
        .credentials(&[("username", "u")])
        .run();
    // base64("u:")
    assert_eq!(sent.forwarded().header("authorization"), ["Basic dTo="]);
}

#[test]
fn api_key_defaults_to_the_authorization_header() {
    let api_key = plugin("api-key");
    let sent = Attempt::new(&api_key, request("GET", "https://api.example.com/", &[]))
        .credentials(&[("key", "k-123")])
        .run();
    assert_eq!(sent.forwarded().header("authorization"), ["k-123"]);
}

#[test]
fn api_key_uses_the_configured_header_and_prefix() {
    let api_key = plugin("api-key");
    let sent = Attempt::new(
        &api_key,
        request(
            "GET",
            "https://api.example.com/",
            &[("x-api-key", "agent-guess")],
        ),
    )
    .config(&[("header", "X-Api-Key"), ("prefix", "Token ")])
    .credentials(&[("key", "k-123")])
    .run();
    assert_eq!(sent.forwarded().header("x-api-key"), ["Token k-123"]);
    assert!(sent.header("authorization").is_empty());
}

#[test]
fn api_key_refuses_a_bad_header_name_or_an_unknown_key() {
    let api_key = plugin("api-key");
    assert_eq!(
        rejected(&api_key, &[("header", "X Api Key")]),
        "the plugin rejected the configuration: header \"X Api Key\" must be letters, digits and hyphens"
    );
    assert_eq!(
        rejected(&api_key, &[("headr", "X-Api-Key")]),
        "unknown config key \"headr\" (plugin api-key accepts: header, prefix)"
    );
}

#[test]
fn custom_headers_render_templates_with_credentials() {
    let custom = plugin("custom-headers");
    let pairs = [
        ("header.Authorization", "Token token={{ ZENDESK_TOKEN }}"),
        ("header.X-Account", "{{ACCOUNT_ID}}/{{ ZENDESK_TOKEN }}"),
        ("header.X-Client", "agent-vault"),
    ];
    assert_eq!(slots(&custom, &pairs), ["ZENDESK_TOKEN", "ACCOUNT_ID"]);
    let sent = Attempt::new(
        &custom,
        request("GET", "https://acme.zendesk.com/api/v2/tickets", &[]),
    )
    .config(&pairs)
    .credentials(&[("ZENDESK_TOKEN", "zt"), ("ACCOUNT_ID", "42")])
    .run();
    sent.forwarded();
    assert_eq!(sent.header("authorization"), ["Token token=zt"]);
    assert_eq!(sent.header("x-account"), ["42/zt"]);
    assert_eq!(sent.header("x-client"), ["agent-vault"]);
    assert!(!sent.request.headers["x-client"].is_sensitive());
}

#[test]
fn custom_headers_refuse_broken_templates() {
    let custom = plugin("custom-headers");
    assert_eq!(
        rejected(&custom, &[("header.X-Key", "{{ api_key }}")]),
        "the plugin rejected the configuration: header X-Key: \"api_key\" must be UPPER_SNAKE_CASE (e.g. STRIPE_KEY)"
    );
    assert_eq!(
        rejected(&custom, &[("header.X-Key", "{{ KEY ")]),
        "the plugin rejected the configuration: header X-Key: a \"{{\" is never closed with \"}}\""
    );
    assert_eq!(
        rejected(&custom, &[]),
        "missing required config key \"header.*\""
    );
}

#[test]
fn passthrough_forwards_the_request_untouched_and_takes_no_credentials() {
    let passthrough = plugin("passthrough");
    let original = request(
        "POST",
        "https://api.example.com/v1/x?a=1",
        &[("authorization", "Bearer mine"), ("cookie", "s=1")],
    );
    let sent = Attempt::new(&passthrough, original.clone()).run();
    sent.forwarded();
    assert_eq!(sent.request.headers, original.headers);
    assert_eq!(sent.request.path_and_query(), original.path_and_query());
    let requirements = passthrough.validate_config(&config(&[])).unwrap();
    let error =
        agent_vault::plugin::config::check_bindings("passthrough", &requirements, ["token"])
            .unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("no credential fields are permitted)"),
        "{error}"
    );
}

#[test]
fn query_param_replaces_the_parameter_and_encodes_the_value() {
    let query_param = plugin("query-param");
    let sent = Attempt::new(
        &query_param,
        request(
            "GET",
            "https://maps.example.com/geocode?q=paris&key=agent-guess&lang=fr",
            &[],
        ),
    )
    .config(&[("name", "key")])
    .credentials(&[("key", "a b/c+d")])
    .run();
    sent.forwarded();
    assert_eq!(
        sent.request.path_and_query(),
        "/geocode?q=paris&key=a%20b%2Fc%2Bd&lang=fr"
    );
    assert_eq!(
        rejected(&query_param, &[]),
        "missing required config key \"name\""
    );
}

/// HMAC-SHA256 as a third party computes it, to check the plugin against.
fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn hmac_signs_the_default_string_into_a_header() {
    let hmac = plugin("hmac");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let sent = Attempt::new(
        &hmac,
        request("GET", "https://api.example.com/v1/orders?b=2&a=1", &[]),
    )
    .config(&[("timestamp-header", "x-timestamp")])
    .credentials(&[("secret", "s3cret")])
    .now(now)
    .run();
    sent.forwarded();
    let expected = hex::encode(hmac_sha256(b"s3cret", b"GET\n/v1/orders\n1700000000"));
    assert_eq!(sent.header("x-signature"), [expected]);
    assert_eq!(sent.header("x-timestamp"), ["1700000000"]);
}

#[test]
fn hmac_follows_a_full_template_with_query_headers_and_body() {
    let hmac = plugin("hmac");
    let pairs = [
        (
            "string-to-sign",
            "{method} {host}{path}?{query}|{header:content-type}|{timestamp}|{body-sha256}|{{x}}",
        ),
        ("encoding", "base64"),
        ("signature-header", "X-Acme-Signature"),
        ("signature-prefix", "v1="),
        ("timestamp-format", "iso8601"),
        ("key-id-header", "X-Acme-Key"),
    ];
    let requirements = hmac.validate_config(&config(&pairs)).unwrap();
    assert_eq!(requirements.body, BodyNeed::Sha256);
    let body = br#"{"amount":100}"#;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let sent = Attempt::new(
        &hmac,
        request(
            "POST",
            "https://api.acme.test/v2/pay?z=%20last&a=first",
            &[("content-type", "application/json")],
        ),
    )
    .config(&pairs)
    .credentials(&[("secret", "k"), ("key_id", "key-7")])
    .now(now)
    .body(body)
    .run();
    sent.forwarded();
    let string_to_sign = format!(
        "POST api.acme.test/v2/pay?a=first&z=%20last|application/json|2015-08-30T12:36:00Z|{}|{{x}}",
        hex::encode(Sha256::digest(body))
    );
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(b"k", string_to_sign.as_bytes()));
    assert_eq!(sent.header("x-acme-signature"), [format!("v1={expected}")]);
    assert_eq!(sent.header("x-acme-key"), ["key-7"]);
}

#[test]
fn hmac_can_sign_into_the_query_with_sha1_and_sha512() {
    let hmac = plugin("hmac");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
    for (algorithm, length) in [("sha1", 40), ("sha512", 128)] {
        let sent = Attempt::new(&hmac, request("GET", "https://api.example.com/x", &[]))
            .config(&[("algorithm", algorithm), ("signature-query", "sig")])
            .credentials(&[("secret", "k")])
            .now(now)
            .run();
        sent.forwarded();
        let query = sent.request.query.clone().unwrap();
        let signature = query.strip_prefix("sig=").unwrap();
        assert_eq!(signature.len(), length, "{algorithm}: {query}");
    }
}

#[test]
fn hmac_refuses_unknown_placeholders_and_settings() {
    let hmac = plugin("hmac");
    assert_eq!(
        rejected(&hmac, &[("string-to-sign", "{method}{nonce}")]),
        "the plugin rejected the configuration: unknown placeholder {nonce}"
    );
    assert_eq!(
        rejected(&hmac, &[("algorithm", "md5")]),
        "the plugin rejected the configuration: algorithm \"md5\" must be sha1, sha256 or sha512"
    );
    assert_eq!(
        rejected(
            &hmac,
            &[("signature-header", "x"), ("signature-query", "y")]
        ),
        "the plugin rejected the configuration: set signature-header or signature-query, not both"
    );
    let requirements = hmac.validate_config(&config(&[])).unwrap();
    assert_eq!(
        requirements.body,
        BodyNeed::None,
        "no body hash unless the template asks"
    );
}

#[test]
fn every_standard_plugin_is_embedded() {
    let mut names: Vec<String> = standard()
        .list()
        .into_iter()
        .map(|listing| listing.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api-key",
            "aws-sigv4",
            "basic",
            "bearer",
            "custom-headers",
            "hmac",
            "passthrough",
            "query-param"
        ]
    );
}

#[test]
fn a_missing_required_key_is_named() {
    let sigv4 = plugin("aws-sigv4");
    match sigv4.validate_config(&config(&[("region", "us-east-1")])) {
        Err(PluginConfigError::Config(ConfigError::MissingKey(key))) => assert_eq!(key, "service"),
        other => panic!("expected a missing key, got {other:?}"),
    }
}
