//! The request log as `GET /v1/vaults/{name}/logs` serves it: newest first, paged with id
//! cursors, and only the vault's own entries. (The proxy writes the entries; here they are
//! written straight into the database of a stopped server, as the proxy would.)

use serde_json::json;

use crate::support::{DataDir, Server};

fn insert_entries(data: &DataDir, vault: &str, count: usize) {
    let db = rusqlite::Connection::open(data.path().join("agent-vault.db")).unwrap();
    let vault_id: String = db
        .query_row("SELECT id FROM vaults WHERE name = ?1", [vault], |row| {
            row.get(0)
        })
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for n in 0..count {
        db.execute(
            "INSERT INTO request_logs (vault_id, ingress, method, host, path, matched_service, credential_keys, status, latency_ms, error_code, created_at)
             VALUES (?1, 'explicit', 'GET', 'api.stripe.com', ?2, 'stripe', '[\"STRIPE_KEY\"]', 200, 12, NULL, ?3)",
            rusqlite::params![vault_id, format!("/v1/charges/{n}"), now],
        )
        .unwrap();
    }
}

#[test]
fn the_request_log_pages_newest_first_with_cursors() {
    let data = DataDir::new();
    let owner = {
        let server = Server::start(&data);
        let (status, answer) = server.call(
            "POST",
            "/v1/auth/register",
            None,
            Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
        );
        assert_eq!(status, 201);
        let token = answer["token"].as_str().unwrap().to_owned();
        let (status, _) = server.call(
            "POST",
            "/v1/vaults",
            Some(&token),
            Some(&json!({ "name": "other" })),
        );
        assert_eq!(status, 201);
        token
    };
    insert_entries(&data, "default", 120);
    insert_entries(&data, "other", 5);
    let server = Server::start(&data);
    let page = |query: &str| {
        let (status, answer) = server.call(
            "GET",
            &format!("/v1/vaults/default/logs{query}"),
            Some(&owner),
            None,
        );
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let paths = |answer: &serde_json::Value| -> Vec<String> {
        answer["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect()
    };

    let first = page("");
    assert_eq!(paths(&first).len(), 50);
    assert_eq!(paths(&first)[0], "/v1/charges/119", "newest first");
    assert_eq!(first["logs"][0]["credential_keys"], json!(["STRIPE_KEY"]));
    assert_eq!(first["logs"][0]["matched_service"], "stripe");
    let cursor = first["next_cursor"].as_i64().unwrap();
    let second = page(&format!("?before={cursor}"));
    assert_eq!(paths(&second)[0], "/v1/charges/69");
    let last = page(&format!(
        "?before={}&limit=200",
        second["next_cursor"].as_i64().unwrap()
    ));
    assert_eq!(paths(&last).len(), 20);
    assert_eq!(
        last["next_cursor"],
        serde_json::Value::Null,
        "no more pages"
    );
    let newer = page(&format!(
        "?after={}&limit=5",
        first["latest_id"].as_i64().unwrap() - 3
    ));
    assert_eq!(
        paths(&newer),
        ["/v1/charges/119", "/v1/charges/118", "/v1/charges/117"]
    );

    let (status, answer) = server.call(
        "GET",
        "/v1/vaults/default/logs?before=1&after=2",
        Some(&owner),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("before and after cannot be used together"))
    );
    let (status, answer) = server.call(
        "GET",
        "/v1/vaults/default/logs?limit=500",
        Some(&owner),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("limit must be 1 to 200"))
    );
}
