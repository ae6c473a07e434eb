//! Encryption at rest and durability, checked on the files a real server writes: no
//! credential value or raw token in the database (WAL included), a wrong master password
//! refused, a ciphertext moved to another row refused, and no acknowledged write lost when the
//! server is killed with SIGKILL mid-burst.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{DataDir, MASTER_PASSWORD, Server, agent_vault};

fn database(data: &DataDir) -> PathBuf {
    data.path().join("agent-vault.db")
}

/// Every byte of the database and its WAL and shared-memory files.
fn database_bytes(data: &DataDir) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut path = database(data).into_os_string();
        path.push(suffix);
        if let Ok(content) = std::fs::read(Path::new(&path)) {
            bytes.extend(content);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Register the owner; the login session's token and the device token.
fn register(server: &Server) -> (String, String) {
    let (status, answer) = server.call(
        "POST",
        "/v1/auth/register",
        None,
        Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
    );
    assert_eq!(status, 201, "{answer}");
    let token = |name: &str| answer[name].as_str().unwrap().to_owned();
    (token("token"), token("device_token"))
}

fn post(server: &Server, path: &str, token: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, answer) = server.call("POST", path, Some(token), Some(&body));
    assert!((200..300).contains(&status), "{path}: {status} {answer}");
    answer
}

#[test]
fn the_database_never_holds_a_credential_value_or_a_raw_token() {
    let data = DataDir::sqlite();
    let server = Server::start(&data);
    let (owner, device) = register(&server);
    let values = [
        "sk_test_canary_51HqLyjWDarjtT1",
        "ghp_canaryZ9x8c7v6b5n4m3",
        "AKIA-canary-secret-value-0042",
    ];
    post(
        &server,
        "/v1/credentials",
        &owner,
        json!({ "credentials": { "STRIPE_KEY": values[0], "GITHUB_TOKEN": values[1], "AWS_SECRET": values[2] } }),
    );
    let agent = post(
        &server,
        "/v1/agents",
        &owner,
        json!({ "name": "canary-bot" }),
    );
    let session = post(
        &server,
        "/v1/sessions",
        &owner,
        json!({ "vault": "default" }),
    );
    let invite = post(
        &server,
        "/v1/users/invites",
        &owner,
        json!({ "email": "friend@example.com" }),
    );
    // A second device signs in and is given its own device token.
    let (status, login) = server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
    );
    assert_eq!(status, 200, "{login}");
    let second_device = login["device_token"].as_str().unwrap().to_owned();
    let tokens = [
        owner.clone(),
        agent["av_agent_token"].as_str().unwrap().to_owned(),
        session["token"].as_str().unwrap().to_owned(),
        invite["token"].as_str().unwrap().to_owned(),
        device.clone(),
        second_device.clone(),
    ];
    // While the server runs (the writes are in the WAL) and after it stops.
    for moment in ["running", "stopped"] {
        if moment == "stopped" {
            stop(&server);
        }
        let bytes = database_bytes(&data);
        assert!(bytes.len() > 10_000, "the database files are there");
        for value in values
            .iter()
            .chain(["owner password", MASTER_PASSWORD].iter())
        {
            assert!(
                !contains(&bytes, value),
                "{moment}: a secret is in the database files"
            );
        }
        for token in &tokens {
            let secret_part = &token[token.len() - 64..];
            assert!(
                !contains(&bytes, secret_part),
                "{moment}: a raw token is in the database files"
            );
        }
        // What is kept of a device token is its SHA-256.
        for device in [&device, &second_device] {
            let hash = hex::encode(Sha256::digest(device.as_bytes()));
            assert!(
                contains(&bytes, &hash),
                "{moment}: the device token's hash is stored"
            );
        }
    }
}

/// Stop the server with SIGTERM and wait until it has exited.
fn stop(server: &Server) {
    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_wrong_master_password_is_refused_with_a_clear_message() {
    let data = DataDir::sqlite();
    drop(Server::start(&data));
    let run = agent_vault(&[
        "server",
        "--port",
        "0",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    // No password at all, not on a terminal.
    let error = run.fails();
    assert!(
        error.contains("protected by a master password, and none was given"),
        "{error}"
    );
    let wrong = crate::support::agent_vault_with_env(
        &[
            "server",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        &[("AGENT_VAULT_MASTER_PASSWORD", "not the password")],
    );
    let error = wrong.fails();
    assert!(error.starts_with("error: wrong master password"), "{error}");
}

#[test]
fn a_ciphertext_moved_to_another_row_does_not_decrypt() {
    let data = DataDir::sqlite();
    let server = Server::start(&data);
    let (owner, _) = register(&server);
    post(
        &server,
        "/v1/credentials",
        &owner,
        json!({ "credentials": { "PROD_KEY": "prod-secret", "DEV_KEY": "dev-secret" } }),
    );
    post(&server, "/v1/vaults", &owner, json!({ "name": "other" }));
    post(
        &server,
        "/v1/credentials",
        &owner,
        json!({ "vault": "other", "credentials": { "PROD_KEY": "other-secret" } }),
    );

    let db = rusqlite::Connection::open(database(&data)).unwrap();
    // Overwrite DEV_KEY's sealed value with PROD_KEY's, and other/PROD_KEY with default/PROD_KEY's.
    db.execute_batch(
        "UPDATE credentials SET nonce = (SELECT nonce FROM credentials c JOIN vaults v ON v.id = c.vault_id WHERE v.name = 'default' AND c.key = 'PROD_KEY'),
                                ciphertext = (SELECT ciphertext FROM credentials c JOIN vaults v ON v.id = c.vault_id WHERE v.name = 'default' AND c.key = 'PROD_KEY')
         WHERE key = 'DEV_KEY' OR (key = 'PROD_KEY' AND vault_id = (SELECT id FROM vaults WHERE name = 'other'));",
    )
    .unwrap();
    drop(db);

    let reveal = |query: &str| {
        server.call(
            "GET",
            &format!("/v1/credentials?reveal=true&{query}"),
            Some(&owner),
            None,
        )
    };
    let (status, answer) = reveal("key=DEV_KEY");
    assert_eq!(status, 500);
    assert_eq!(
        answer["error"],
        "Credential DEV_KEY cannot be decrypted: the credential cannot be decrypted: it was not sealed for this vault and key, or the data is damaged"
    );
    let (status, _) = reveal("vault=other&key=PROD_KEY");
    assert_eq!(
        status, 500,
        "a ciphertext from another vault does not open either"
    );
    let (status, answer) = reveal("key=PROD_KEY");
    assert_eq!(
        (status, answer["credentials"][0]["value"].as_str()),
        (200, Some("prod-secret"))
    );
}

#[test]
fn sigkill_during_a_burst_of_writes_loses_no_acknowledged_write() {
    let data = DataDir::sqlite();
    let owner = {
        let server = Server::start_with(&data, &["--passwordless"], &[]);
        register(&server).0
    };
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..50u64 {
        let server = Server::start_with(&data, &[], &[]);
        let address = server.address.clone();
        let token = owner.clone();
        let writer = std::thread::spawn(move || {
            let mut done = Vec::new();
            for n in 0.. {
                let key = format!("ROUND_{round}_KEY_{n}");
                let body = json!({ "credentials": { key.clone(): format!("value-{round}-{n}") } });
                match crate::support::try_call(
                    &address,
                    "POST",
                    "/v1/credentials",
                    Some(&token),
                    Some(&body),
                ) {
                    Some((200, _)) => done.push(key),
                    _ => break,
                }
            }
            done
        });
        // Kill at a different point of the burst each round.
        std::thread::sleep(Duration::from_millis(40 + (round * 37) % 200));
        let pid = server.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        acknowledged.extend(writer.join().unwrap());
        drop(server);

        let db = rusqlite::Connection::open(database(&data)).unwrap();
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let mut statement = db.prepare("SELECT key FROM credentials").unwrap();
        let stored: std::collections::HashSet<String> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|key| !stored.contains(*key))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );
    }
    assert!(
        acknowledged.len() >= 50,
        "the bursts wrote something: {}",
        acknowledged.len()
    );
}

#[test]
fn a_master_password_change_killed_at_any_point_leaves_exactly_one_password_working() {
    use agent_vault::master_key as master;
    use agent_vault::store::sqlite::SqliteStore;

    let data = DataDir::sqlite();
    drop(Server::start(&data));
    let passwords = [MASTER_PASSWORD, "the second master password"];
    let works = |password: &str| {
        let store = SqliteStore::open(&database(&data)).unwrap();
        master::unlock(&store, Some(password)).is_ok()
    };
    let mut current = 0;
    let (mut changed, mut unchanged) = (0, 0);
    // A change takes about half a second (two Argon2id derivations); kill it anywhere from
    // before it starts to after it finished.
    for round in 0..12u64 {
        let target = 1 - current;
        let mut child = std::process::Command::new(crate::support::binary())
            .args([
                "master-password",
                "change",
                "--password-stdin",
                "--data-dir",
            ])
            .arg(data.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            let stdin = child.stdin.as_mut().unwrap();
            let _ = writeln!(stdin, "{}\n{}", passwords[current], passwords[target]);
        }
        // The first round is killed at once (nothing written yet), the last one finishes.
        if round < 11 {
            std::thread::sleep(Duration::from_millis(round * 70));
            let _ = child.kill();
        }
        let _ = child.wait();
        let (old, new) = (works(passwords[current]), works(passwords[target]));
        assert!(
            old != new,
            "round {round}: old works {old}, new works {new}"
        );
        if new {
            current = target;
            changed += 1;
        } else {
            unchanged += 1;
        }
    }
    assert!(
        changed > 0 && unchanged > 0,
        "kills landed before and after the write: {changed} changed, {unchanged} not"
    );
}
