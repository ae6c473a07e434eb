//! Proposals end to end: an agent is refused on a host no service covers, proposes the
//! service and the credential it needs, a human approves in a real browser (JavaScript off)
//! or with the CLI, and the agent's retried request reaches the upstream with the credential.

use std::process::Command;

use serde_json::{Value, json};

use crate::proxy::{Proxy, send_raw};
use crate::store_rows::Rows;
use crate::support::{DataDir, Run, Server, agent_vault_with_env, workspace_root};

const OWNER_EMAIL: &str = "owner@example.com";
const OWNER_PASSWORD: &str = "owner password";

/// What the agent proposes for `api.test.example`.
fn items_proposal() -> Value {
    json!({
        "services": [{ "name": "items", "host": "api.test.example",
                       "auth": { "type": "bearer", "token": "ITEMS_KEY" },
                       "allow": [{ "methods": ["GET"], "paths": ["/v1/*"] }] }],
        "credentials": [{ "key": "ITEMS_KEY", "description": "The items API key",
                          "obtain": "https://items.example/settings/keys" }],
        "message": "I need to read the items API to answer the question",
        "user_message": "Please add read access to the items API",
    })
}

fn propose(proxy: &Proxy, token: &str, body: &Value) -> (u16, Value) {
    proxy
        .server
        .call("POST", "/v1/proposals", Some(token), Some(body))
}

/// The path and query of an approval URL on the test server.
fn local(proxy: &Proxy, url: &str) -> String {
    url.strip_prefix(&proxy.server.url())
        .unwrap_or_else(|| panic!("{url} is not on {}", proxy.server.url()))
        .to_owned()
}

/// The browser's run: `tests/browser/approve.mjs` in headless Chromium.
struct Browser {
    status: i32,
    stdout: String,
    stderr: String,
}

/// One browser at a time (these tests and `console::browser`'s): two Chromiums starting
/// together on a busy 2-core machine are slow enough to time out.
pub(crate) static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn browser(url: &str, credentials: Value, action: &str, reason: &str, screenshot: &str) -> Browser {
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = workspace_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run ./scripts/test, which installs them"
    );
    let output = Command::new("node")
        .arg("approve.mjs")
        .current_dir(&dir)
        .env("APPROVAL_URL", url)
        .env("EMAIL", OWNER_EMAIL)
        .env("PASSWORD", OWNER_PASSWORD)
        .env("CREDENTIALS", credentials.to_string())
        .env("ACTION", action)
        .env("REASON", reason)
        .env(
            "SCREENSHOT",
            workspace_root().join("target").join(screenshot),
        )
        .output()
        .expect("node runs");
    Browser {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn owner_cli(proxy: &Proxy, args: &[&str]) -> Run {
    agent_vault_with_env(
        args,
        &[
            ("AGENT_VAULT_TOKEN", &proxy.owner),
            ("AGENT_VAULT_ADDR", &proxy.server.url()),
        ],
    )
}

#[test]
fn an_agent_asks_and_a_human_approves_in_the_browser() {
    let proxy = Proxy::start();
    let refused = proxy.call("GET", "api.test.example", "/v1/items", &[]);
    let (status, code) = refused.proxy_error();
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let hint = &refused.json()["proposal_hint"];
    assert_eq!(hint["endpoint"], "POST /v1/proposals");

    let (status, created) = propose(&proxy, &proxy.token, &items_proposal());
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], 1);
    assert_eq!(created["status"], "pending");
    assert_eq!(created["vault"], "default");
    let url = created["approval_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/approve/1?token=av_appr_", proxy.server.url())),
        "{url}"
    );

    let secret = "sk_test_browser_approved_7f3a91";
    let run = browser(
        url,
        json!({ "ITEMS_KEY": secret }),
        "approve",
        "",
        "approval-page.png",
    );
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "Approved");
    assert!(workspace_root().join("target/approval-page.png").is_file());

    let answer = proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        proxy.upstream.last().header("authorization"),
        [format!("Bearer {secret}")]
    );
    let (status, polled) = proxy
        .server
        .call("GET", "/v1/proposals/1", Some(&proxy.token), None);
    assert_eq!(status, 200);
    assert_eq!(polled["status"], "applied");
    // The allow rule came with it: a write is still refused.
    let write = proxy.call("POST", "api.test.example", "/v1/items", &[]);
    assert_eq!(write.proxy_error(), (403, "path_not_allowed".to_owned()));
}

#[test]
fn a_human_rejects_in_the_browser_and_the_agent_reads_why() {
    let proxy = Proxy::start();
    let (_, created) = propose(&proxy, &proxy.token, &items_proposal());
    let run = browser(
        created["approval_url"].as_str().unwrap(),
        json!({}),
        "reject",
        "Use the read-only key instead",
        "approval-page-reject.png",
    );
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "Rejected");
    let (_, polled) = proxy
        .server
        .call("GET", "/v1/proposals/1", Some(&proxy.token), None);
    assert_eq!(polled["status"], "rejected");
    assert_eq!(polled["review_note"], "Use the read-only key instead");
}

#[test]
fn the_same_flow_through_the_cli() {
    let proxy = Proxy::start();
    // An agent driven from a script proposes with the CLI, in agent mode.
    let agent = proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "script-bot", "vaults": [{ "vault_name": "default" }] }),
    );
    let agent_token = agent["av_agent_token"].as_str().unwrap();
    let address = proxy.server.url();
    let agent_env = [
        ("AGENT_VAULT_TOKEN", agent_token),
        ("AGENT_VAULT_ADDR", address.as_str()),
    ];
    let proposed = agent_vault_with_env(
        &[
            "vault",
            "proposal",
            "create",
            "--name",
            "items",
            "--host",
            "api.test.example",
            "--auth-type",
            "bearer",
            "--token-key",
            "ITEMS_KEY",
            "--credential",
            "ITEMS_KEY=The items API key",
            "-m",
            "Need items",
        ],
        &agent_env,
    )
    .ok();
    assert!(proposed.contains("Proposal 1 is pending"), "{proposed}");
    assert!(proposed.contains("/approve/1?token=av_appr_"), "{proposed}");

    let listed = owner_cli(&proxy, &["vault", "proposal", "list"]).ok();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("pending") && l.contains("Need items")),
        "{listed}"
    );
    let shown = owner_cli(&proxy, &["vault", "proposal", "show", "1"]).ok();
    assert!(
        shown.contains("\nProposed by the agent script-bot\n"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "Service items for https://api.test.example (any port): bearer auth with ITEMS_KEY"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("Needs credential ITEMS_KEY: The items API key"),
        "{shown}"
    );

    // The value comes on standard input, as a script would pipe it.
    let approved = crate::support::Invocation::new(&["vault", "proposal", "approve", "1"])
        .env("AGENT_VAULT_TOKEN", &proxy.owner)
        .env("AGENT_VAULT_ADDR", &address)
        .stdin("sk_test_cli_approved_1b2c\n")
        .run()
        .ok();
    assert!(approved.contains("Approved proposal 1"), "{approved}");

    let answer = proxy.call("GET", "api.test.example", "/v1/items", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        proxy.upstream.last().header("authorization"),
        ["Bearer sk_test_cli_approved_1b2c"]
    );
    let polled = agent_vault_with_env(&["vault", "proposal", "show", "1"], &agent_env).ok();
    assert!(polled.contains("(applied)"), "{polled}");

    // A second proposal, rejected from the CLI.
    agent_vault_with_env(
        &[
            "vault",
            "proposal",
            "create",
            "--credential",
            "SPARE_KEY",
            "-m",
            "spare",
        ],
        &agent_env,
    )
    .ok();
    owner_cli(
        &proxy,
        &["vault", "proposal", "reject", "2", "--reason", "not needed"],
    )
    .ok();
    let rejected = agent_vault_with_env(&["vault", "proposal", "show", "2"], &agent_env).ok();
    assert!(
        rejected.contains("(rejected)") && rejected.contains("not needed"),
        "{rejected}"
    );
}

#[test]
fn approving_twice_expiry_and_who_may_decide() {
    let proxy = Proxy::start();
    propose(&proxy, &proxy.token, &items_proposal());
    let approve = |token: &str, id: u64| {
        proxy.server.call(
            "POST",
            &format!("/v1/admin/proposals/{id}/approve"),
            Some(token),
            Some(&json!({ "vault": "default", "credentials": { "ITEMS_KEY": "sk_test_value_0001" } })),
        )
    };

    // A proxy-role agent cannot approve, and the proposal stays pending.
    let bot = proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "proxy-bot", "vaults": [{ "vault_name": "default", "vault_role": "proxy" }] }),
    );
    let bot_token = bot["av_agent_token"].as_str().unwrap();
    let (status, answer) = approve(bot_token, 1);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"], "Member role required");
    let (_, polled) = proxy
        .server
        .call("GET", "/v1/proposals/1", Some(&proxy.token), None);
    assert_eq!(polled["status"], "pending");

    // An agent with a member grant cannot approve what it proposed itself.
    let member = proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "member-bot", "vaults": [{ "vault_name": "default", "vault_role": "member" }] }),
    );
    let member_token = member["av_agent_token"].as_str().unwrap();
    let mut own = items_proposal();
    own["services"][0]["name"] = json!("own-items");
    own["credentials"][0]["key"] = json!("OWN_KEY");
    own["services"][0]["auth"]["token"] = json!("OWN_KEY");
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/proposals?vault=default",
        Some(member_token),
        Some(&own),
    );
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/admin/proposals/2/approve",
        Some(member_token),
        Some(&json!({ "credentials": { "OWN_KEY": "sk_test_self_0002" } })),
    );
    assert_eq!(status, 403, "{answer}");

    // A missing value is named; then the owner approves, once.
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/admin/proposals/1/approve",
        Some(&proxy.owner),
        Some(&json!({ "credentials": {} })),
    );
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "Missing value for credential \"ITEMS_KEY\""
    );
    assert_eq!(approve(&proxy.owner, 1).0, 200);
    let (status, answer) = approve(&proxy.owner, 1);
    assert_eq!(status, 409);
    assert_eq!(answer["error"], "Proposal 1 is already applied");

    // A week later a pending proposal has expired; its approval link died after a day.
    Rows::open(&proxy.data).execute(
        "UPDATE proposals SET expires_at = expires_at - 604800,
                              approval_expires_at = approval_expires_at - 604800
         WHERE id = 2",
        &[],
    );
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/admin/proposals/2/approve",
        Some(&proxy.owner),
        Some(&json!({ "credentials": { "OWN_KEY": "sk_test_late_0003" } })),
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "Proposal 2 has expired");
    let (_, listed) = proxy.server.call(
        "GET",
        "/v1/admin/proposals?vault=default&status=expired",
        Some(&proxy.owner),
        None,
    );
    assert_eq!(listed["proposals"].as_array().unwrap().len(), 1, "{listed}");
    let (_, listed) = proxy.server.call(
        "GET",
        "/v1/proposals?status=expired",
        Some(&proxy.token),
        None,
    );
    assert_eq!(listed["proposals"][0]["id"], 2, "{listed}");
    // A link with a token that was never issued opens nothing.
    let url = format!("/approve/2?token=av_appr_{}", "0".repeat(64));
    let page = send_raw(&proxy.server.address, "GET", &url, &[], b"");
    assert_eq!(page.status, 404);
}

#[test]
fn an_expired_approval_link_answers_410() {
    let proxy = Proxy::start();
    let (_, created) = propose(&proxy, &proxy.token, &items_proposal());
    let path = local(&proxy, created["approval_url"].as_str().unwrap());
    let page = send_raw(&proxy.server.address, "GET", &path, &[], b"");
    assert_eq!(page.status, 200);
    Rows::open(&proxy.data).execute(
        "UPDATE proposals SET approval_expires_at = approval_expires_at - 86400",
        &[],
    );
    let page = send_raw(&proxy.server.address, "GET", &path, &[], b"");
    assert_eq!(page.status, 410);
    assert!(String::from_utf8_lossy(&page.body).contains("has expired"));
}

#[test]
fn every_validation_error_names_its_field() {
    let proxy = Proxy::start();
    proxy.credentials(json!({ "EXISTING_KEY": "v" }));
    let cases = [
        (
            json!({}),
            "A proposal needs at least one service or credential",
        ),
        (
            json!({ "services": [{ "name": "xxx", "host": "api.x.example", "auth": { "type": "bearer", "token": "NOPE" } }] }),
            "credential NOPE referenced in service xxx is not provided in this proposal and does not exist in the vault",
        ),
        (
            json!({ "services": [{ "name": "xxx", "host": "api.x.example", "auth": { "type": "bearer", "token": "EXISTING_KEY" } }],
                    "credentials": [{ "key": "UNUSED" }] }),
            "credential slot UNUSED is not referenced by any service auth config",
        ),
        (
            json!({ "credentials": [{ "key": "A_KEY", "value": "sk_test_never" }] }),
            "credentials[0]: value: an agent never sends a credential value; whoever approves types it",
        ),
        (
            json!({ "services": [{ "host": "api.x.example", "auth": { "type": "passthrough" } }] }),
            "services[0]: name is required",
        ),
        (
            json!({ "services": [{ "name": "xxx", "host": "localhost", "auth": { "type": "passthrough" } }] }),
            "services[0]: host \"localhost\" is an IP address or internal name; only public host names are allowed (development mode allows them)",
        ),
        (
            json!({ "credentials": [{ "key": "A_KEY" }], "message": "m".repeat(2001) }),
            "message: at most 2000 characters",
        ),
    ];
    for (body, message) in cases {
        let (status, answer) = propose(&proxy, &proxy.token, &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], message, "{body}");
    }
    // People change services directly; an agent token must say which vault.
    let (status, _) = propose(&proxy, &proxy.owner, &items_proposal());
    assert_eq!(status, 403);
    let agent = proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "vaultless-bot", "vaults": [{ "vault_name": "default" }] }),
    );
    let (status, answer) = propose(
        &proxy,
        agent["av_agent_token"].as_str().unwrap(),
        &items_proposal(),
    );
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "Agent tokens require an X-Vault header naming the vault"
    );
}

#[test]
fn at_most_twenty_proposals_are_pending() {
    let proxy = Proxy::start();
    for n in 0..20 {
        let body = json!({ "credentials": [{ "key": format!("KEY_{n}") }] });
        assert_eq!(propose(&proxy, &proxy.token, &body).0, 201, "proposal {n}");
    }
    let (status, answer) = propose(
        &proxy,
        &proxy.token,
        &json!({ "credentials": [{ "key": "ONE_MORE" }] }),
    );
    assert_eq!(status, 429);
    assert_eq!(answer["error"], "Too many pending proposals (max 20)");
    owner_cli(&proxy, &["vault", "proposal", "reject", "1"]).ok();
    assert_eq!(
        propose(
            &proxy,
            &proxy.token,
            &json!({ "credentials": [{ "key": "ONE_MORE" }] })
        )
        .0,
        201
    );
}

#[test]
fn the_page_escapes_what_the_agent_wrote_and_allows_no_script() {
    let proxy = Proxy::start();
    let mut body = items_proposal();
    body["message"] = json!("<script>alert('pwned')</script>");
    body["credentials"][0]["description"] = json!("\"><img src=x onerror=alert(1)>");
    let (_, created) = propose(&proxy, &proxy.token, &body);
    let page = send_raw(
        &proxy.server.address,
        "GET",
        &local(&proxy, created["approval_url"].as_str().unwrap()),
        &[],
        b"",
    );
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
    assert!(!html.contains("<img"), "{html}");
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(!policy.contains("script-src"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    // Not logged in: the page offers a login form, no approve form.
    assert!(html.contains("id=\"login\""));
    assert!(!html.contains("id=\"approve\""));

    // A decision without the page's CSRF token is refused, even with a valid session.
    let cookie = format!("av_session={}", proxy.owner);
    let token = created["approval_url"]
        .as_str()
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .to_owned();
    let forged = format!("token={token}&csrf=forged&credential%3AITEMS_KEY=sk_test_forged_0004");
    let answer = send_raw(
        &proxy.server.address,
        "POST",
        "/approve/1/approve",
        &[
            ("cookie", cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        forged.as_bytes(),
    );
    assert_eq!(answer.status, 403);
    let (_, polled) = proxy
        .server
        .call("GET", "/v1/proposals/1", Some(&proxy.token), None);
    assert_eq!(polled["status"], "pending");
}

/// The webhook calls the upstream received at `path`, once there are `count` (bounded wait).
fn webhook_calls(proxy: &Proxy, path: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let calls: Vec<Value> = proxy
            .upstream
            .received()
            .into_iter()
            .filter(|received| received.target == path && received.method == "POST")
            .map(|received| serde_json::from_slice(&received.body).unwrap())
            .collect();
        if calls.len() >= count {
            return calls;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} webhook calls never arrived (have {calls:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_vault_webhook_hears_of_every_proposal() {
    let proxy = Proxy::start();
    let path = "/services/T123/B456/hook-secret";
    let hook = format!("https://other.test.example:{}{path}", proxy.upstream.port);
    let settings = proxy.api(
        "PATCH",
        "/v1/vaults/default/settings",
        json!({ "proposal_webhook_url": hook }),
    );
    assert_eq!(settings["proposal_webhook_url"], hook);
    assert_eq!(settings["proposal_webhook"], true);
    // Vault members without admin rights learn that there is a webhook, not its URL.
    let (_, seen) = proxy.server.call(
        "GET",
        "/v1/vaults/default/settings",
        Some(&proxy.token),
        None,
    );
    assert_eq!(seen["proposal_webhook"], true);
    assert!(seen.get("proposal_webhook_url").is_none(), "{seen}");

    let (_, created) = propose(&proxy, &proxy.token, &items_proposal());
    let calls = webhook_calls(&proxy, path, 1);
    assert_eq!(calls[0]["event"], "proposal.created");
    assert_eq!(calls[0]["vault"], "default");
    assert_eq!(calls[0]["proposal"]["id"], 1);
    assert_eq!(
        calls[0]["proposal"]["approval_url"],
        created["approval_url"]
    );
    let text = calls[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("An agent made proposal 1 in vault default"),
        "{text}"
    );
    assert!(
        text.contains(created["approval_url"].as_str().unwrap()),
        "{text}"
    );

    proxy.api(
        "POST",
        "/v1/admin/proposals/1/approve",
        json!({ "credentials": { "ITEMS_KEY": "sk_test_hooked_0005" } }),
    );
    let calls = webhook_calls(&proxy, path, 2);
    assert_eq!(calls[1]["event"], "proposal.applied");
    assert_eq!(
        calls[1]["text"],
        "owner@example.com approved proposal 1 in vault default."
    );
    // No credential value ever goes to the webhook.
    assert!(
        calls
            .iter()
            .all(|call| !call.to_string().contains("sk_test_hooked_0005"))
    );

    let (status, answer) = proxy.server.call(
        "PATCH",
        "/v1/vaults/default/settings",
        Some(&proxy.owner),
        Some(&json!({ "proposal_webhook_url": "http://hooks.example/plain" })),
    );
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "proposal_webhook_url must be an https:// URL"
    );
}

#[test]
fn an_interactive_review_goes_through_the_pending_proposals_oldest_first() {
    let proxy = Proxy::start();
    for key in ["FIRST_KEY", "SECOND_KEY", "THIRD_KEY"] {
        let body = json!({ "credentials": [{ "key": key }], "message": format!("need {key}") });
        assert_eq!(propose(&proxy, &proxy.token, &body).0, 201);
    }
    // Reject the first with a reason, approve the second (typing its value), quit.
    let reviewed = crate::support::Invocation::new(&["vault", "proposal", "review"])
        .env("AGENT_VAULT_TOKEN", &proxy.owner)
        .env("AGENT_VAULT_ADDR", &proxy.server.url())
        .stdin("r\nnot now\na\nsk_test_second_0006\nq\n")
        .run()
        .ok();
    assert!(reviewed.contains("Why: need FIRST_KEY"), "{reviewed}");
    assert!(reviewed.contains("Rejected proposal 1"), "{reviewed}");
    assert!(reviewed.contains("Approved proposal 2"), "{reviewed}");
    assert!(!reviewed.contains("sk_test_second_0006"), "{reviewed}");
    let status = |id: u64| {
        proxy
            .server
            .call(
                "GET",
                &format!("/v1/proposals/{id}"),
                Some(&proxy.token),
                None,
            )
            .1
    };
    assert_eq!(status(1)["status"], "rejected");
    assert_eq!(status(1)["review_note"], "not now");
    assert_eq!(status(2)["status"], "applied");
    assert_eq!(status(3)["status"], "pending");
    let keys = proxy.api("GET", "/v1/credentials?vault=default", json!({}));
    assert_eq!(keys["keys"], json!(["SECOND_KEY"]));
}

#[test]
fn a_login_posted_from_another_site_is_refused() {
    let proxy = Proxy::start();
    let (_, created) = propose(&proxy, &proxy.token, &items_proposal());
    let token = created["approval_url"]
        .as_str()
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .to_owned();
    let form = format!("token={token}&email=owner%40example.com&password=owner+password");
    let login = |origin: &str| {
        send_raw(
            &proxy.server.address,
            "POST",
            "/approve/1/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", origin),
            ],
            form.as_bytes(),
        )
    };
    // Another site's form would log this browser into the attacker's account.
    let forged = login("https://evil.example");
    assert_eq!(forged.status, 403);
    assert!(forged.header("set-cookie").is_none());
    let fetch_site = send_raw(
        &proxy.server.address,
        "POST",
        "/approve/1/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
        ],
        form.as_bytes(),
    );
    assert_eq!(fetch_site.status, 403);

    let own = login(&proxy.server.url());
    assert_eq!(own.status, 303);
    let cookie = own.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/;"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = send_raw(
        &proxy.server.address,
        "GET",
        own.header("location").unwrap(),
        &[("cookie", session.as_str())],
        b"",
    );
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("Logged in as owner@example.com."), "{html}");
    assert!(html.contains("id=\"approve\""));
}

const REVIEW_IS_FOR_PEOPLE: &str = "Proposals are approved and rejected by people signed in with \
     their own login, not by agents (an owner can let agents review other agents' proposals with \
     the instance setting agents_can_approve_proposals)";
const OWN_PROPOSAL: &str = "A proposal cannot be approved or rejected by whoever made it, \
     directly or through a vault session they minted";

/// An agent with a grant on the default vault; its token.
fn agent_with_role(proxy: &Proxy, name: &str, vault_role: &str) -> String {
    let agent = proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": name, "vaults": [{ "vault_name": "default", "vault_role": vault_role }] }),
    );
    agent["av_agent_token"].as_str().unwrap().to_owned()
}

/// A vault session for the default vault, minted with `token`.
fn session_minted_by(proxy: &Proxy, token: &str) -> String {
    let (status, minted) = proxy.server.call(
        "POST",
        "/v1/sessions",
        Some(token),
        Some(&json!({ "vault": "default" })),
    );
    assert_eq!(status, 200, "{minted}");
    minted["token"].as_str().unwrap().to_owned()
}

fn decide(proxy: &Proxy, token: &str, id: u64, decision: &str, body: Value) -> (u16, Value) {
    proxy.server.call(
        "POST",
        &format!("/v1/admin/proposals/{id}/{decision}"),
        Some(token),
        Some(&body),
    )
}

fn proposal_status(proxy: &Proxy, id: u64) -> Value {
    proxy
        .api("GET", &format!("/v1/admin/proposals/{id}"), json!({}))
        .get("status")
        .cloned()
        .unwrap_or(Value::Null)
}

/// What approving on the page as the holder of `session_token` (its `av_session` cookie)
/// gets: the CSRF token is computable by whoever holds the session and the link.
fn approve_on_the_page(proxy: &Proxy, approval_url: &str, session_token: &str) -> (u16, String) {
    use sha2::{Digest, Sha256};
    let token = approval_url.rsplit('=').next().unwrap();
    let approval_hash = hex::encode(Sha256::digest(token.as_bytes()));
    let mut digest = Sha256::new();
    digest.update(b"agent-vault approval form\0");
    digest.update(session_token.as_bytes());
    digest.update(b"\0");
    digest.update(approval_hash.as_bytes());
    let csrf = hex::encode(digest.finalize());
    let cookie = format!("av_session={session_token}");
    let path = local(proxy, approval_url);
    let shown = send_raw(
        &proxy.server.address,
        "GET",
        &path,
        &[("cookie", &cookie)],
        b"",
    );
    let html = String::from_utf8_lossy(&shown.body).into_owned();
    assert!(!html.contains("id=\"approve\""), "{html}");
    let id = path.split('/').nth(2).unwrap().split('?').next().unwrap();
    let posted = send_raw(
        &proxy.server.address,
        "POST",
        &format!("/approve/{id}/approve"),
        &[
            ("cookie", &cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        format!("token={token}&csrf={csrf}").as_bytes(),
    );
    (
        posted.status,
        String::from_utf8_lossy(&posted.body).into_owned(),
    )
}

/// The security issue's item 1: a member-role agent may not write services, so it minted a
/// vault session, proposed through it a service for a host of its own bound to an existing
/// credential, and approved that with its agent token; the proxy then sent the credential to
/// its host.
#[test]
fn an_agent_cannot_approve_what_it_proposed_through_a_session_it_minted() {
    let proxy = Proxy::start();
    let secret = "sk_test_items_only_for_items_4e7d";
    proxy.credentials(json!({ "ITEMS_KEY": secret }));
    proxy.services(json!([{ "name": "items", "host": "api.test.example",
                            "auth": { "type": "bearer", "token": "ITEMS_KEY" } }]));
    let agent = agent_with_role(&proxy, "member-bot", "member");
    let mirror = json!({ "services": [{ "name": "mirror", "host": "other.test.example",
                                        "auth": { "type": "bearer", "token": "ITEMS_KEY" } }] });
    let (status, answer) = proxy.server.call(
        "POST",
        "/v1/vaults/default/services",
        Some(&agent),
        Some(&mirror),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("Admin role required"))
    );

    let session = session_minted_by(&proxy, &agent);
    let mut proposal = mirror.clone();
    proposal["message"] = json!("I need the mirror");
    let (status, created) = propose(&proxy, &session, &proposal);
    assert_eq!(status, 201, "{created}");
    let url = created["approval_url"].as_str().unwrap().to_owned();

    // Its own token cannot approve or reject it, nor can the session.
    for (token, expected) in [
        (&agent, REVIEW_IS_FOR_PEOPLE),
        (
            &session,
            "A vault session cannot review proposals; log in as a vault member",
        ),
    ] {
        for decision in ["approve", "reject"] {
            let (status, answer) =
                decide(&proxy, token, 1, decision, json!({ "vault": "default" }));
            assert_eq!(
                (status, answer["error"].as_str()),
                (403, Some(expected)),
                "{decision}"
            );
        }
    }
    // Nor the approval page, with its token as the page's session cookie.
    let (status, page) = approve_on_the_page(&proxy, &url, &agent);
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains(
            "<p id=\"error\">Proposals are approved and rejected by people signed in with \
             their own login, not by agents"
        ),
        "{page}"
    );
    assert_eq!(proposal_status(&proxy, 1), "pending");

    // So the credential never goes to its host.
    let answer = send_raw(
        &proxy.server.address,
        "GET",
        &proxy.target("other.test.example", "/collect"),
        &[("authorization", &format!("Bearer {session}"))],
        b"",
    );
    assert_eq!(answer.proxy_error(), (403, "forbidden".to_owned()));
    assert!(
        proxy
            .upstream
            .received()
            .iter()
            .all(|received| !format!("{:?}", received.headers).contains(secret))
    );

    // The reviewer is told who is behind it.
    let shown = proxy.api("GET", "/v1/admin/proposals/1", json!({}));
    assert_eq!(
        shown["proposed_by"],
        "an agent with a vault session that the agent member-bot minted"
    );

    // Even once an owner lets agents review proposals, this one is its own.
    let address = proxy.server.url();
    let set = crate::support::Invocation::new(&[
        "owner",
        "config",
        "set",
        "--agents-can-approve-proposals",
        "true",
    ])
    .env("AGENT_VAULT_TOKEN", &proxy.owner)
    .env("AGENT_VAULT_ADDR", &address)
    .run()
    .ok();
    assert_eq!(
        set,
        "agents_can_approve_proposals: true\n\
         rate_limit: default profile (set when the server starts)\n"
    );
    let (status, answer) = decide(&proxy, &agent, 1, "approve", json!({ "vault": "default" }));
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some(OWN_PROPOSAL))
    );
    assert_eq!(proposal_status(&proxy, 1), "pending");
}

#[test]
fn agents_review_other_agents_proposals_only_when_an_owner_allows_it() {
    let proxy = Proxy::start();
    let asker = agent_with_role(&proxy, "asker-bot", "proxy");
    let reviewer = agent_with_role(&proxy, "reviewer-bot", "member");
    let (status, _) = proxy.server.call(
        "POST",
        "/v1/proposals?vault=default",
        Some(&asker),
        Some(&items_proposal()),
    );
    assert_eq!(status, 201);
    let approve =
        json!({ "vault": "default", "credentials": { "ITEMS_KEY": "sk_test_agent_ok_0007" } });
    let (status, answer) = decide(&proxy, &reviewer, 1, "approve", approve.clone());
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some(REVIEW_IS_FOR_PEOPLE))
    );

    // Only an owner changes the setting, and only as a person.
    let settings = proxy.api("GET", "/v1/admin/settings", json!({}));
    assert_eq!(settings["agents_can_approve_proposals"], json!(false));
    // Beside it, the rate limits the server started with: read here, changed by a restart.
    assert_eq!(settings["rate_limit"]["profile"], json!("default"));
    assert_eq!(settings["rate_limit"]["locked"], json!(true));
    assert_eq!(
        settings["rate_limit"]["tiers"]["proxy"],
        json!({ "rate": 20.0, "burst": 200, "concurrency": 64, "wait_ms": 2000 })
    );
    let owner_bot = proxy.api(
        "POST",
        "/v1/agents",
        json!({ "name": "owner-bot", "role": "owner" }),
    );
    let owner_bot = owner_bot["av_agent_token"].as_str().unwrap();
    let allow = json!({ "agents_can_approve_proposals": true });
    for (token, expected) in [
        (reviewer.as_str(), (403, "Owner role required")),
        (
            owner_bot,
            (
                403,
                "Instance settings are changed by an owner signed in with their own login",
            ),
        ),
        (
            proxy.token.as_str(),
            (
                403,
                "This needs a user or agent token, not a vault-scoped session",
            ),
        ),
    ] {
        let (status, answer) =
            proxy
                .server
                .call("PUT", "/v1/admin/settings", Some(token), Some(&allow));
        assert_eq!((status, answer["error"].as_str().unwrap()), expected);
    }
    let (status, answer) = proxy.server.call(
        "PUT",
        "/v1/admin/settings",
        Some(&proxy.owner),
        Some(&json!({ "agents_can_approve": true })),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains(
            "unknown field `agents_can_approve`, expected `agents_can_approve_proposals`"
        ),
        "{answer}"
    );
    assert_eq!(
        proxy.api("PUT", "/v1/admin/settings", allow)["agents_can_approve_proposals"],
        json!(true)
    );

    // Now a member agent approves another agent's proposal; a proxy-role one still cannot.
    let (status, answer) = decide(&proxy, &asker, 1, "approve", approve.clone());
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("Member role required"))
    );
    let (status, answer) = decide(&proxy, &reviewer, 1, "approve", approve);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(proposal_status(&proxy, 1), "applied");

    // Turned off again, agents are refused again.
    let (status, _) = proxy.server.call(
        "POST",
        "/v1/proposals?vault=default",
        Some(&asker),
        Some(&json!({ "credentials": [{ "key": "SPARE_KEY" }] })),
    );
    assert_eq!(status, 201);
    let off = crate::support::Invocation::new(&[
        "owner",
        "config",
        "set",
        "--agents-can-approve-proposals",
        "false",
    ])
    .env("AGENT_VAULT_TOKEN", &proxy.owner)
    .env("AGENT_VAULT_ADDR", &proxy.server.url())
    .run()
    .ok();
    assert_eq!(
        off,
        "agents_can_approve_proposals: false\n\
         rate_limit: default profile (set when the server starts)\n"
    );
    let (status, answer) = decide(
        &proxy,
        &reviewer,
        2,
        "reject",
        json!({ "vault": "default" }),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some(REVIEW_IS_FOR_PEOPLE))
    );
}

#[test]
fn a_vault_member_cannot_approve_what_came_through_a_session_they_minted() {
    let proxy = Proxy::start();
    // A person with the member role: they may not write services.
    let invite = proxy.api(
        "POST",
        "/v1/users/invites",
        json!({ "email": "member@example.com", "vaults": [{ "vault_name": "default", "vault_role": "member" }] }),
    );
    let (status, accepted) = proxy.server.call(
        "POST",
        &format!(
            "/v1/users/invites/{}/accept",
            invite["token"].as_str().unwrap()
        ),
        None,
        Some(&json!({ "password": "a member password" })),
    );
    assert_eq!(status, 200, "{accepted}");
    let member = accepted["token"].as_str().unwrap().to_owned();
    let session = session_minted_by(&proxy, &member);
    assert_eq!(propose(&proxy, &session, &items_proposal()).0, 201);
    let approve =
        json!({ "vault": "default", "credentials": { "ITEMS_KEY": "sk_test_member_0008" } });
    let (status, answer) = decide(&proxy, &member, 1, "approve", approve.clone());
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some(OWN_PROPOSAL))
    );
    let shown = proxy.api("GET", "/v1/admin/proposals/1", json!({}));
    assert_eq!(
        shown["proposed_by"],
        "an agent with a vault session that member@example.com minted"
    );
    // The vault's admin decides. (An admin may also approve what came through a session
    // they minted, as the browser test does: they may write all of it directly anyway.)
    let (status, answer) = decide(&proxy, &proxy.owner, 1, "approve", approve);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn a_proposal_stored_without_its_creator_is_never_approved() {
    // An upgrade from SQLite schema version 6: on SQLite whatever the run's backend (the
    // PostgreSQL schema starts after it).
    let data = DataDir::sqlite();
    let server = Server::start(&data);
    let (status, registered) = server.call(
        "POST",
        "/v1/auth/register",
        None,
        Some(&json!({ "email": OWNER_EMAIL, "password": OWNER_PASSWORD })),
    );
    assert_eq!(status, 201, "{registered}");
    let owner = registered["token"].as_str().unwrap().to_owned();
    let call = |server: &Server, token: &str, method: &str, path: &str, body: Value| {
        server.call(method, path, Some(token), Some(&body))
    };
    let (_, agent) = call(
        &server,
        &owner,
        "POST",
        "/v1/agents",
        json!({ "name": "old-bot", "vaults": [{ "vault_name": "default", "vault_role": "member" }] }),
    );
    let agent = agent["av_agent_token"].as_str().unwrap().to_owned();
    let mut links = Vec::new();
    for key in ["KEPT_KEY", "GONE_KEY"] {
        let (_, minted) = call(
            &server,
            &agent,
            "POST",
            "/v1/sessions",
            json!({ "vault": "default" }),
        );
        let session = minted["token"].as_str().unwrap();
        let body = json!({ "credentials": [{ "key": key }] });
        let (status, created) = call(&server, session, "POST", "/v1/proposals", body);
        assert_eq!(status, 201);
        let link = created["approval_url"].as_str().unwrap();
        links.push(link.strip_prefix(&server.url()).unwrap().to_owned());
    }
    drop(server);

    // As an older agent-vault stored proposals made through a vault session: no creator. The
    // second one's session has ended since. (Schema version 6 had no device tokens and no
    // request-log journal.)
    let database = rusqlite::Connection::open(data.path().join("agent-vault.db")).unwrap();
    database
        .execute_batch(
            "UPDATE proposals SET created_by_type = NULL, created_by_id = NULL;
             DELETE FROM tokens WHERE public_id =
                 (SELECT created_by_session FROM proposals WHERE id = 2);
             DROP TABLE device_tokens;
             DROP TABLE request_log_journal;
             PRAGMA user_version = 6;",
        )
        .unwrap();
    drop(database);

    // Upgraded, the server finds who minted the session that still exists.
    let server = Server::start(&data);
    let shown = |id: u64| {
        call(
            &server,
            &owner,
            "GET",
            &format!("/v1/admin/proposals/{id}"),
            json!({}),
        )
        .1
    };
    assert_eq!(
        shown(1)["proposed_by"],
        "an agent with a vault session that the agent old-bot minted"
    );
    assert_eq!(
        shown(2)["proposed_by"],
        "an agent (who made it was not recorded)"
    );
    let approve = |id: u64, key: &str| {
        call(
            &server,
            &owner,
            "POST",
            &format!("/v1/admin/proposals/{id}/approve"),
            json!({ "credentials": { key: "sk_test_upgraded_0009" } }),
        )
    };
    assert_eq!(approve(1, "KEPT_KEY").0, 200);
    let (status, answer) = approve(2, "GONE_KEY");
    assert_eq!(status, 403);
    let unknown = "This proposal does not record who made it (it was made before this server \
                   recorded creators), so it cannot be approved; reject it and ask for it again";
    assert_eq!(answer["error"], unknown);
    // The approval page offers a person only the reject form, and says why.
    let page = send_raw(
        &server.address,
        "GET",
        &links[1],
        &[("cookie", &format!("av_session={owner}"))],
        b"",
    );
    let html = String::from_utf8_lossy(&page.body);
    assert_eq!(page.status, 200);
    assert!(!html.contains("id=\"approve\""), "{html}");
    assert!(html.contains("id=\"reject\""), "{html}");
    assert!(
        html.contains(&format!("<p id=\"error\">{unknown}</p>")),
        "{html}"
    );
    let (status, _) = call(
        &server,
        &owner,
        "POST",
        "/v1/admin/proposals/2/reject",
        json!({ "reason": "ask again" }),
    );
    assert_eq!(status, 200);
}
