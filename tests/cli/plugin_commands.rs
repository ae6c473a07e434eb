//! `agent-vault plugin list | check | test` as a user runs them.

use crate::support::{DataDir, agent_vault, built_wasm};

#[test]
fn plugin_list_shows_the_standard_plugins_on_a_fresh_machine() {
    let data = DataDir::new();
    let listing = data.run(&["plugin", "list"]).ok();
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("SHA256"),
        "{listing}"
    );
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line.split_whitespace().next().unwrap())
        .collect();
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
    for line in &lines[1..] {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[1], "0.1.0", "{line}");
        assert_eq!(columns[2].len(), 64, "a full sha256: {line}");
        assert_eq!(&columns[3..], ["builtin", "active"], "{line}");
    }
}

#[test]
fn plugin_list_shows_directory_plugins_and_why_one_failed() {
    let data = DataDir::new();
    std::fs::copy(
        built_wasm("fixture_counter"),
        data.plugin_dir().join("fixture-counter.wasm"),
    )
    .unwrap();
    std::fs::copy(
        built_wasm("fixture_wasi_import"),
        data.plugin_dir().join("fixture-wasi-import.wasm"),
    )
    .unwrap();
    let listing = data.run(&["plugin", "list"]).ok();
    let counter = listing
        .lines()
        .find(|l| l.starts_with("fixture-counter "))
        .expect(&listing);
    assert!(
        counter.ends_with("active") && counter.contains("fixture-counter.wasm"),
        "{counter}"
    );
    let wasi = listing
        .lines()
        .find(|l| l.starts_with("fixture-wasi-import "))
        .expect(&listing);
    assert!(
        wasi.contains("error: ") && wasi.contains("imports `wasi:"),
        "{wasi}"
    );
}

#[test]
fn plugin_check_reports_world_imports_and_description() {
    let bearer = built_wasm("bearer");
    let report = agent_vault(&["plugin", "check", bearer.to_str().unwrap()]).ok();
    let expected_tail = "\
world: agent-vault:plugin/auth-plugin@0.1.0
imports: agent-vault:plugin/types@0.1.0
name: bearer
version: 0.1.0
description: Sends the token as `Authorization: Bearer <token>`.
config: none
credentials:
  token (required): the API token
body: not read
ok: the plugin loads and imports nothing outside agent-vault:plugin
";
    assert!(report.ends_with(expected_tail), "{report}");
    assert!(
        report.starts_with(&format!("file: {}\nsha256: ", bearer.display())),
        "{report}"
    );
}

#[test]
fn plugin_check_names_a_forbidden_import() {
    let wasi = built_wasm("fixture_wasi_import");
    let error = agent_vault(&["plugin", "check", wasi.to_str().unwrap()]).fails();
    assert!(error.starts_with("error: "), "{error}");
    assert!(
        error.contains("imports `wasi:") && error.contains("which agent-vault does not provide"),
        "{error}"
    );
}

#[test]
fn plugin_test_masks_credentials_unless_asked() {
    let data = DataDir::new();
    let url = "https://api.example.com/v1/items?limit=3";
    let args = [
        "-H",
        "Accept: application/json",
        "-C",
        "username=u",
        "-C",
        "password=p",
    ];
    let shown = data.plugin_test("basic", url, &args).ok();
    assert_eq!(
        shown,
        "GET https://api.example.com/v1/items?limit=3\nhost: api.example.com\naccept: application/json\nauthorization: Basic ****\n"
    );
    let mut revealing = args.to_vec();
    revealing.push("--show-secrets");
    assert!(
        data.plugin_test("basic", url, &revealing)
            .ok()
            .contains("authorization: Basic dTpw\n")
    );
}

#[test]
fn plugin_test_masks_credentials_in_the_query() {
    let data = DataDir::new();
    let shown = data
        .plugin_test(
            "query-param",
            "https://maps.example.com/geo?q=x",
            &["-c", "name=key", "-C", "key=AIzaSECRET"],
        )
        .ok();
    assert_eq!(
        shown,
        "GET https://maps.example.com/geo?q=x&key=****\nhost: maps.example.com\n"
    );
}

#[test]
fn plugin_test_signs_like_the_aws_suite() {
    let data = DataDir::new();
    let shown = data
        .plugin_test(
            "aws-sigv4",
            "https://example.amazonaws.com/",
            &[
                "--now",
                "2015-08-30T12:36:00Z",
                "-c",
                "region=us-east-1",
                "-c",
                "service=service",
                "-C",
                "access_key_id=AKIDEXAMPLE",
                "-C",
                "secret_access_key=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ],
        )
        .ok();
    // The suite's get-vanilla case, with the access key id masked.
    assert!(
        shown.contains(
            "authorization: AWS4-HMAC-SHA256 Credential=****/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\n"
        ),
        "{shown}"
    );
    assert!(shown.contains("x-amz-date: 20150830T123600Z\n"), "{shown}");
    assert!(
        !shown.contains("AKIDEXAMPLE") && !shown.contains("wJalr"),
        "{shown}"
    );
}

#[test]
fn plugin_test_explains_a_missing_credential() {
    let data = DataDir::new();
    let error = data
        .plugin_test("bearer", "https://api.example.com/", &[])
        .fails();
    assert_eq!(
        error,
        "error: the credentials do not match the plugin's slots: credential slot \"token\" is required but not bound to a credential\n"
    );
}

#[test]
fn plugin_test_never_echoes_a_malformed_credential() {
    let data = DataDir::new();
    let error = data
        .plugin_test(
            "bearer",
            "https://api.example.com/",
            &["--credential", "sk_test_oops"],
        )
        .fails();
    assert_eq!(
        error,
        "error: a --credential must look like SLOT=VALUE or SLOT=@FILE\n"
    );
}

#[test]
fn plugin_test_reads_a_credential_from_a_file() {
    let data = DataDir::new();
    let secret_file = data.path().join("token");
    std::fs::write(&secret_file, "sk_from_file\n").unwrap();
    let credential = format!("token=@{}", secret_file.display());
    let shown = data
        .plugin_test(
            "bearer",
            "https://api.example.com/",
            &["-C", &credential, "--show-secrets"],
        )
        .ok();
    assert!(
        shown.contains("authorization: Bearer sk_from_file\n"),
        "{shown}"
    );
}

#[test]
fn plugin_test_names_an_unknown_plugin() {
    let data = DataDir::new();
    let error = data
        .plugin_test("bearr", "https://api.example.com/", &[])
        .fails();
    assert!(
        error.starts_with("error: no plugin named \"bearr\" (loaded: api-key, aws-sigv4,"),
        "{error}"
    );
}
