//! `GET /v1/plugins` and `POST /v1/plugins/test` over HTTP: what a person sees of the loaded
//! plugins and the plugin directory's errors, and a dry run with made-up credential values,
//! which the answer never shows. Who may call each is in `api_permissions.rs`.

use serde_json::{Value, json};

use crate::support::{DataDir, Server, built_wasm};

/// A made-up token, as a person types it in the dry-run form.
const MADE_UP: &str = "sk_made_up_5c1f9a";

/// A server whose plugin directory holds the trapping fixture and a file that is not a
/// plugin, and its owner's token.
fn start() -> (Server, String, DataDir) {
    let data = DataDir::new();
    std::fs::copy(
        built_wasm("fixture_trap"),
        data.plugin_dir().join("fixture-trap.wasm"),
    )
    .unwrap();
    std::fs::write(data.plugin_dir().join("broken.wasm"), b"not a component").unwrap();
    let server = Server::start(&data);
    let (status, answer) = server.call(
        "POST",
        "/v1/auth/register",
        None,
        Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
    );
    assert_eq!(status, 201, "{answer}");
    let token = answer["token"].as_str().unwrap().to_owned();
    (server, token, data)
}

fn dry_run(server: &Server, token: &str, body: Value) -> (u16, Value) {
    server.call("POST", "/v1/plugins/test", Some(token), Some(&body))
}

#[test]
fn the_plugin_list_describes_each_plugin_and_the_directory_errors() {
    let (server, token, data) = start();
    let (status, answer) = server.call("GET", "/v1/plugins", Some(&token), None);
    assert_eq!(status, 200, "{answer}");
    let plugins = answer["plugins"].as_array().unwrap();
    let bearer = plugins
        .iter()
        .find(|plugin| plugin["name"] == "bearer")
        .unwrap();
    let sha256 = bearer["sha256"].as_str().unwrap();
    assert!(
        sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sha256}"
    );
    assert_eq!(
        *bearer,
        json!({
            "name": "bearer",
            "version": bearer["version"],
            "sha256": sha256,
            "origin": "builtin",
            "description": "Sends the token as `Authorization: Bearer <token>`.",
            "config": [],
            "slots": [{ "name": "token", "required": true, "description": "the API token" }],
            "body": "none",
        })
    );
    let aws = plugins
        .iter()
        .find(|plugin| plugin["name"] == "aws-sigv4")
        .unwrap();
    assert_eq!(aws["body"], "sha256");
    let trap = plugins
        .iter()
        .find(|plugin| plugin["name"] == "fixture-trap")
        .unwrap();
    assert_eq!(trap["origin"], "file");
    assert_eq!(trap["description"], "Executes unreachable in authorize.");

    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{answer}");
    assert_eq!(errors[0]["file"], "broken.wasm");
    let error = errors[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("broken.wasm: ")
            && error.ends_with("; no plugin of that name serves from it"),
        "{error}"
    );
    // The member reading it learns the file's name, not where the server keeps its data.
    let data_dir = data.path().display().to_string();
    assert!(!answer.to_string().contains(&data_dir), "{answer}");
}

#[test]
fn a_dry_run_shows_the_outgoing_request_with_the_made_up_value_masked() {
    let (server, token, _data) = start();
    let (status, answer) = dry_run(
        &server,
        &token,
        json!({
            "plugin": "bearer",
            "method": "post",
            "url": "https://api.example.com/v1/items?limit=3",
            "headers": ["Accept: application/json"],
            "body": "{}",
            "credentials": { "token": MADE_UP },
        }),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "outcome": "forward",
            "request": {
                "line": "POST https://api.example.com/v1/items?limit=3",
                "headers": [
                    { "name": "host", "value": "api.example.com" },
                    { "name": "accept", "value": "application/json" },
                    { "name": "authorization", "value": "****" },
                ],
            },
        })
    );

    // In the query too, and in the config the person typed.
    let (status, answer) = dry_run(
        &server,
        &token,
        json!({
            "plugin": "query-param",
            "url": "https://maps.example.com/geo?q=x",
            "config": { "name": "key" },
            "credentials": { "key": MADE_UP },
        }),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["request"]["line"],
        "GET https://maps.example.com/geo?q=x&key=****"
    );
    assert!(!answer.to_string().contains(MADE_UP), "{answer}");
    let log = server.log_so_far().join("\n");
    assert!(!log.contains(MADE_UP), "{log}");
}

#[test]
fn a_dry_run_says_what_the_plugin_refused_or_what_is_wrong_with_the_input() {
    let (server, token, _data) = start();
    let (status, answer) = dry_run(
        &server,
        &token,
        json!({ "plugin": "bearer", "url": "https://api.example.com/" }),
    );
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (
            400,
            "the credentials do not match the plugin's slots: credential slot \"token\" is \
             required but not bound to a credential"
        )
    );
    let (status, answer) = dry_run(
        &server,
        &token,
        json!({ "plugin": "bearr", "url": "https://api.example.com/" }),
    );
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (404, "no plugin named \"bearr\" is loaded")
    );
    let (status, answer) = dry_run(
        &server,
        &token,
        json!({ "plugin": "passthrough", "url": "https://api.example.com/", "headers": ["Accept"] }),
    );
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (400, "header \"Accept\" must look like `Name: value`")
    );
    // A body with a credential value that does not fit is refused without quoting it.
    let (status, answer) = server.call(
        "POST",
        "/v1/plugins/test",
        Some(&token),
        Some(&json!({ "plugin": "bearer", "url": "https://api.example.com/", "credentials": { "token": [MADE_UP] } })),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(!answer.to_string().contains(MADE_UP), "{answer}");
}

#[test]
fn a_dry_run_over_a_size_limit_is_refused() {
    let (server, token, _data) = start();
    let long = "a".repeat(64 * 1024 + 1);
    let cases = [
        (
            json!({ "plugin": "passthrough", "url": "https://api.example.com/", "body": long }),
            "the body is larger than 65536 bytes",
        ),
        (
            json!({ "plugin": "passthrough", "url": format!("https://api.example.com/{}", "a".repeat(8 * 1024)) }),
            "the URL is larger than 8192 bytes",
        ),
        (
            json!({ "plugin": "bearer", "url": "https://api.example.com/", "credentials": { "token": "s".repeat(8 * 1024 + 1) } }),
            "a credential is larger than 8192 bytes",
        ),
        (
            json!({ "plugin": "passthrough", "url": "https://api.example.com/", "headers": vec!["X-A: b"; 65] }),
            "a dry run takes at most 64 headers",
        ),
    ];
    for (body, message) in cases {
        let (status, answer) = dry_run(&server, &token, body);
        assert_eq!((status, answer["error"].as_str().unwrap()), (413, message));
    }
}

#[test]
fn a_trapping_plugin_is_a_clear_error() {
    let (server, token, _data) = start();
    let (status, answer) = dry_run(
        &server,
        &token,
        json!({ "plugin": "fixture-trap", "url": "https://api.example.com/" }),
    );
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["code"], "plugin_error");
    assert_eq!(
        answer["error"],
        "plugin fixture-trap trapped: executed `unreachable` (a panic or abort in the plugin)"
    );
    // The server still serves dry runs afterwards.
    let (status, _) = dry_run(
        &server,
        &token,
        json!({ "plugin": "passthrough", "url": "https://api.example.com/" }),
    );
    assert_eq!(status, 200);
}

#[test]
fn a_plugin_file_that_breaks_is_listed_as_an_error_while_its_previous_version_serves() {
    let (server, token, data) = start();
    std::fs::write(
        data.plugin_dir().join("fixture-trap.wasm"),
        b"a broken upload",
    )
    .unwrap();
    // The server rescans the directory twice a second; wait (bounded) for it to see the file.
    let mut answer = Value::Null;
    for _ in 0..200 {
        let (status, listed) = server.call("GET", "/v1/plugins", Some(&token), None);
        assert_eq!(status, 200, "{listed}");
        answer = listed;
        if answer["errors"].as_array().unwrap().len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let errors = answer["errors"].as_array().unwrap();
    let trap = errors
        .iter()
        .find(|error| error["file"] == "fixture-trap.wasm")
        .unwrap_or_else(|| panic!("{answer}"));
    let error = trap["error"].as_str().unwrap();
    assert!(
        error.starts_with("fixture-trap.wasm: ")
            && error.ends_with("; the previous version of fixture-trap still serves"),
        "{error}"
    );
    let plugins = answer["plugins"].as_array().unwrap();
    assert!(
        plugins
            .iter()
            .any(|plugin| plugin["name"] == "fixture-trap" && plugin["origin"] == "file"),
        "{answer}"
    );
}
