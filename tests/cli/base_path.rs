//! Serving under a base path (`--base-path /agent-vault`), directly and behind a real nginx
//! (`tests/reverse_proxy/nginx.conf`, the configuration docs/deploy.md shows): the CLI signs
//! in at the public address with the path, an agent reads its instructions and proposes a
//! service, a person follows the approval link with a cookie-keeping client
//! (`tests/reverse_proxy/approve.py`), and the agent's next request reaches the upstream with
//! the credential. Links name nginx's address because nginx, a trusted proxy, says so in
//! `X-Forwarded-Host`; a client that bypasses nginx cannot choose their host, and nothing
//! outside the prefix, however spelled, reaches a route.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proxy::{Answer, send_raw};
use crate::support::{DataDir, MASTER_PASSWORD, Server, agent_vault_with_env, workspace_root};
use crate::upstream::Upstream;

const PREFIX: &str = "/agent-vault";
const OWNER_EMAIL: &str = "owner@example.com";
const OWNER_PASSWORD: &str = "owner password";
/// nginx connects to agent-vault from this address, the one trusted proxy; the tests'
/// own requests come from 127.0.0.1, as a client that bypasses nginx would.
const NGINX_SOURCE: &str = "127.0.0.2";
const NGINX: &str = "/usr/sbin/nginx";

/// A real nginx in front of one agent-vault, stopped when dropped.
struct Nginx {
    child: Child,
    /// `127.0.0.1:PORT`.
    address: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx on a free port of 127.0.0.1, passing `/agent-vault/` to `agent_vault`
    /// (`127.0.0.1:PORT`).
    fn start(agent_vault: &str) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "the base-path tests need nginx at {NGINX}: run ./scripts/test, which installs \
             Debian's nginx"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let config =
            std::fs::read_to_string(workspace_root().join("tests/reverse_proxy/nginx.conf"))
                .unwrap()
                .replace("@DIR@", dir.path().to_str().unwrap())
                .replace("@LISTEN@", &address)
                .replace("@SERVER_NAME@", "127.0.0.1")
                .replace("@AGENT_VAULT@", agent_vault)
                .replace("@PROXY_BIND@", NGINX_SOURCE);
        let config_file = dir.path().join("nginx.conf");
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            child,
            address,
            _dir: dir,
        };
        nginx.wait_until_listening();
        nginx
    }

    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect(&self.address).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self._dir.path().join("error.log"));
                panic!("nginx exited ({status}): {}", log.unwrap_or_default());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nginx is not listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The public address of agent-vault behind it, base path included.
    fn public_url(&self) -> String {
        format!("http://{}{PREFIX}", self.address)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// agent-vault with `--base-path /agent-vault/` (the trailing `/` is dropped) and a
/// recording upstream at `api.test.example`.
struct Prefixed {
    upstream: Upstream,
    server: Server,
    _data: DataDir,
}

impl Prefixed {
    fn start(args: &[&str]) -> Prefixed {
        let upstream = Upstream::start(&["api.test.example"]);
        let pin = format!("api.test.example:{}:127.0.0.1", upstream.port);
        let mut all = vec![
            "--base-path",
            "/agent-vault/",
            "--upstream-ca",
            upstream.ca_file.to_str().unwrap(),
            "--resolve",
            &pin,
        ];
        all.extend_from_slice(args);
        let data = DataDir::new();
        let server = Server::start_with(
            &data,
            &all,
            &[
                ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
                ("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32"),
            ],
        );
        Prefixed {
            upstream,
            server,
            _data: data,
        }
    }

    /// `/agent-vault/proxy/api.test.example:PORT{path}`.
    fn proxy_target(&self, path: &str) -> String {
        format!(
            "{PREFIX}/proxy/api.test.example:{}{path}",
            self.upstream.port
        )
    }

    /// The owner's token and a vault session for the default vault, made directly.
    fn owner_and_session(&self) -> (String, String) {
        let (status, registered) = self.server.call(
            "POST",
            &format!("{PREFIX}/v1/auth/register"),
            None,
            Some(&json!({ "email": OWNER_EMAIL, "password": OWNER_PASSWORD })),
        );
        assert_eq!(status, 201, "{registered}");
        let owner = registered["token"].as_str().unwrap().to_owned();
        let (status, session) = self.server.call(
            "POST",
            &format!("{PREFIX}/v1/sessions"),
            Some(&owner),
            Some(&json!({ "vault": "default" })),
        );
        assert_eq!(status, 200, "{session}");
        (owner, session["token"].as_str().unwrap().to_owned())
    }
}

/// What the agent proposes: the items API and the key it needs.
fn items_proposal() -> Value {
    json!({
        "services": [{ "name": "items", "host": "api.test.example",
                       "auth": { "type": "bearer", "token": "ITEMS_KEY" } }],
        "credentials": [{ "key": "ITEMS_KEY", "description": "The items API key" }],
        "message": "I need the items API",
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A JSON request with a token; the answer.
fn call(
    address: &str,
    method: &str,
    target: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Answer {
    let auth = bearer(token);
    let mut all = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    send_raw(address, method, target, &all, &body)
}

/// A person following `approval_url` in `tests/reverse_proxy/approve.py`; what it saw.
fn follow_approval_link(approval_url: &str, credentials: &Value) -> Value {
    let script: PathBuf = workspace_root().join("tests/reverse_proxy/approve.py");
    let output = Command::new("python3")
        .arg(script)
        .env("APPROVAL_URL", approval_url)
        .env("EMAIL", OWNER_EMAIL)
        .env("PASSWORD", OWNER_PASSWORD)
        .env("CREDENTIALS", credentials.to_string())
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "approve.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn behind_nginx_the_cli_signs_in_an_agent_proposes_and_the_approved_key_reaches_the_upstream() {
    let vault = Prefixed::start(&[
        "--trusted-proxies",
        &format!("{NGINX_SOURCE}/32"),
        "--mitm-port",
        "auto",
    ]);
    let nginx = Nginx::start(&vault.server.address);
    let public = nginx.public_url();

    let health = send_raw(&nginx.address, "GET", "/agent-vault/health", &[], b"");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({ "status": "ok" }))
    );

    // The owner signs up with the CLI at the public address, path included; the CLI keeps
    // that address for the commands after it.
    let cli = DataDir::new();
    let registered = cli
        .command(&[
            "auth",
            "register",
            "--email",
            OWNER_EMAIL,
            "--password-stdin",
        ])
        .env("AGENT_VAULT_ADDR", &public)
        .stdin(&format!("{OWNER_PASSWORD}\n"))
        .run()
        .ok();
    assert_eq!(
        registered,
        "Registered and logged in as owner@example.com (owner).\n"
    );
    let token = cli.run(&["vault", "token"]).ok().trim().to_owned();
    assert!(token.starts_with("av_sess_"), "{token}");
    let status = call(
        &nginx.address,
        "GET",
        "/agent-vault/v1/status",
        &token,
        &[],
        &Value::Null,
    );
    assert_eq!(status.json()["base_url"], json!(public));

    // The agent's instructions name the public address.
    let guide = call(
        &nginx.address,
        "GET",
        "/agent-vault/v1/skills/cli",
        &token,
        &[],
        &Value::Null,
    );
    assert_eq!(guide.status, 200);
    let guide = String::from_utf8(guide.body).unwrap();
    assert!(
        guide.contains(&format!("`AGENT_VAULT_ADDR={public}`: the proxy.")),
        "{guide}"
    );
    assert!(!guide.contains(&vault.server.address), "{guide}");

    // A host no service covers: the refusal points at the public /discover and guide.
    let refused = call(
        &nginx.address,
        "GET",
        &vault.proxy_target("/v1/items"),
        &token,
        &[],
        &Value::Null,
    );
    assert_eq!(refused.proxy_error(), (403, "forbidden".to_owned()));
    assert_eq!(
        refused.json()["help"],
        json!(format!(
            "This request was intercepted by agent-vault. To see available services, GET \
             {public}/discover. For usage instructions including how to create a proposal, \
             GET {public}/v1/skills/cli"
        ))
    );

    // The agent proposes, naming a host of its own in X-Forwarded-Host: nginx replaces it.
    let proposed = call(
        &nginx.address,
        "POST",
        "/agent-vault/v1/proposals",
        &token,
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
        ],
        &items_proposal(),
    );
    assert_eq!(proposed.status, 201, "{:?}", proposed.json());
    let approval_url = proposed.json()["approval_url"].as_str().unwrap().to_owned();
    let link_token = approval_url.rsplit('=').next().unwrap().to_owned();
    assert_eq!(
        approval_url,
        format!("{public}/approve/1?token={link_token}")
    );

    // A person follows the link, logs in and approves, typing the key.
    let seen = follow_approval_link(
        &approval_url,
        &json!({ "ITEMS_KEY": "sk_test_nginx_4c1d9e" }),
    );
    assert_eq!(
        seen,
        json!({
            "actions": [
                "/agent-vault/approve/1/login",
                "/agent-vault/approve/1/approve",
                "/agent-vault/approve/1/reject",
            ],
            "login_status": 303,
            "login_location": format!("/agent-vault/approve/1?token={link_token}"),
            "cookie_paths": ["/agent-vault"],
            "outcome": "Approved",
        })
    );

    // The agent's request, through nginx, reaches the upstream with the key.
    let answer = call(
        &nginx.address,
        "GET",
        &vault.proxy_target("/v1/items?page=2"),
        &token,
        &[],
        &Value::Null,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let received = vault.upstream.last();
    assert_eq!(received.target, "/v1/items?page=2");
    assert_eq!(
        received.header("authorization"),
        ["Bearer sk_test_nginx_4c1d9e"]
    );

    // The CLI in agent mode, through nginx: the proposal, and vault run's environment (the
    // transparent proxy has its own port, and no path).
    let agent_env = [
        ("AGENT_VAULT_TOKEN", token.as_str()),
        ("AGENT_VAULT_ADDR", public.as_str()),
    ];
    let shown = agent_vault_with_env(&["vault", "proposal", "show", "1"], &agent_env).ok();
    assert!(shown.contains("(applied)"), "{shown}");
    let run_dir = cli.path().join("run");
    let environment = agent_vault_with_env(
        &[
            "vault",
            "run",
            "--data-dir",
            run_dir.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "printf '%s\\n' \"$AGENT_VAULT_ADDR\" \"$HTTPS_PROXY\"",
        ],
        &agent_env,
    )
    .ok();
    let transparent = vault.server.transparent.as_deref().unwrap();
    let port = transparent.rsplit(':').next().unwrap();
    assert_eq!(
        environment,
        format!("{public}\nhttp://{token}:default@127.0.0.1:{port}\n")
    );
}

#[test]
fn a_client_that_bypasses_nginx_cannot_choose_the_host_of_links() {
    let vault = Prefixed::start(&["--trusted-proxies", &format!("{NGINX_SOURCE}/32")]);
    let nginx = Nginx::start(&vault.server.address);
    let (_, session) = vault.owner_and_session();
    let own = format!("http://{}{PREFIX}", vault.server.address);

    // Straight to agent-vault, from an address that is not a trusted proxy.
    let forged = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
    ];
    let status = call(
        &vault.server.address,
        "GET",
        "/agent-vault/v1/status",
        &session,
        &forged,
        &Value::Null,
    );
    assert_eq!(status.json()["base_url"], json!(own));
    let proposed = call(
        &vault.server.address,
        "POST",
        "/agent-vault/v1/proposals",
        &session,
        &forged,
        &items_proposal(),
    );
    assert_eq!(proposed.status, 201);
    let approval_url = proposed.json()["approval_url"].as_str().unwrap().to_owned();
    assert!(
        approval_url.starts_with(&format!("{own}/approve/1?token=av_appr_")),
        "{approval_url}"
    );

    // Through nginx under another host name: nginx refuses it, so that name never becomes
    // X-Forwarded-Host.
    let mut stream = TcpStream::connect(&nginx.address).unwrap();
    write!(
        stream,
        "GET /agent-vault/v1/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 421 "), "{answer}");
    // Through nginx as it should be: nginx's own address.
    let status = call(
        &nginx.address,
        "GET",
        "/agent-vault/v1/status",
        &session,
        &forged,
        &Value::Null,
    );
    assert_eq!(status.json()["base_url"], json!(nginx.public_url()));
}

#[test]
fn the_prefix_works_directly_and_nothing_outside_it_reaches_a_route() {
    let vault = Prefixed::start(&[]);
    let (owner, session) = vault.owner_and_session();
    let port = vault.upstream.port;
    let address = vault.server.address.clone();

    for outside in [
        "/health".to_owned(),
        "/v1/status".to_owned(),
        "/discover".to_owned(),
        "/approve/1?token=av_appr_0".to_owned(),
        format!("/proxy/api.test.example:{port}/v1/items"),
        "/agent-vaultX/health".to_owned(),
        "//agent-vault/health".to_owned(),
        "/agent-vault%2Fhealth".to_owned(),
        "/agent-vault%2fv1/status".to_owned(),
        "/Agent-Vault/health".to_owned(),
        "/agent-vault/../health".to_owned(),
        "/agent-vault/%2e%2e/health".to_owned(),
        "/agent-vault/./health".to_owned(),
        "/agent-vault/%2Fhealth".to_owned(),
        format!("/agent-vault/proxy%2Fapi.test.example:{port}/v1/items"),
        format!("/agent-vault/../proxy/api.test.example:{port}/v1/items"),
    ] {
        let answer = call(&address, "GET", &outside, &session, &[], &Value::Null);
        if outside.starts_with("/agent-vault/") {
            // Inside the prefix, a path that is no route is the web console's to refuse.
            assert_eq!(answer.status, 404, "{outside}");
            continue;
        }
        assert_eq!(
            (answer.status, answer.header("content-type"), answer.json()),
            (
                404,
                Some("application/json"),
                json!({ "error": "no such endpoint" })
            ),
            "{outside}"
        );
    }
    // The prefix alone opens the web console, which sends a browser to sign in there.
    for console in ["/agent-vault", "/agent-vault/"] {
        let answer = call(&address, "GET", console, &session, &[], &Value::Null);
        assert_eq!(
            (answer.status, answer.header("location")),
            (303, Some("/agent-vault/login?next=%2Fagent-vault%2F")),
            "{console}"
        );
    }
    // Inside the prefix, paths that would climb out of /proxy/{host} are refused.
    for (climbing, message) in [
        (
            "/agent-vault/proxy/../v1/status".to_owned(),
            "invalid target host \"..\": use /proxy/api.example.com/path",
        ),
        (
            vault.proxy_target("/v1/%2e%2e/admin"),
            "the path must not contain \".\" or \"..\" segments (in any encoding)",
        ),
    ] {
        let answer = call(&address, "GET", &climbing, &session, &[], &Value::Null);
        assert_eq!(
            answer.proxy_error(),
            (400, "bad_request".to_owned()),
            "{climbing}"
        );
        assert_eq!(answer.json()["message"], json!(message), "{climbing}");
    }
    assert!(vault.upstream.received().is_empty());

    // Inside it, everything works as without one.
    let health = send_raw(&address, "GET", "/agent-vault/health", &[], b"");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({ "status": "ok" }))
    );
    let services = json!({ "services": [{ "name": "items", "host": "api.test.example",
        "auth": { "type": "bearer", "token": "ITEMS_KEY" } }] });
    let put = call(
        &address,
        "PUT",
        "/agent-vault/v1/vaults/default/services",
        &owner,
        &[],
        &services,
    );
    assert_eq!(put.status, 200, "{:?}", put.json());
    let keys = json!({ "credentials": { "ITEMS_KEY": "sk_test_direct_92ab" } });
    let set = call(
        &address,
        "POST",
        "/agent-vault/v1/credentials",
        &owner,
        &[],
        &keys,
    );
    assert_eq!(set.status, 200, "{:?}", set.json());
    let discovered = call(
        &address,
        "GET",
        "/agent-vault/discover",
        &session,
        &[],
        &Value::Null,
    );
    assert_eq!(discovered.json()["services"][0]["name"], "items");
    let answer = call(
        &address,
        "GET",
        &vault.proxy_target("/v1/items"),
        &session,
        &[],
        &Value::Null,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        vault.upstream.last().header("authorization"),
        ["Bearer sk_test_direct_92ab"]
    );
    // A proposal's link and the owner's invite link carry the prefix.
    let proposed = call(
        &address,
        "POST",
        "/agent-vault/v1/proposals",
        &session,
        &[],
        &items_proposal(),
    );
    let approval_url = proposed.json()["approval_url"].as_str().unwrap().to_owned();
    assert!(
        approval_url.starts_with(&format!(
            "http://{address}/agent-vault/approve/1?token=av_appr_"
        )),
        "{approval_url}"
    );
    let invite = call(
        &address,
        "POST",
        "/agent-vault/v1/agents/invites",
        &owner,
        &[],
        &json!({ "name": "helper", "vaults": [{ "vault_name": "default" }] }),
    );
    assert_eq!(invite.status, 201, "{:?}", invite.json());
    let invite_url = invite.json()["invite_url"].as_str().unwrap().to_owned();
    let redeem_path = invite_url
        .strip_prefix(&format!("http://{address}"))
        .unwrap_or_else(|| panic!("{invite_url}"));
    assert!(
        redeem_path.starts_with("/agent-vault/v1/invites/av_inv_"),
        "{invite_url}"
    );
    let prompt = invite.json()["prompt"].as_str().unwrap().to_owned();
    assert!(
        prompt.contains(&format!("curl -s -X POST {invite_url}\n")),
        "{prompt}"
    );
    let redeemed = send_raw(&address, "POST", redeem_path, &[], b"");
    assert_eq!(redeemed.status, 201);
    assert_eq!(
        redeemed.json()["av_addr"],
        json!(format!("http://{address}/agent-vault"))
    );
}

#[test]
fn a_base_path_that_is_not_a_plain_path_stops_the_server_with_the_reason() {
    let data = DataDir::new();
    for (given, reason) in [
        (
            "agent-vault",
            "\"agent-vault\" must start with /, like /agent-vault",
        ),
        ("/a/../b", "\"/a/../b\" has a . or .. segment"),
        ("/a//b", "\"/a//b\" has an empty segment (//)"),
        (
            "/a?b=1",
            "\"/a?b=1\" has '?': use letters, digits, -, ., _ and ~ between the slashes (no \
             query, fragment or percent-encoding)",
        ),
    ] {
        // The flag, and once the variable.
        let flag = [
            "server",
            "--port",
            "0",
            "--mitm-port",
            "0",
            "--base-path",
            given,
        ];
        let refused = if given.contains('?') {
            data.command(&flag[..5]).env("AGENT_VAULT_BASE_PATH", given)
        } else {
            data.command(&flag)
        }
        .env("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD)
        .run();
        assert_eq!(refused.fails(), format!("error: --base-path: {reason}\n"));
    }
}
