//! Agent invites, played the way they are used: the operator runs `agent-vault agent invite`,
//! pastes the prompt into an agent's chat, and the agent, with nothing but an HTTP client,
//! redeems the link, discovers its services and calls an API through the proxy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::proxy::{Proxy, send_raw};
use crate::store_rows::Rows;
use crate::support::{DataDir, Run, agent_vault_with_env};

/// `agent-vault ARGS` as the owner of `proxy`'s server.
fn operator(proxy: &Proxy, args: &[&str]) -> Run {
    agent_vault_with_env(
        args,
        &[
            ("AGENT_VAULT_TOKEN", &proxy.owner),
            ("AGENT_VAULT_ADDR", &proxy.server.url()),
        ],
    )
}

/// The one-time link in a pasted prompt: the URL after `curl -s -X POST`.
fn link_in(prompt: &str) -> String {
    let line = prompt
        .lines()
        .find(|line| line.contains("curl -s -X POST "))
        .unwrap_or_else(|| panic!("no request in the prompt:\n{prompt}"));
    line.trim()
        .strip_prefix("curl -s -X POST ")
        .unwrap()
        .to_owned()
}

/// The path of a link on the test server.
fn path_of(proxy: &Proxy, link: &str) -> String {
    link.strip_prefix(&proxy.server.url())
        .unwrap_or_else(|| panic!("{link} is not on {}", proxy.server.url()))
        .to_owned()
}

/// What an agent does with the link: POST to it, with no credentials at all.
fn redeem(proxy: &Proxy, link: &str) -> (u16, Value) {
    proxy.server.call("POST", &path_of(proxy, link), None, None)
}

/// Invite through the API as the owner; the redeem link.
fn invite(proxy: &Proxy, body: Value) -> String {
    let created = proxy.api("POST", "/v1/agents/invites", body);
    created["invite_url"].as_str().unwrap().to_owned()
}

#[test]
fn an_invited_agent_connects_itself_and_its_requests_carry_the_credential() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": "sk_test_invited_agent_01" }));
    proxy.services(json!([
        { "name": "items", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } }
    ]));

    let invited = operator(&proxy, &["agent", "invite", "ci-bot", "--vault", "default"]);
    let prompt = invited.ok();
    assert!(
        invited.stderr().contains("Invited agent ci-bot"),
        "{}",
        invited.stderr()
    );
    assert!(prompt.contains("agent-vault"), "{prompt}");
    let link = link_in(&prompt);
    assert!(link.contains("/v1/invites/av_inv_"), "{link}");

    let listed = operator(&proxy, &["agent", "list"]).ok();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("ci-bot") && l.contains("pending")),
        "{listed}"
    );

    let (status, answer) = redeem(&proxy, &link);
    assert_eq!(status, 201, "{answer}");
    let token = answer["av_agent_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("av_agt_"), "{answer}");
    assert_eq!(answer["agent_name"], "ci-bot");
    assert_eq!(
        answer["vaults"],
        json!([{ "vault_name": "default", "vault_role": "proxy" }])
    );
    assert_eq!(answer["av_addr"], proxy.server.url());
    let instructions = answer["instructions"].as_str().unwrap();
    assert!(
        instructions.contains(&format!("AGENT_VAULT_ADDR={}", proxy.server.url())),
        "{instructions}"
    );
    for needle in ["X-Vault", "/discover", "/proxy/", "proposal_hint"] {
        assert!(instructions.contains(needle), "{needle} missing");
    }

    let auth = format!("Bearer {token}");
    let agent = [("authorization", auth.as_str()), ("x-vault", "default")];
    let discovered = send_raw(&proxy.server.address, "GET", "/discover", &agent, b"");
    assert_eq!(discovered.status, 200, "{discovered:?}");
    assert_eq!(
        discovered.json(),
        json!({
            "vault": "default",
            "services": [{ "name": "items", "host": "api.test.example", "any_port": true }],
            "available_credentials": ["API_TOKEN"],
        })
    );

    let target = proxy.target("api.test.example", "/v1/items");
    let answer = send_raw(&proxy.server.address, "GET", &target, &agent, b"");
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = proxy.upstream.last();
    assert_eq!(
        received.header("authorization"),
        ["Bearer sk_test_invited_agent_01"]
    );
    assert!(
        received.headers.iter().all(|(_, v)| !v.contains(&token)),
        "the agent's token reached the upstream"
    );

    let listed = operator(&proxy, &["agent", "list"]).ok();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("ci-bot") && l.contains("active")),
        "{listed}"
    );
    let invites = operator(&proxy, &["agent", "invite", "list"]).ok();
    assert!(invites.contains("redeemed"), "{invites}");
}

#[test]
fn an_invite_works_once() {
    let proxy = Proxy::start();
    let link = invite(
        &proxy,
        json!({ "name": "once-bot", "vaults": [{ "vault_name": "default" }] }),
    );
    let (status, first) = redeem(&proxy, &link);
    assert_eq!(status, 201, "{first}");
    let (status, second) = redeem(&proxy, &link);
    assert_eq!(status, 410, "{second}");
    assert_eq!(
        second["error"],
        "This invite was already used; ask the person who invited you for a new one"
    );
    assert!(second.get("av_agent_token").is_none());
    // The first redemption's token is the agent's, and still works.
    let token = first["av_agent_token"].as_str().unwrap();
    let (status, me) = proxy.server.call("GET", "/v1/auth/me", Some(token), None);
    assert_eq!(status, 200, "{me}");
}

#[test]
fn an_expired_invite_is_gone() {
    let proxy = Proxy::start();
    let link = invite(&proxy, json!({ "name": "late-bot", "ttl_seconds": 300 }));
    // Five minutes are long for a test: move the expiry into the past in the database.
    let changed = Rows::open(&proxy.data).execute(
        "UPDATE agent_invites SET expires_at = expires_at - 301",
        &[],
    );
    assert_eq!(changed, 1);
    let (status, answer) = redeem(&proxy, &link);
    assert_eq!(status, 410, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("has expired"));
    let listed = operator(&proxy, &["agent", "invite", "list", "--status", "expired"]).ok();
    assert!(listed.contains("late-bot"), "{listed}");
    // An expired invite no longer reserves its name.
    proxy.api("POST", "/v1/agents", json!({ "name": "late-bot" }));

    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/agents/invites",
        Some(&proxy.owner),
        Some(&json!({ "name": "quick-bot", "ttl_seconds": 60 })),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("ttl_seconds"));
}

#[test]
fn a_revoked_invite_is_gone() {
    let proxy = Proxy::start();
    let created = proxy.api(
        "POST",
        "/v1/agents/invites",
        json!({ "name": "revoked-bot" }),
    );
    let link = created["invite_url"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    let revoked = operator(&proxy, &["agent", "invite", "revoke", id]).ok();
    assert!(revoked.contains("revoked"), "{revoked}");
    let (status, answer) = redeem(&proxy, link);
    assert_eq!(status, 410, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("was revoked"));
    let again = operator(&proxy, &["agent", "invite", "revoke", id]).fails();
    assert!(again.contains("already revoked"), "{again}");
    let listed = operator(&proxy, &["agent", "list"]).ok();
    assert!(!listed.contains("revoked-bot"), "{listed}");
}

#[test]
fn an_unknown_invite_is_not_found() {
    let proxy = Proxy::start();
    let unknown = format!("/v1/invites/av_inv_{}/redeem", "ab".repeat(32));
    let (status, answer) = proxy.server.call("POST", &unknown, None, None);
    assert_eq!(status, 404, "{answer}");
    let (status, _) = proxy
        .server
        .call("POST", "/v1/invites/not-a-token/redeem", None, None);
    assert_eq!(status, 404);
    // A GET (a link preview, a crawler) never redeems.
    let link = invite(&proxy, json!({ "name": "preview-bot" }));
    let (status, answer) = proxy
        .server
        .call("GET", &path_of(&proxy, &link), None, None);
    assert_eq!(status, 405, "{answer}");
    let (status, answer) = redeem(&proxy, &link);
    assert_eq!(status, 201, "{answer}");
}

#[test]
fn roles_and_vault_grants_are_applied_exactly_as_invited() {
    let proxy = Proxy::start();
    proxy.api("POST", "/v1/vaults", json!({ "name": "team" }));
    proxy.api("POST", "/v1/vaults", json!({ "name": "unrelated" }));
    let link = invite(
        &proxy,
        json!({ "name": "ops-bot", "role": "member",
                "vaults": [{ "vault_name": "default", "vault_role": "member" },
                           { "vault_name": "team" }] }),
    );
    let (status, answer) = redeem(&proxy, &link);
    assert_eq!(status, 201, "{answer}");
    let agent = proxy.api("GET", "/v1/agents/ops-bot", json!({}));
    assert_eq!(agent["role"], "member");
    assert_eq!(agent["status"], "active");
    let mut vaults = agent["vaults"].as_array().unwrap().clone();
    vaults.sort_by_key(|v| v["vault_name"].as_str().unwrap().to_owned());
    assert_eq!(
        vaults,
        [
            json!({ "vault_name": "default", "vault_role": "member" }),
            json!({ "vault_name": "team", "vault_role": "proxy" }),
        ]
    );
    // The agent acts with exactly those rights: a member of default, a proxy of team, nothing in
    // unrelated.
    let token = answer["av_agent_token"].as_str().unwrap();
    let write_to = |vault: &str| {
        let body = json!({ "vault": vault, "credentials": { "NEW_KEY": "v" } });
        proxy
            .server
            .call("POST", "/v1/credentials", Some(token), Some(&body))
            .0
    };
    assert_eq!(write_to("default"), 200);
    assert_eq!(write_to("team"), 403);
    assert_eq!(write_to("unrelated"), 403);

    // A member cannot invite an owner, nor grant a vault they do not administer.
    let member_link = invite(
        &proxy,
        json!({ "name": "helper-bot", "role": "member", "vaults": [{ "vault_name": "default" }] }),
    );
    let (_, member) = redeem(&proxy, &member_link);
    let member_token = member["av_agent_token"].as_str().unwrap();
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/agents/invites",
        Some(member_token),
        Some(&json!({ "name": "boss-bot", "role": "owner" })),
    );
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/agents/invites",
        Some(member_token),
        Some(&json!({ "name": "team-bot", "vaults": [{ "vault_name": "team" }] })),
    );
    assert_eq!(status, 403, "{answer}");
    // The member sees its own invites only, and not the owner's.
    proxy.server.call(
        "POST",
        "/v1/agents/invites",
        Some(member_token),
        Some(&json!({ "name": "own-bot" })),
    );
    let (_, listed) = proxy
        .server
        .call("GET", "/v1/agents/invites", Some(member_token), None);
    let names: Vec<&str> = listed["invites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|invite| invite["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["own-bot"]);
}

#[test]
fn a_pending_invite_reserves_its_name() {
    let proxy = Proxy::start();
    invite(&proxy, json!({ "name": "named-bot" }));
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/agents/invites",
        Some(&proxy.owner),
        Some(&json!({ "name": "named-bot" })),
    );
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("pending invite"));
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/agents",
        Some(&proxy.owner),
        Some(&json!({ "name": "named-bot" })),
    );
    assert_eq!(status, 409, "{answer}");
    proxy.api("POST", "/v1/agents", json!({ "name": "existing-bot" }));
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/agents/invites",
        Some(&proxy.owner),
        Some(&json!({ "name": "existing-bot" })),
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "Agent existing-bot already exists");
    let (status, _) = proxy.server.call(
        "POST",
        "/v1/agents/invites",
        Some(&proxy.owner),
        Some(&json!({ "name": "invites" })),
    );
    assert_eq!(status, 400);
}

#[test]
fn the_invite_token_is_stored_only_hashed() {
    // Checked in the SQLite file's bytes: on SQLite whatever the run's backend.
    let proxy = Proxy::start_in(
        DataDir::sqlite(),
        &[],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    let link = invite(&proxy, json!({ "name": "hashed-bot" }));
    let token = link.rsplit('/').nth(1).unwrap().to_owned();
    assert!(token.starts_with("av_inv_"), "{token}");
    let database = rusqlite::Connection::open(proxy.data.path().join("agent-vault.db")).unwrap();
    let hashes: Vec<String> = database
        .prepare("SELECT hash FROM agent_invites")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(hashes, [hex::encode(Sha256::digest(token.as_bytes()))]);
    drop(database);
    let secret = token.strip_prefix("av_inv_").unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let path = proxy.data.path().join(format!("agent-vault.db{suffix}"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the invite token is in {}",
            path.display()
        );
    }
}

/// A POST from the client address `from` (any 127.0.0.0/8 address reaches loopback); the
/// status and the `Retry-After` header.
fn post_from(from: &str, server: &str, path: &str) -> (u16, Option<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let socket = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("{from}:0").parse::<SocketAddr>().unwrap())
            .unwrap();
        let stream = socket
            .connect(server.parse::<SocketAddr>().unwrap())
            .await
            .unwrap();
        stream.into_std().unwrap()
    });
    socket.set_nonblocking(false).unwrap();
    let mut stream: TcpStream = socket;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {server}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let retry_after = response.lines().find_map(|line| {
        line.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(str::trim)
            .map(str::to_owned)
    });
    (status, retry_after)
}

#[test]
fn redeem_attempts_are_limited_per_client_address() {
    let proxy = Proxy::start();
    let link = invite(&proxy, json!({ "name": "patient-bot" }));
    let server = proxy.server.address.clone();
    let guess = |n: usize| format!("/v1/invites/av_inv_{n:064x}/redeem");
    // 50 attempts per 5 minutes (the default profile), wrong or right.
    for n in 0..50 {
        assert_eq!(
            post_from("127.0.0.2", &server, &guess(n)).0,
            404,
            "attempt {n}"
        );
    }
    let (status, retry_after) = post_from("127.0.0.2", &server, &guess(50));
    assert_eq!(status, 429);
    assert_eq!(retry_after.as_deref(), Some("6"));
    // Even the right link waits, from that address.
    assert_eq!(
        post_from("127.0.0.2", &server, &path_of(&proxy, &link)).0,
        429
    );
    // Another address is not held back by it.
    assert_eq!(
        post_from("127.0.0.3", &server, &path_of(&proxy, &link)).0,
        201
    );
}

#[test]
fn behind_a_trusted_reverse_proxy_attempts_count_per_forwarded_client() {
    // agent-vault behind a reverse proxy on the same host, which appends the address of
    // whoever it talked to to X-Forwarded-For.
    let proxy = Proxy::start_with(&["--trusted-proxies", "127.0.0.0/8"], &[]);
    let guess = |n: usize| format!("/v1/invites/av_inv_{n:064x}/redeem");
    let redeem_as = |forwarded_for: &str, n: usize| {
        send_raw(
            &proxy.server.address,
            "POST",
            &guess(n),
            &[("x-forwarded-for", forwarded_for)],
            b"",
        )
        .status
    };
    for n in 0..50 {
        assert_eq!(redeem_as("203.0.113.7", n), 404, "attempt {n}");
    }
    assert_eq!(redeem_as("203.0.113.7", 50), 429);
    // The client writing the header itself does not make it someone else: what the
    // reverse proxy appended, on the right, is what counts.
    assert_eq!(redeem_as("198.51.100.1, 203.0.113.7", 51), 429);
    // Another client behind the same reverse proxy is not held back.
    assert_eq!(redeem_as("203.0.113.8", 52), 404);

    // Trusting no proxy (the default), the header is ignored: every request comes from
    // the TCP peer, whatever it claims.
    let untrusting = Proxy::start();
    let refused_at = (0..60).find(|&n| {
        send_raw(
            &untrusting.server.address,
            "POST",
            &guess(n),
            &[("x-forwarded-for", &format!("203.0.113.{n}"))],
            b"",
        )
        .status
            == 429
    });
    assert!(
        refused_at.is_some_and(|n| n <= 50),
        "refused at {refused_at:?}"
    );
}

#[test]
fn the_skill_endpoint_serves_the_same_guide_as_a_redeemed_invite() {
    let proxy = Proxy::start();
    let skill = send_raw(&proxy.server.address, "GET", "/v1/skills/cli", &[], b"");
    assert_eq!(skill.status, 200);
    assert_eq!(
        skill.header("content-type"),
        Some("text/markdown; charset=utf-8")
    );
    let link = invite(&proxy, json!({ "name": "reader-bot" }));
    let (_, answer) = redeem(&proxy, &link);
    assert_eq!(
        String::from_utf8(skill.body).unwrap(),
        answer["instructions"].as_str().unwrap()
    );
}
