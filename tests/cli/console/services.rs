//! A vault's services page: a person adds a bearer service and a plugin service (the
//! built-in `hmac`) through the form, the vault holds exactly what the form said, and an
//! agent's request through each reaches a recording upstream with the credential attached;
//! then edits, switches off and removes one. The API's validation messages show beside the
//! form with what was typed kept (and escaped); a member, who may not change services,
//! posts every form anyway and the vault is unchanged.

use serde_json::{Value, json};

use super::Web;
use super::credentials::{OWNER, OWNER_PASSWORD, colleague};
use crate::proxy::Proxy;

fn services(proxy: &Proxy) -> Value {
    proxy.api("GET", "/v1/vaults/default/services", json!({}))["services"].clone()
}

#[test]
fn a_person_adds_a_bearer_service_and_an_agent_uses_it() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "UPSTREAM_KEY": "upstream-secret-value" }));
    let mut web = Web::sign_in(&proxy.server, OWNER, OWNER_PASSWORD);

    let empty = web.get("/vaults/default/services");
    assert!(empty.shows("No service yet."), "{}", empty.text());
    let form = web.get("/vaults/default/services/new");
    assert_eq!(form.status, 200, "{}", form.text());
    let added = web.submit(
        "/vaults/default/services",
        &[
            ("name", "upstream"),
            ("host", "api.test.example"),
            ("enabled", "1"),
            ("auth_type", "bearer"),
            ("bearer_token", "UPSTREAM_KEY"),
            // Another type's fields, filled in and then left: not sent.
            ("api_key", "OTHER_KEY"),
            ("allow", "GET /v1/*\n\nPOST,PUT /v1/uploads /v1/files*"),
            ("redact_echo", "1"),
        ],
    );
    assert_eq!(added.status, 200, "{}", added.text());
    assert!(added.shows("Service upstream added."), "{}", added.text());
    assert!(
        added.shows("upstream api.test.example bearer · UPSTREAM_KEY GET /v1/* POST,PUT /v1/uploads /v1/files*"),
        "{}",
        added.text()
    );
    assert_eq!(
        services(&proxy),
        json!([{
            "name": "upstream",
            "host": "api.test.example",
            "enabled": true,
            "auth": { "type": "bearer", "token": "UPSTREAM_KEY" },
            "allow": [
                { "methods": ["GET"], "paths": ["/v1/*"] },
                { "methods": ["POST", "PUT"], "paths": ["/v1/uploads", "/v1/files*"] },
            ],
        }])
    );

    let answer = proxy.call("GET", "api.test.example", "/v1/charges", &[]);
    assert_eq!(answer.status, 200);
    assert_eq!(
        proxy.upstream.last().header("authorization"),
        vec!["Bearer upstream-secret-value"]
    );
    // The allow rules the form wrote hold: a DELETE matches none.
    let refused = proxy.call("DELETE", "api.test.example", "/v1/charges", &[]);
    assert_eq!(refused.status, 403);

    // Switched off, then removed (after its confirmation).
    let off = web.submit(
        "/vaults/default/services/upstream/enabled",
        &[("enabled", "false")],
    );
    assert!(off.shows("Service upstream is off."), "{}", off.text());
    assert!(off.shows("upstream off"), "{}", off.text());
    assert_eq!(services(&proxy)[0]["enabled"], json!(false));
    let list = web.get("/vaults/default/services");
    assert!(
        list.shows(
            "Agents' requests to api.test.example no longer get a credential from upstream."
        ),
        "{}",
        list.text()
    );
    let removed = web.submit("/vaults/default/services/upstream/delete", &[]);
    assert!(
        removed.shows("Service upstream removed."),
        "{}",
        removed.text()
    );
    assert!(removed.shows("No service yet."), "{}", removed.text());
    assert_eq!(services(&proxy), json!([]));
}

#[test]
fn a_person_adds_and_edits_a_plugin_service_and_an_agent_uses_it() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "SIGNING_SECRET": "hmac-secret-value", "KEY_ID": "key-7" }));
    let mut web = Web::sign_in(&proxy.server, OWNER, OWNER_PASSWORD);

    web.get("/vaults/default/services/new");
    let added = web.submit(
        "/vaults/default/services",
        &[
            ("name", "signed"),
            ("host", "api.test.example"),
            ("enabled", "1"),
            ("auth_type", "plugin"),
            ("plugin", "hmac"),
            (
                "plugin_config",
                "signature-header = x-signature\nkey-id-header=x-key-id",
            ),
            ("plugin_slots", "secret=SIGNING_SECRET\nkey_id=KEY_ID"),
            ("substitutions", "KEY_ID __key_id__ path,query"),
            ("redact_echo", "1"),
            ("compressed_pass", "1"),
        ],
    );
    assert!(added.shows("Service signed added."), "{}", added.text());
    assert!(
        added.shows("signed placeholders compressed answers pass"),
        "{}",
        added.text()
    );
    assert_eq!(
        services(&proxy),
        json!([{
            "name": "signed",
            "host": "api.test.example",
            "enabled": true,
            "auth": {
                "type": "plugin",
                "plugin": "hmac",
                "config": { "key-id-header": "x-key-id", "signature-header": "x-signature" },
                "credentials": { "key_id": "KEY_ID", "secret": "SIGNING_SECRET" },
            },
            "substitutions": [
                { "key": "KEY_ID", "placeholder": "__key_id__", "in": ["path", "query"] },
            ],
            "compressed_responses": "pass",
        }])
    );
    let answer = proxy.call("GET", "api.test.example", "/v1/keys/__key_id__", &[]);
    assert_eq!(answer.status, 200);
    let received = proxy.upstream.last();
    assert_eq!(received.target, "/v1/keys/key-7");
    assert_eq!(received.header("x-key-id"), vec!["key-7"]);
    let signature = received.header("x-signature");
    assert!(
        signature.len() == 1
            && signature[0].len() == 64
            && signature[0].bytes().all(|b| b.is_ascii_hexdigit()),
        "{signature:?}"
    );

    // The edit form holds the service as stored; changing it changes just that.
    let edit = web.get("/vaults/default/services/signed/edit");
    assert_eq!(edit.status, 200, "{}", edit.text());
    for shown in [
        r#"value="api.test.example""#,
        "signature-header=x-signature\nkey-id-header=x-key-id</textarea>",
        "secret=SIGNING_SECRET\nkey_id=KEY_ID</textarea>",
        "KEY_ID __key_id__ path,query</textarea>",
        r#"<option value="plugin" selected>"#,
    ] {
        assert!(edit.body.contains(shown), "{shown}: {}", edit.body);
    }
    let saved = web.submit(
        "/vaults/default/services",
        &[
            ("editing", "1"),
            ("name", "signed"),
            ("host", "api.test.example:443/v1/*"),
            ("enabled", "1"),
            ("auth_type", "plugin"),
            ("plugin", "hmac"),
            ("plugin_config", "signature-header=x-sig\nencoding=base64"),
            ("plugin_slots", "secret=SIGNING_SECRET"),
            ("allow", "* /v1/*"),
            ("allow_plaintext", "1"),
        ],
    );
    assert!(saved.shows("Service signed saved."), "{}", saved.text());
    assert!(
        saved.shows("signed echoes not redacted plain HTTP allowed api.test.example:443/v1/* plugin · hmac * /v1/*"),
        "{}",
        saved.text()
    );
    assert_eq!(
        services(&proxy),
        json!([{
            "name": "signed",
            "host": "api.test.example:443/v1/*",
            "enabled": true,
            "auth": {
                "type": "plugin",
                "plugin": "hmac",
                "config": { "encoding": "base64", "signature-header": "x-sig" },
                "credentials": { "secret": "SIGNING_SECRET" },
            },
            "allow": [{ "methods": ["*"], "paths": ["/v1/*"] }],
            "redact_echo": false,
            "allow_plaintext": true,
        }])
    );
}

#[test]
fn the_apis_refusal_shows_beside_the_form_with_what_was_typed_escaped() {
    let proxy = Proxy::start();
    let mut web = Web::sign_in(&proxy.server, OWNER, OWNER_PASSWORD);
    web.get("/vaults/default/services/new");
    let script = "<script>alert(1)</script>";
    let refused = web.submit(
        "/vaults/default/services",
        &[
            ("name", "evil"),
            ("host", script),
            ("auth_type", "custom"),
            (
                "custom_headers",
                "X-Token: {{ TOKEN }} <img src=x onerror=alert(2)>",
            ),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.shows("Invalid services: service 0:"),
        "{}",
        refused.text()
    );
    assert!(!refused.body.contains("<script>alert"), "{}", refused.body);
    assert!(!refused.body.contains("<img"), "{}", refused.body);
    assert!(
        refused
            .body
            .contains(r#"value="&#60;script&#62;alert(1)&#60;/script&#62;""#),
        "{}",
        refused.body
    );
    assert!(
        refused
            .body
            .contains("X-Token: {{ TOKEN }} &#60;img src=x onerror=alert(2)&#62;</textarea>"),
        "{}",
        refused.body
    );

    // A list line the form cannot read: what to fix, nothing sent.
    let unreadable = web.submit(
        "/vaults/default/services",
        &[
            ("name", "broken"),
            ("host", "api.test.example"),
            ("auth_type", "plugin"),
            ("plugin", "hmac"),
            ("plugin_slots", "SIGNING_SECRET"),
        ],
    );
    assert_eq!(unreadable.status, 400, "{}", unreadable.text());
    assert!(
        unreadable.shows(r#"Credential slots: "SIGNING_SECRET" should be a name, '=' and a value"#),
        "{}",
        unreadable.text()
    );
    assert!(unreadable.body.contains(r#"value="broken""#));

    // Text that the API accepts but an agent chose (a plugin's configuration) is escaped on
    // the list and the edit form.
    proxy.credentials(json!({ "SIGNING_SECRET": "hmac-secret-value" }));
    proxy.services(json!([{
        "name": "tricky",
        "host": "api.test.example",
        "auth": { "type": "plugin", "plugin": "hmac",
                  "config": { "signature-prefix": script },
                  "credentials": { "secret": "SIGNING_SECRET" } },
    }]));
    for path in [
        "/vaults/default/services",
        "/vaults/default/services/tricky/edit",
    ] {
        let page = web.get(path);
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
    }
}

#[test]
fn a_member_cannot_change_services_and_the_vault_is_unchanged() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "UPSTREAM_KEY": "upstream-secret-value" }));
    let kept = json!([{
        "name": "upstream",
        "host": "api.test.example",
        "enabled": true,
        "auth": { "type": "bearer", "token": "UPSTREAM_KEY" },
    }]);
    proxy.services(kept.clone());
    let mut member = colleague(
        &proxy.server,
        &proxy.owner,
        "member@example.com",
        Some(("default", "member")),
    );

    let list = member.get("/vaults/default/services");
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(list.shows("upstream api.test.example"), "{}", list.text());
    assert!(
        !list.shows("Add a service") && !list.shows("Remove"),
        "{}",
        list.text()
    );
    let service = [
        ("name", "upstream"),
        ("host", "api.test.example"),
        ("enabled", "1"),
        ("auth_type", "passthrough"),
    ];
    let posts: [(&str, &[(&str, &str)]); 4] = [
        ("/vaults/default/services", &service),
        (
            "/vaults/default/services",
            &[
                ("name", "extra"),
                ("host", "other.test.example"),
                ("auth_type", "passthrough"),
            ],
        ),
        (
            "/vaults/default/services/upstream/enabled",
            &[("enabled", "false")],
        ),
        ("/vaults/default/services/upstream/delete", &[]),
    ];
    for (path, fields) in posts {
        let refused = member.submit(path, fields);
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert!(
            refused.shows("Admin role required"),
            "{path}: {}",
            refused.text()
        );
    }

    // The owner's forms without the page's token do nothing either.
    let mut owner = Web::sign_in(&proxy.server, OWNER, OWNER_PASSWORD);
    owner.get("/vaults/default/services");
    for path in [
        "/vaults/default/services/upstream/delete",
        "/vaults/default/services/upstream/enabled",
    ] {
        let forged = owner.post_plain(path, &[("csrf", "forged")]);
        assert_eq!(forged.status, 403, "{}", forged.text());
        assert!(forged.shows("This form did not come from this console"));
    }
    let forged = owner.post_plain("/vaults/default/services", &service);
    assert_eq!(forged.status, 403, "{}", forged.text());

    assert_eq!(services(&proxy), kept);
    let answer = proxy.call("GET", "api.test.example", "/v1/charges", &[]);
    assert_eq!(answer.status, 200);
}

#[test]
fn every_other_auth_type_added_through_the_form_attaches_its_credential() {
    let proxy = Proxy::start();
    proxy.credentials(json!({
        "JIRA_USER": "ana", "JIRA_TOKEN": "jira-token-value",
        "OPENAI_KEY": "openai-key-value", "ACME_KEY": "acme-key-value",
        "TELEGRAM_TOKEN": "telegram-token-value",
    }));
    let mut web = Web::sign_in(&proxy.server, OWNER, OWNER_PASSWORD);
    let forms: [&[(&str, &str)]; 4] = [
        &[
            ("name", "jira"),
            ("host", "api.test.example/basic/*"),
            ("auth_type", "basic"),
            ("basic_username", "JIRA_USER"),
            ("basic_password", "JIRA_TOKEN"),
        ],
        &[
            ("name", "openai"),
            ("host", "api.test.example/key/*"),
            ("auth_type", "api-key"),
            ("api_key", "OPENAI_KEY"),
            ("api_key_header", "x-api-key"),
            ("api_key_prefix", "Token "),
        ],
        &[
            ("name", "acme"),
            ("host", "api.test.example/custom/*"),
            ("auth_type", "custom"),
            (
                "custom_headers",
                "X-Acme: v1 {{ ACME_KEY }}\r\nX-Client: console",
            ),
        ],
        &[
            ("name", "telegram"),
            ("host", "api.test.example/pass/*"),
            ("auth_type", "passthrough"),
            ("substitutions", "TELEGRAM_TOKEN __telegram_token__ path"),
        ],
    ];
    for fields in forms {
        web.get("/vaults/default/services/new");
        let mut all = fields.to_vec();
        all.extend([("enabled", "1"), ("redact_echo", "1")]);
        let added = web.submit("/vaults/default/services", &all);
        assert!(added.shows("added."), "{}", added.text());
    }
    let held = services(&proxy);
    assert_eq!(
        held,
        json!([
            { "name": "jira", "host": "api.test.example/basic/*", "enabled": true,
              "auth": { "type": "basic", "username": "JIRA_USER", "password": "JIRA_TOKEN" } },
            { "name": "openai", "host": "api.test.example/key/*", "enabled": true,
              "auth": { "type": "api-key", "key": "OPENAI_KEY", "header": "x-api-key",
                        "prefix": "Token " } },
            { "name": "acme", "host": "api.test.example/custom/*", "enabled": true,
              "auth": { "type": "custom",
                        "headers": { "X-Acme": "v1 {{ ACME_KEY }}", "X-Client": "console" } } },
            { "name": "telegram", "host": "api.test.example/pass/*", "enabled": true,
              "auth": { "type": "passthrough" },
              "substitutions": [{ "key": "TELEGRAM_TOKEN", "placeholder": "__telegram_token__",
                                  "in": ["path"] }] },
        ])
    );

    let header = |path: &str, name: &str| {
        let answer = proxy.call("GET", "api.test.example", path, &[]);
        assert_eq!(answer.status, 200, "{path}");
        proxy.upstream.last().header(name).join(",")
    };
    // base64("ana:jira-token-value")
    assert_eq!(
        header("/basic/issues", "authorization"),
        "Basic YW5hOmppcmEtdG9rZW4tdmFsdWU="
    );
    assert_eq!(header("/key/models", "x-api-key"), "Token openai-key-value");
    assert_eq!(header("/custom/things", "x-acme"), "v1 acme-key-value");
    let answer = proxy.call(
        "GET",
        "api.test.example",
        "/pass/bot__telegram_token__/getMe",
        &[],
    );
    assert_eq!(answer.status, 200);
    assert_eq!(
        proxy.upstream.last().target,
        "/pass/bottelegram-token-value/getMe"
    );

    // Each edit form shows the service as stored: saved unchanged, it stays the same.
    for (name, fields) in ["jira", "openai", "acme", "telegram"].iter().zip(forms) {
        let edit = web.get(&format!("/vaults/default/services/{name}/edit"));
        assert_eq!(edit.status, 200, "{}", edit.text());
        for (field, value) in fields.iter().filter(|(field, _)| *field != "name") {
            let shown = match *field {
                "auth_type" => format!(r#"<option value="{value}" selected>"#),
                "custom_headers" => {
                    "X-Acme: v1 {{ ACME_KEY }}\nX-Client: console</textarea>".to_owned()
                }
                "substitutions" | "allow" => format!("{value}</textarea>"),
                _ => format!(r#"value="{value}""#),
            };
            assert!(edit.body.contains(&shown), "{name} {shown}: {}", edit.body);
        }
        let mut again = fields.to_vec();
        again.extend([("editing", "1"), ("enabled", "1"), ("redact_echo", "1")]);
        let saved = web.submit("/vaults/default/services", &again);
        assert!(
            saved.shows(&format!("Service {name} saved.")),
            "{}",
            saved.text()
        );
    }
    assert_eq!(services(&proxy), held);
}
