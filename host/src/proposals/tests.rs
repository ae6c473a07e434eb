//! Tests of proposals: what an agent may ask for, what approving it does (proposals.rs).

use super::*;

fn rules() -> Rules<'static> {
    Rules {
        dev_mode: false,
        plugins: None,
    }
}

fn request(services: Value, credentials: Value) -> ProposalRequest {
    serde_json::from_value(json!({ "services": services, "credentials": credentials })).unwrap()
}

fn existing() -> Vec<Service> {
    services::validate(
        &serde_json::from_value::<Vec<ServiceSpec>>(json!([
            { "name": "github", "host": "api.github.com", "auth": { "type": "bearer", "token": "GITHUB_TOKEN" } },
            { "name": "files-a", "host": "files.example.com/a/*", "auth": { "type": "bearer", "token": "GITHUB_TOKEN" } },
            { "name": "files-b", "host": "files.example.com/b/*", "auth": { "type": "bearer", "token": "GITHUB_TOKEN" } },
        ]))
        .unwrap(),
        rules(),
    )
    .unwrap()
}

fn refused(services: Value, credentials: Value) -> String {
    match validate(
        &request(services, credentials),
        &existing(),
        &["GITHUB_TOKEN".into()],
        rules(),
    ) {
        Err(Refused::Invalid(message)) => message,
        other => panic!("expected a 400, got {other:?}"),
    }
}

fn stripe() -> Value {
    json!({ "name": "stripe", "host": "api.stripe.com",
            "auth": { "type": "bearer", "token": "STRIPE_KEY" },
            "allow": [{ "methods": ["GET"], "paths": ["/v1/*"] }] })
}

#[test]
fn a_new_service_with_its_slot_is_accepted_and_described() {
    let checked = validate(
        &request(
            json!([stripe()]),
            json!([{ "key": "STRIPE_KEY", "description": "Stripe secret key", "obtain": "https://dashboard.stripe.com/apikeys" }]),
        ),
        &existing(),
        &[],
        rules(),
    )
    .unwrap();
    assert_eq!(checked.keys_to_set(), ["STRIPE_KEY"]);
    assert_eq!(
        describe(&checked.services[0]),
        "Service stripe for https://api.stripe.com (any port): bearer auth with STRIPE_KEY; allows GET on /v1/*"
    );
    // What is stored reads back to the same changes.
    let again = stored(
        &checked.services_json(),
        &checked.credentials_json(),
        &existing(),
        rules(),
    )
    .unwrap();
    assert_eq!(again, checked);
    let merged = merge(existing(), &checked.services).unwrap();
    assert_eq!(merged.len(), 4);
    assert_eq!(merged[3].name, "stripe");
}

#[test]
fn every_rule_has_its_message() {
    assert_eq!(
        refused(json!([]), json!([])),
        "A proposal needs at least one service or credential"
    );
    assert_eq!(
        refused(json!([stripe()]), json!([])),
        "credential STRIPE_KEY referenced in service stripe is not provided in this proposal and does not exist in the vault"
    );
    assert_eq!(
        refused(
            json!([stripe()]),
            json!([{ "key": "STRIPE_KEY" }, { "key": "EXTRA" }])
        ),
        "credential slot EXTRA is not referenced by any service auth config"
    );
    assert_eq!(
        refused(json!([]), json!([{ "key": "A_KEY" }, { "key": "A_KEY" }])),
        "credentials[1]: duplicate key A_KEY"
    );
    assert_eq!(
        refused(json!([]), json!([{ "key": "lower" }])),
        "credentials[0]: key \"lower\" must be UPPER_SNAKE_CASE (e.g. STRIPE_KEY)"
    );
    assert_eq!(
        refused(
            json!([]),
            json!([{ "key": "A_KEY", "value": "not-a-real-key" }])
        ),
        "credentials[0]: value: an agent never sends a credential value; whoever approves types it"
    );
    assert_eq!(
        refused(json!([]), json!([{ "key": "A_KEY", "type": "oauth" }])),
        "credentials[0]: OAuth credentials are not supported"
    );
    assert_eq!(
        refused(
            json!([]),
            json!([{ "key": "A_KEY", "obtain": "javascript:alert(1)" }])
        ),
        "credentials[0]: obtain must be an http:// or https:// URL"
    );
    assert_eq!(
        refused(
            json!([]),
            json!([{ "key": "A_KEY", "description": "x".repeat(501) }])
        ),
        "credentials[0]: description: at most 500 characters"
    );
    assert_eq!(
        refused(json!([{ "action": "upsert", "name": "x" }]), json!([])),
        "services[0]: action must be \"set\" or \"delete\""
    );
    assert_eq!(
        refused(
            json!([{ "host": "api.new.example", "auth": { "type": "passthrough" } }]),
            json!([])
        ),
        "services[0]: name is required"
    );
    assert_eq!(
        refused(json!([{ "name": "newone", "enabled": false }]), json!([])),
        "services[0]: no service named newone to switch; give its auth to add it"
    );
    assert_eq!(
        refused(json!([{ "name": "github" }]), json!([])),
        "services[0]: a set needs auth, or enabled alone to switch an existing service"
    );
    assert!(
        refused(
            json!([{ "name": "bad", "host": "localhost", "auth": { "type": "passthrough" } }]),
            json!([])
        )
        .starts_with("services[0]: ")
    );
    assert_eq!(
        refused(
            json!([stripe(), stripe()]),
            json!([{ "key": "STRIPE_KEY" }])
        ),
        "services[1]: duplicate name stripe"
    );
    let many: Vec<Value> = (0..11)
        .map(|n| json!({ "name": format!("s-{n}"), "action": "delete" }))
        .collect();
    assert_eq!(
        refused(json!(many), json!([])),
        "services: at most 10 per proposal"
    );
    let message = ProposalRequest {
        message: "m".repeat(2001),
        ..request(json!([]), json!([{ "key": "A_KEY" }]))
    };
    assert_eq!(
        validate(&message, &[], &[], rules()).unwrap_err(),
        Refused::Invalid("message: at most 2000 characters".into())
    );
}

#[test]
fn a_delete_by_host_resolves_to_one_service_or_says_which() {
    let checked = validate(
        &request(
            json!([{ "action": "delete", "host": "api.github.com" }]),
            json!([]),
        ),
        &existing(),
        &[],
        rules(),
    )
    .unwrap();
    assert_eq!(checked.services[0].name, "github");
    assert_eq!(describe(&checked.services[0]), "Remove the service github");
    assert_eq!(
        validate(
            &request(
                json!([{ "action": "delete", "host": "nowhere.example" }]),
                json!([])
            ),
            &existing(),
            &[],
            rules(),
        )
        .unwrap_err(),
        Refused::NotFound("No service matches host nowhere.example".into())
    );
    match validate(
        &request(
            json!([{ "action": "delete", "host": "files.example.com" }]),
            json!([]),
        ),
        &existing(),
        &[],
        rules(),
    ) {
        Err(Refused::Ambiguous { candidates, .. }) => assert_eq!(
            candidates,
            [
                ("files-a".to_owned(), "files.example.com/a/*".to_owned()),
                ("files-b".to_owned(), "files.example.com/b/*".to_owned()),
            ]
        ),
        other => panic!("expected candidates, got {other:?}"),
    }
}

#[test]
fn a_new_auth_keeps_the_substitutions_the_proposal_says_nothing_about() {
    let mut services = existing();
    services[0].substitutions = vec![services::Substitution {
        key: "GITHUB_TOKEN".into(),
        placeholder: "__gh_token__".into(),
        surfaces: vec![services::Surface::Path],
    }];
    let set = |entry: Value| {
        validate(
            &request(json!([entry]), json!([{ "key": "NEW_TOKEN" }])),
            &services,
            &[],
            rules(),
        )
        .unwrap()
    };
    let silent = set(json!({
        "name": "github", "host": "api.github.com",
        "auth": { "type": "bearer", "token": "NEW_TOKEN" }
    }));
    let merged = merge(services.clone(), &silent.services).unwrap();
    assert_eq!(merged[0].credential_keys(), ["NEW_TOKEN", "GITHUB_TOKEN"]);
    assert_eq!(merged[0].substitutions[0].placeholder, "__gh_token__");

    let cleared = set(json!({
        "name": "github", "host": "api.github.com",
        "auth": { "type": "bearer", "token": "NEW_TOKEN" }, "substitutions": []
    }));
    let merged = merge(services.clone(), &cleared.services).unwrap();
    assert!(merged[0].substitutions.is_empty());

    let replaced = set(json!({
        "name": "github", "host": "api.github.com",
        "auth": { "type": "passthrough" },
        "substitutions": [{ "key": "NEW_TOKEN", "placeholder": "__new__", "in": ["header"] }]
    }));
    assert_eq!(
        describe(&replaced.services[0]),
        "Service github for https://api.github.com (any port): passthrough auth with NEW_TOKEN; allows \
         every method and path; puts NEW_TOKEN where the request has __new__ (in header)"
    );
    let merged = merge(services, &replaced.services).unwrap();
    assert_eq!(merged[0].substitutions[0].placeholder, "__new__");
}

#[test]
fn merging_replaces_switches_and_removes_by_name() {
    let checked = validate(
        &request(
            json!([
                { "name": "github", "host": "api.github.com", "auth": { "type": "bearer", "token": "NEW_TOKEN" } },
                { "name": "files-a", "enabled": false },
                { "name": "files-b", "action": "delete" },
            ]),
            json!([{ "key": "NEW_TOKEN" }, { "key": "OLD_TOKEN", "action": "delete" }]),
        ),
        &existing(),
        &[],
        rules(),
    )
    .unwrap();
    assert_eq!(checked.keys_to_delete(), ["OLD_TOKEN"]);
    let merged = merge(existing(), &checked.services).unwrap();
    let names: Vec<&str> = merged.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["github", "files-a"]);
    assert_eq!(merged[0].credential_keys(), ["NEW_TOKEN"]);
    assert!(!merged[1].enabled);
    assert_eq!(
        describe(&checked.services[1]),
        "Switch off the service files-a"
    );

    // A service to switch that was deleted in the meantime stops the approval.
    let without_files_a: Vec<Service> = existing()
        .into_iter()
        .filter(|s| s.name != "files-a")
        .collect();
    assert_eq!(
        merge(without_files_a, &checked.services).unwrap_err(),
        "service files-a no longer exists; reject the proposal"
    );
}
