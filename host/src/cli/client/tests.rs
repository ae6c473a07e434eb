//! Tests of the CLI client: session files and device tokens, addresses, segments (client.rs).

use super::*;

fn session(address: &str, email: &str) -> SessionFile {
    SessionFile {
        token: format!("av_sess_{email}"),
        address: address.into(),
        email: email.into(),
    }
}

#[test]
fn device_tokens_outlive_the_session_one_per_server_and_account() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    let device = |address: &str, email: &str| {
        SessionFile::device_token(data_dir, address, email)
            .unwrap()
            .map(|token| token.to_string())
    };
    let here = "http://127.0.0.1:14321";
    session(here, "owner@example.com")
        .save(data_dir, Some("av_dev_1"))
        .unwrap();
    session("http://vault.internal:80", "owner@example.com")
        .save(data_dir, Some("av_dev_2"))
        .unwrap();
    // A later sign-in that was given none keeps the one there is.
    session(here, "owner@example.com")
        .save(data_dir, None)
        .unwrap();
    assert_eq!(
        device(here, "Owner@Example.com ").as_deref(),
        Some("av_dev_1")
    );
    assert_eq!(
        device("http://vault.internal:80", "owner@example.com").as_deref(),
        Some("av_dev_2")
    );
    assert_eq!(device(here, "bob@example.com"), None);

    assert!(SessionFile::remove(data_dir).unwrap());
    assert!(SessionFile::load(data_dir).unwrap().is_none());
    assert_eq!(
        device(here, "owner@example.com").as_deref(),
        Some("av_dev_1")
    );
    assert!(!SessionFile::remove(data_dir).unwrap());

    session(here, "owner@example.com")
        .save(data_dir, Some("av_dev_3"))
        .unwrap();
    assert_eq!(
        device(here, "owner@example.com").as_deref(),
        Some("av_dev_3")
    );
    for n in 0..MAX_DEVICE_TOKENS {
        session(here, &format!("user{n}@example.com"))
            .save(data_dir, Some("av_dev_n"))
            .unwrap();
    }
    assert_eq!(device(here, "owner@example.com"), None, "the oldest went");
    assert_eq!(
        device(here, "user0@example.com").as_deref(),
        Some("av_dev_n")
    );
}

#[test]
fn a_session_file_without_device_tokens_reads_as_before() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(SESSION_FILE),
        r#"{"token": "av_sess_x", "address": "http://127.0.0.1:14321", "email": "a@example.com"}"#,
    )
    .unwrap();
    let loaded = SessionFile::load(dir.path()).unwrap().unwrap();
    assert_eq!(loaded.token, "av_sess_x");
    assert!(SessionFile::remove(dir.path()).unwrap());
    assert!(!dir.path().join(SESSION_FILE).exists());
}

#[test]
fn addresses_are_normalised_to_http_urls() {
    assert_eq!(
        normalize_address("127.0.0.1:14321/").unwrap(),
        "http://127.0.0.1:14321"
    );
    assert_eq!(
        normalize_address("http://vault.internal:8080").unwrap(),
        "http://vault.internal:8080"
    );
    assert!(
        normalize_address("https://vault.example.com")
            .unwrap_err()
            .to_string()
            .contains("plain HTTP")
    );
    // A path is the server's base path, behind a reverse proxy.
    assert_eq!(
        normalize_address("http://proxy.internal:8080/agent-vault/").unwrap(),
        "http://proxy.internal:8080/agent-vault"
    );
    assert_eq!(
        normalize_address("http://host/a/../v1")
            .unwrap_err()
            .to_string(),
        "\"http://host/a/../v1\": the path after the server's address is its base path, and \
         \"/a/../v1\" has a . or .. segment"
    );
    assert!(normalize_address("http://host/path?x=1").is_err());
}

#[test]
fn segments_keep_hosts_and_escape_slashes() {
    assert_eq!(segment("api.example.com:8443"), "api.example.com:8443");
    assert_eq!(segment("a/b c"), "a%2Fb%20c");
    assert_eq!(query_value("a&b=c"), "a%26b%3Dc");
}

#[test]
fn ambiguous_names_list_their_candidates() {
    let body = serde_json::json!({
        "error": "multiple services match host \"api.x.com\" — retry with a service name",
        "candidates": [{"name": "one", "host": "api.x.com"}, {"name": "two", "host": "api.x.com/v2/*"}]
    });
    assert_eq!(
        describe_error(&body),
        "multiple services match host \"api.x.com\" — retry with a service name (candidates: one (api.x.com), two (api.x.com/v2/*))"
    );
}
