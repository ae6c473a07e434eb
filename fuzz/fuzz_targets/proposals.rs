//! Proposals (`proposals::validate`): what an agent may ask for, checked against a vault.
//!
//! Input: a first line of flags, `existing` for a vault that already has three services
//! (`github`, `files-a`, `files-b`) and `dev` for development mode; then the proposal's JSON
//! body as an agent sends it. The vault holds the credentials `GITHUB_TOKEN` and `SID`.
//!
//! For any proposal body, validation never panics, and whatever it accepts
//! - reads back from the store as the same checked proposal (`stored`);
//! - asks the approver only for valid credential keys;
//! - merges into the vault's services (`merge` cannot fail on the vault it was checked
//!   against), and the merged services round-trip through the store;
//! - describes every change in words that name the service.
#![no_main]

use agent_vault::proposals::{self, ProposalRequest, describe, merge, stored};
use agent_vault::services::{
    Rules, Service, ServiceSpec, check_credential_key, from_document, to_document, validate,
};
use agent_vault_fuzz::input;
use serde_json::json;

fn existing() -> Vec<Service> {
    let specs: Vec<ServiceSpec> = serde_json::from_value(json!([
        { "name": "github", "host": "api.github.com", "auth": { "type": "bearer", "token": "GITHUB_TOKEN" } },
        { "name": "files-a", "host": "files.example.com/a/*", "auth": { "type": "bearer", "token": "GITHUB_TOKEN" } },
        { "name": "files-b", "host": "files.example.com/b/*", "auth": { "type": "bearer", "token": "GITHUB_TOKEN" },
          "substitutions": [{ "key": "SID", "placeholder": "__sid__" }], "enabled": false }
    ]))
    .expect("specs");
    validate(
        &specs,
        Rules {
            dev_mode: false,
            plugins: None,
        },
    )
    .expect("valid services")
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let at = data
        .iter()
        .position(|&byte| byte == b'\n')
        .unwrap_or(data.len());
    let flags: Vec<&str> = input::utf8_prefix(&data[..at]).split(' ').collect();
    let Ok(request) =
        serde_json::from_slice::<ProposalRequest>(data.get(at + 1..).unwrap_or_default())
    else {
        return;
    };
    let rules = Rules {
        dev_mode: flags.contains(&"dev"),
        plugins: None,
    };
    let existing = if flags.contains(&"existing") {
        existing()
    } else {
        Vec::new()
    };
    let keys = ["GITHUB_TOKEN".to_owned(), "SID".to_owned()];
    let Ok(checked) = proposals::validate(&request, &existing, &keys, rules) else {
        return;
    };

    let read_back = stored(
        &checked.services_json(),
        &checked.credentials_json(),
        &existing,
        rules,
    );
    assert_eq!(read_back.as_ref().ok(), Some(&checked), "store round trip");
    for key in checked.keys_to_set() {
        assert_eq!(check_credential_key(key), Ok(()));
    }
    for change in &checked.services {
        let words = describe(change);
        assert!(
            words.contains(&change.name),
            "{words:?} does not name {}",
            change.name
        );
    }
    let merged =
        merge(existing, &checked.services).expect("merges into the vault it was checked against");
    let document = to_document(&merged);
    assert_eq!(
        from_document(&document).as_ref(),
        Ok(&merged),
        "merged services round trip: {document}"
    );
});
