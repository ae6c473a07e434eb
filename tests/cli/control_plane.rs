//! The control plane through the CLI, as a person sets up an instance: register the owner,
//! make a vault, fill it with credentials and services, hand out vault tokens and agents,
//! invite a colleague, change the master password; and what the CLI says when something is
//! wrong.
//!
//! Every test runs a real server on its own data directory, and the CLI with a data
//! directory of its own (where `auth` keeps the session), as on a laptop talking to a
//! server.

use std::net::TcpListener;

use serde_json::{Value, json};

use crate::support::{DataDir, Invocation, MASTER_PASSWORD, Server, session_token};

const OWNER: &str = "owner@example.com";
const OWNER_PASSWORD: &str = "correct horse battery staple";

/// A server, and its owner registered through the CLI.
struct Instance {
    server_data: DataDir,
    server: Server,
    /// The owner's CLI state (session, current vault).
    owner: DataDir,
}

impl Instance {
    fn start() -> Instance {
        let server_data = DataDir::new();
        let server = Server::start(&server_data);
        let owner = DataDir::new();
        let registered = owner
            .command(&[
                "auth",
                "register",
                "--address",
                &server.url(),
                "--email",
                OWNER,
                "--password-stdin",
            ])
            .stdin(&format!("{OWNER_PASSWORD}\n"))
            .run()
            .ok();
        assert_eq!(
            registered,
            "Registered and logged in as owner@example.com (owner).\n"
        );
        Instance {
            server_data,
            server,
            owner,
        }
    }

    /// The owner logs in again from another CLI data directory (another machine).
    fn owner_logs_in_elsewhere(&self) -> DataDir {
        let elsewhere = DataDir::new();
        elsewhere
            .command(&[
                "auth",
                "login",
                "--address",
                &self.server.url(),
                "--email",
                OWNER,
                "--password-stdin",
            ])
            .stdin(&format!("{OWNER_PASSWORD}\n"))
            .run()
            .ok();
        elsewhere
    }

    /// `agent-vault ARGS...` as the owner, which must fail; its stderr.
    fn owner_fails(&self, args: &[&str]) -> String {
        self.owner.run(args).fails()
    }

    /// `agent-vault ARGS...` as the owner; its stdout.
    fn owner(&self, args: &[&str]) -> String {
        self.owner.run(args).ok()
    }

    /// The owner creates vault `name` and makes it current.
    fn owner_uses_new_vault(&self, name: &str) {
        assert_eq!(
            self.owner(&["vault", "create", name]),
            format!("Created vault {name}; you are its admin.\n")
        );
        assert_eq!(
            self.owner(&["vault", "use", name]),
            format!("Now using vault {name}.\n")
        );
    }
}

#[test]
fn an_owner_keeps_credentials_in_a_vault_of_their_own() {
    let instance = Instance::start();
    instance.owner_uses_new_vault("team");
    assert_eq!(instance.owner(&["vault", "current"]), "team\n");
    assert_eq!(
        instance.owner(&["vault", "list"]),
        "  NAME     ROLE   MEMBERSHIP\n  default  admin  explicit\n* team     admin  explicit\n"
    );

    let piped_secret = "s3cret-typed-into-a-pipe";
    let mut outputs = Vec::new();
    let set = instance
        .owner
        .command(&[
            "vault",
            "credential",
            "set",
            "STRIPE_KEY=sk_test_on_the_command_line",
            "PIPED_SECRET",
        ])
        .stdin(&format!("{piped_secret}\n"))
        .run();
    assert_eq!(set.ok(), "Set PIPED_SECRET, STRIPE_KEY in vault team.\n");
    outputs.push(set);
    let listed = instance.owner.run(&["vault", "creds", "list"]);
    assert_eq!(listed.ok(), "PIPED_SECRET\nSTRIPE_KEY\n");
    outputs.push(listed);
    let elsewhere = instance
        .owner
        .run(&["vault", "credential", "list", "--vault", "default"]);
    assert_eq!(elsewhere.ok(), "");
    assert_eq!(elsewhere.stderr(), "Vault default has no credentials.\n");
    outputs.push(elsewhere);
    for run in &outputs {
        assert!(!run.stdout().contains(piped_secret), "{}", run.stdout());
        assert!(!run.stderr().contains(piped_secret), "{}", run.stderr());
    }
    // Printing values is what --reveal is for.
    assert_eq!(
        instance.owner(&["vault", "credential", "list", "--reveal"]),
        format!("PIPED_SECRET={piped_secret}\nSTRIPE_KEY=sk_test_on_the_command_line\n")
    );

    assert_eq!(
        instance.owner(&["vault", "credential", "delete", "STRIPE_KEY"]),
        "Deleted STRIPE_KEY from vault team.\n"
    );
    assert_eq!(
        instance.owner_fails(&["vault", "credential", "delete", "STRIPE_KEY"]),
        "error: vault team has no credential STRIPE_KEY\n"
    );
    assert_eq!(
        instance.owner_fails(&["vault", "credential", "set", "lower_case=x"]),
        "error: credential key \"lower_case\" must be UPPER_SNAKE_CASE (e.g. STRIPE_KEY)\n"
    );
}

#[test]
fn the_session_is_kept_where_only_its_owner_can_read_it() {
    let instance = Instance::start();
    // The owner on a second machine, whose CLI directory does not exist yet.
    let laptop = DataDir::new();
    let home = laptop.path().join(".agent-vault");
    let logged_in = Invocation::new(&[
        "auth",
        "login",
        "--address",
        &instance.server.url(),
        "--email",
        OWNER,
        "--password-stdin",
        "--data-dir",
        home.to_str().unwrap(),
    ])
    .stdin(&format!("{OWNER_PASSWORD}\n"))
    .run();
    assert_eq!(logged_in.ok(), "Logged in as owner@example.com (owner).\n");
    let session: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("session.json")).unwrap()).unwrap();
    assert_eq!(session["address"], instance.server.url());
    assert_eq!(session["email"], OWNER);
    assert!(session["token"].as_str().unwrap().starts_with("av_sess_"));
    // Next to it, the device token the login gave this CLI, for this server and account.
    let devices = session["device_tokens"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{session:#}");
    assert_eq!(devices[0]["address"], instance.server.url());
    assert_eq!(devices[0]["email"], OWNER);
    let device = devices[0]["token"].as_str().unwrap().to_owned();
    assert!(device.starts_with("av_dev_"), "{device}");
    let mode = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("session.json")), 0o600);

    // Logging out forgets the session and keeps the device token, still 0600...
    let cli = |args: &[&str]| {
        let mut with_dir = args.to_vec();
        with_dir.extend(["--data-dir", home.to_str().unwrap()]);
        Invocation::new(&with_dir)
    };
    assert_eq!(
        cli(&["auth", "logout"]).run().ok(),
        format!("Logged out of {}.\n", instance.server.url())
    );
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("session.json")).unwrap()).unwrap();
    assert_eq!(
        kept,
        json!({ "device_tokens": [{ "address": instance.server.url(), "email": OWNER, "token": device }] })
    );
    assert_eq!(mode(&home.join("session.json")), 0o600);
    assert_eq!(
        cli(&["account", "whoami"]).run().fails(),
        "error: not logged in (run `agent-vault auth login`, or set AGENT_VAULT_TOKEN)\n"
    );
    // ... which the next login sends: the server knows it, and hands out no other.
    let again = cli(&[
        "auth",
        "login",
        "--email",
        OWNER,
        "--password-stdin",
        "--address",
        &instance.server.url(),
    ])
    .stdin(&format!("{OWNER_PASSWORD}\n"))
    .run();
    assert_eq!(again.ok(), "Logged in as owner@example.com (owner).\n");
    let session: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("session.json")).unwrap()).unwrap();
    assert_eq!(session["device_tokens"][0]["token"], device.as_str());
    assert_eq!(session["device_tokens"].as_array().unwrap().len(), 1);
}

#[test]
fn a_vault_is_chosen_by_flag_environment_or_context_and_deleted_only_when_confirmed() {
    let instance = Instance::start();
    instance.owner_uses_new_vault("team");
    assert_eq!(
        instance
            .owner
            .command(&["vault", "current"])
            .env("AGENT_VAULT_VAULT", "default")
            .run()
            .ok(),
        "default\n"
    );
    assert_eq!(
        instance.owner_fails(&["vault", "use", "nope"]),
        "error: no vault named nope that you can see (run `agent-vault vault list`)\n"
    );
    assert_eq!(
        instance.owner_fails(&["vault", "create", "team"]),
        "error: vault team already exists\n"
    );
    assert_eq!(
        instance.owner_fails(&["vault", "delete", "team"]),
        "error: deleting vault team needs --yes when standard input is not a terminal\n"
    );
    assert_eq!(
        instance.owner(&["vault", "delete", "team", "--yes"]),
        "Deleted vault team.\n"
    );
    // The deleted vault is no longer current.
    assert_eq!(instance.owner(&["vault", "current"]), "default\n");
    assert_eq!(
        instance.owner(&["vault", "list"]),
        "  NAME     ROLE   MEMBERSHIP\n* default  admin  explicit\n"
    );
}

#[test]
fn services_of_every_auth_type_are_added_listed_and_changed() {
    let instance = Instance::start();
    instance.owner_uses_new_vault("team");
    let adds: [&[&str]; 6] = [
        &[
            "--name",
            "stripe",
            "--host",
            "api.stripe.com",
            "--auth-type",
            "bearer",
            "--token-key",
            "STRIPE_KEY",
        ],
        &[
            "--name",
            "jira",
            "--host",
            "acme.atlassian.net",
            "--auth-type",
            "basic",
            "--username-key",
            "JIRA_USER",
            "--password-key",
            "JIRA_TOKEN",
        ],
        &[
            "--name",
            "anthropic",
            "--host",
            "api.anthropic.com",
            "--auth-type",
            "api-key",
            "--api-key-key",
            "ANTHROPIC_KEY",
            "--api-key-header",
            "x-api-key",
        ],
        &[
            "--name",
            "zendesk",
            "--host",
            "*.zendesk.com",
            "--auth-type",
            "custom",
            "--header",
            "Authorization: Token token={{ ZD_TOKEN }}",
        ],
        &[
            "--name",
            "github-meta",
            "--host",
            "api.github.com/meta",
            "--auth-type",
            "passthrough",
            "--disabled",
        ],
        &[
            "--name",
            "maps",
            "--host",
            "maps.example.com",
            "--auth-type",
            "plugin",
            "--plugin",
            "query-param",
            "--config",
            "name=api_key",
            "--credential",
            "key=MAPS_KEY",
        ],
    ];
    for (index, flags) in adds.iter().enumerate() {
        let mut args = vec!["vault", "service", "add"];
        args.extend_from_slice(flags);
        let count = index + 1;
        let plural = if count == 1 { "service" } else { "services" };
        assert_eq!(
            instance.owner(&args),
            format!("Saved {} in vault team ({count} {plural}).\n", flags[1])
        );
    }

    let yaml = "\
services:
- name: stripe
  host: api.stripe.com
  enabled: true
  auth:
    type: bearer
    token: STRIPE_KEY
- name: jira
  host: acme.atlassian.net
  enabled: true
  auth:
    type: basic
    username: JIRA_USER
    password: JIRA_TOKEN
- name: anthropic
  host: api.anthropic.com
  enabled: true
  auth:
    type: api-key
    key: ANTHROPIC_KEY
    header: x-api-key
- name: zendesk
  host: '*.zendesk.com'
  enabled: true
  auth:
    type: custom
    headers:
      Authorization: Token token={{ ZD_TOKEN }}
- name: github-meta
  host: api.github.com/meta
  enabled: false
  auth:
    type: passthrough
- name: maps
  host: maps.example.com
  enabled: true
  auth:
    type: plugin
    plugin: query-param
    config:
      name: api_key
    credentials:
      key: MAPS_KEY
";
    assert_eq!(instance.owner(&["vault", "service", "list"]), yaml);
    let toml = instance.owner(&["vault", "service", "list", "--format", "toml"]);
    assert!(
        toml.starts_with(
            "[[services]]\nname = \"stripe\"\nhost = \"api.stripe.com\"\nenabled = true\n\n[services.auth]\ntype = \"bearer\"\ntoken = \"STRIPE_KEY\"\n"
        ),
        "{toml}"
    );
    assert!(
        toml.ends_with(
            "[services.auth]\ntype = \"plugin\"\nplugin = \"query-param\"\n\n[services.auth.config]\nname = \"api_key\"\n\n[services.auth.credentials]\nkey = \"MAPS_KEY\"\n"
        ),
        "{toml}"
    );
    let json: Value =
        serde_json::from_str(&instance.owner(&["vault", "service", "list", "--format", "json"]))
            .unwrap();
    assert_eq!(json["services"].as_array().unwrap().len(), 6);

    // What `list` prints, `set -f` reads back: the TOML round trip changes nothing.
    let toml_file = instance.owner.path().join("services.toml");
    std::fs::write(&toml_file, &toml).unwrap();
    assert_eq!(
        instance.owner(&["vault", "service", "set", "-f", toml_file.to_str().unwrap()]),
        "Vault team now has 6 services.\n"
    );
    assert_eq!(instance.owner(&["vault", "service", "list"]), yaml);

    assert_eq!(
        instance.owner(&["vault", "service", "enable", "github-meta"]),
        "Enabled github-meta (api.github.com/meta) in vault team.\n"
    );
    assert_eq!(
        instance.owner(&["vault", "service", "disable", "api.stripe.com"]),
        "Disabled stripe (api.stripe.com) in vault team.\n"
    );
    assert_eq!(
        instance.owner_fails(&["vault", "service", "remove", "jira"]),
        "error: removing service jira needs --yes when standard input is not a terminal\n"
    );
    assert_eq!(
        instance.owner(&["vault", "service", "remove", "jira", "--yes"]),
        "Removed jira (acme.atlassian.net) from vault team (5 services left).\n"
    );
    assert_eq!(
        instance.owner_fails(&["vault", "service", "enable", "jira"]),
        "error: Service not found: jira\n"
    );

    // `set` replaces the whole list, from a YAML file with the port and path apart.
    let yaml_file = instance.owner.path().join("services.yaml");
    std::fs::write(
        &yaml_file,
        "\
services:
  - name: ledger
    host: api.ledger.example
    port: 8443
    path: /v1/*
    auth: {type: bearer, token: LEDGER_TOKEN}
    allow:
      - methods: [GET]
        paths: [/v1/accounts*]
  - name: github
    host: api.github.com
    auth: {type: bearer, token: GITHUB_TOKEN}
",
    )
    .unwrap();
    assert_eq!(
        instance.owner(&["vault", "service", "set", "-f", yaml_file.to_str().unwrap()]),
        "Vault team now has 2 services.\n"
    );
    assert_eq!(
        instance.owner(&["vault", "service", "list"]),
        "\
services:
- name: ledger
  host: api.ledger.example:8443/v1/*
  enabled: true
  auth:
    type: bearer
    token: LEDGER_TOKEN
  allow:
  - methods:
    - GET
    paths:
    - /v1/accounts*
- name: github
  host: api.github.com
  enabled: true
  auth:
    type: bearer
    token: GITHUB_TOKEN
"
    );

    // `add -f -` reads a bare list of YAML from standard input and upserts by name.
    let added = instance
        .owner
        .command(&["vault", "service", "add", "-f", "-"])
        .stdin("- name: github\n  host: api.github.com\n  auth: {type: passthrough}\n- name: slack\n  host: slack.com\n  auth: {type: bearer, token: SLACK_TOKEN}\n")
        .run()
        .ok();
    assert_eq!(added, "Saved github, slack in vault team (3 services).\n");
}

#[test]
fn service_validation_errors_are_printed_as_the_server_words_them() {
    let instance = Instance::start();
    let add = |args: &[&str]| {
        let mut all = vec!["vault", "service", "add"];
        all.extend_from_slice(args);
        instance.owner.run(&all).fails()
    };
    assert_eq!(
        add(&[
            "--name",
            "stripe",
            "--host",
            "api.stripe.com",
            "--auth-type",
            "bearer",
            "--token-key",
            "stripe_key"
        ]),
        "error: Invalid services: service 0: auth: token \"stripe_key\" must be UPPER_SNAKE_CASE (e.g. STRIPE_KEY)\n"
    );
    assert_eq!(
        add(&[
            "--name",
            "local",
            "--host",
            "localhost",
            "--auth-type",
            "passthrough"
        ]),
        "error: Invalid services: service 0: host \"localhost\" is an IP address or internal name; only public host names are allowed (development mode allows them)\n"
    );
    assert_eq!(
        add(&[
            "--name",
            "stripe",
            "--host",
            "api.stripe.com",
            "--auth-type",
            "bearer"
        ]),
        "error: bearer auth needs --token-key (the credential key holding the token)\n"
    );
    assert_eq!(
        add(&[
            "--name",
            "stripe",
            "--host",
            "api.stripe.com",
            "--auth-type",
            "basic",
            "--token-key",
            "STRIPE_KEY"
        ]),
        "error: --token-key is for bearer auth, not basic\n"
    );
    let file = instance.owner.path().join("services.json");
    std::fs::write(
        &file,
        json!({"services": [
            {"name": "stripe", "host": "api.stripe.com", "auth": {"type": "bearer", "token": "STRIPE_KEY"}},
            {"name": "github", "auth": {"type": "bearer", "token": "GITHUB_TOKEN"}}
        ]})
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        add(&["-f", file.to_str().unwrap()]),
        "error: Invalid services: service 1: host is required\n"
    );
    // Nothing of a refused write is kept.
    assert_eq!(
        instance.owner(&["vault", "service", "list"]),
        "services: []\n"
    );
}

#[test]
fn a_placeholder_is_added_from_the_command_line_and_listed_back() {
    let instance = Instance::start();
    let add = |extra: &[&str]| {
        let mut all = vec![
            "vault",
            "service",
            "add",
            "--name",
            "telegram",
            "--host",
            "api.telegram.org",
            "--auth-type",
            "passthrough",
        ];
        all.extend_from_slice(extra);
        instance.owner.run(&all)
    };
    assert_eq!(
        add(&["--substitute", "TELEGRAM_BOT_TOKEN=telegram_token@path"]).fails(),
        "error: Invalid services: service 0: substitution 0: placeholder \"telegram_token\" could \
         be an ordinary word; mark it with __ or . ~ -, e.g. \"__telegram_token__\"\n"
    );
    assert_eq!(
        add(&["--substitute", "TELEGRAM_BOT_TOKEN"]).fails(),
        "error: --substitute \"TELEGRAM_BOT_TOKEN\" must be KEY=PLACEHOLDER[@SURFACES], e.g. \
         BOT_TOKEN=__bot_token__@path\n"
    );
    add(&[
        "--substitute",
        "TELEGRAM_BOT_TOKEN=__telegram_bot_token__@path,body",
        "--substitute",
        "TELEGRAM_CHAT=__chat__",
        "--compressed-responses",
        "pass",
    ])
    .ok();
    assert_eq!(
        instance.owner(&["vault", "service", "list"]),
        "\
services:
- name: telegram
  host: api.telegram.org
  enabled: true
  auth:
    type: passthrough
  substitutions:
  - key: TELEGRAM_BOT_TOKEN
    placeholder: __telegram_bot_token__
    in:
    - path
    - body
  - key: TELEGRAM_CHAT
    placeholder: __chat__
    in:
    - path
    - query
  compressed_responses: pass
"
    );
}

#[test]
fn a_vault_token_is_a_proxy_session_of_that_vault() {
    let instance = Instance::start();
    instance.owner_uses_new_vault("team");
    let minted = instance
        .owner
        .run(&["vault", "token", "--ttl", "1h", "--label", "ci"]);
    let token = minted.ok();
    let token = token.strip_suffix('\n').unwrap();
    assert!(
        token.starts_with("av_sess_") && !token.contains('\n'),
        "{token}"
    );
    assert!(
        minted
            .stderr()
            .starts_with("A proxy token for vault team; it expires at "),
        "{}",
        minted.stderr()
    );
    let (status, me) = instance
        .server
        .call("GET", "/v1/auth/me", Some(token), None);
    assert_eq!(status, 200);
    assert_eq!(
        me,
        json!({"type": "session", "vault": "team", "vault_role": "proxy"})
    );
    assert_eq!(
        instance.owner_fails(&["vault", "token", "--ttl", "1m"]),
        "error: ttl_seconds must be between 300 and 604800\n"
    );
    assert_eq!(
        instance.owner_fails(&["vault", "token", "--ttl", "soon"]),
        "error: --ttl \"soon\" is not a duration: use seconds or a number with s, m, h or d (e.g. 30m, 24h, 7d)\n"
    );
}

#[test]
fn an_agent_gets_its_token_once_and_loses_it_on_rotation_and_revocation() {
    let instance = Instance::start();
    instance.owner_uses_new_vault("team");
    instance.owner(&["vault", "credential", "set", "STRIPE_KEY=sk_test_1"]);

    let created = instance
        .owner
        .run(&["agent", "create", "bot", "--vault", "team"]);
    let first = created.ok().trim_end().to_owned();
    assert!(first.starts_with("av_agt_"), "{first}");
    assert_eq!(
        created.stderr(),
        "Created agent bot (no-access; vaults: team:proxy). This is its token; it will not be shown again.\n"
    );
    let listed = instance.owner(&["agent", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines[0], "NAME  ROLE       STATUS  VAULTS      CREATED");
    assert!(
        lines[1].starts_with("bot   no-access  active  team:proxy  20"),
        "{listed}"
    );

    // The agent's own machine: no session, the token and server in its environment.
    let agent_machine = DataDir::new();
    let as_agent = |token: &str, args: &[&str]| {
        agent_machine
            .command(args)
            .env("AGENT_VAULT_TOKEN", token)
            .env("AGENT_VAULT_ADDR", &instance.server.url())
            .env("AGENT_VAULT_VAULT", "team")
            .run()
    };
    assert_eq!(
        as_agent(&first, &["vault", "credential", "list"]).ok(),
        "STRIPE_KEY\n"
    );
    assert_eq!(
        as_agent(&first, &["vault", "credential", "list", "--reveal"]).fails(),
        "error: Credential values are shown only to people signed in with their own login; \
         agents and vault sessions can set and delete credentials but never read them back\n"
    );

    let second = instance
        .owner(&["agent", "rotate", "bot"])
        .trim_end()
        .to_owned();
    assert!(second.starts_with("av_agt_") && second != first, "{second}");
    let me = |token: &str| {
        instance
            .server
            .call("GET", "/v1/auth/me", Some(token), None)
    };
    assert_eq!(me(&first).0, 401);
    assert_eq!(me(&second).0, 200);
    assert_eq!(me(&second).1["agent_name"], "bot");
    assert_eq!(
        as_agent(&first, &["vault", "credential", "list"]).fails(),
        "error: the token in AGENT_VAULT_TOKEN was refused: Invalid or expired session\n"
    );

    assert_eq!(
        instance.owner(&["agent", "revoke", "bot"]),
        "Revoked agent bot: its token and the sessions it minted no longer work.\n"
    );
    assert_eq!(me(&second).0, 401);
    assert_eq!(
        instance.owner_fails(&["agent", "delete", "bot"]),
        "error: deleting agent bot needs --yes when standard input is not a terminal\n"
    );
    assert_eq!(
        instance.owner(&["agent", "delete", "bot", "--yes"]),
        "Deleted agent bot.\n"
    );
    assert_eq!(
        instance.owner(&["agent", "list"]),
        "NAME  ROLE  STATUS  VAULTS  CREATED\n"
    );
    assert_eq!(
        instance.owner_fails(&["agent", "rotate", "bot"]),
        "error: Agent not found: bot\n"
    );
}

#[test]
fn an_invited_user_joins_through_the_cli() {
    let instance = Instance::start();
    instance.owner_uses_new_vault("team");
    let invited = instance
        .owner
        .run(&["user", "invite", "bob@example.com", "--vault", "team"]);
    let link = invited.ok().trim_end().to_owned();
    let prefix = format!("{}/invite/av_uinv_", instance.server.url());
    assert!(link.starts_with(&prefix), "{link}");
    assert!(
        invited.stderr().ends_with(&format!(
            "They join with:\n  agent-vault auth accept-invite {link}\n"
        )),
        "{}",
        invited.stderr()
    );

    // Bob, on his own machine, has only the link: it names the server.
    let bob = DataDir::new();
    let bob_password = "bob's own password";
    let joined = bob
        .command(&["auth", "accept-invite", &link, "--password-stdin"])
        .stdin(&format!("{bob_password}\n"))
        .run();
    assert_eq!(
        joined.ok(),
        "Joined as bob@example.com (member); logged in.\n"
    );
    assert_eq!(
        bob.run(&["vault", "list"]).ok(),
        "  NAME  ROLE    MEMBERSHIP\n  team  member  explicit\n"
    );
    let again = bob
        .command(&["auth", "accept-invite", &link, "--password-stdin"])
        .stdin(&format!("{bob_password}\n"))
        .run();
    assert_eq!(
        again.fails(),
        "error: This invite was already used; ask for a new one\n"
    );

    let users = instance.owner(&["user", "list"]);
    let lines: Vec<&str> = users.lines().collect();
    assert_eq!(
        lines[0],
        "EMAIL              ROLE    VAULTS                    CREATED"
    );
    assert!(
        lines[1].starts_with("bob@example.com    member  team:member               20"),
        "{users}"
    );
    assert!(
        lines[2].starts_with("owner@example.com  owner   default:admin,team:admin  20"),
        "{users}"
    );

    assert_eq!(
        bob.run(&["auth", "logout"]).ok(),
        format!("Logged out of {}.\n", instance.server.url())
    );
    assert_eq!(bob.run(&["auth", "logout"]).ok(), "Not logged in.\n");
    let login = |password: &str| {
        bob.command(&[
            "auth",
            "login",
            "--address",
            &instance.server.url(),
            "--email",
            "bob@example.com",
            "--password-stdin",
        ])
        .stdin(&format!("{password}\n"))
        .run()
    };
    assert_eq!(
        login("not bob's password").fails(),
        "error: Invalid email or password\n"
    );
    assert_eq!(
        login(bob_password).ok(),
        "Logged in as bob@example.com (member).\n"
    );

    // An owner removes Bob: his session ends with him.
    let (status, _) = instance.server.call(
        "DELETE",
        "/v1/admin/users/bob@example.com",
        Some(&session_token(&instance.owner)),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        bob.run(&["vault", "list"]).fails(),
        "error: not logged in or session expired (run `agent-vault auth login`): Invalid or expired session\n"
    );
}

#[test]
fn the_master_password_changes_while_the_server_runs_and_counts_from_its_next_start() {
    let Instance {
        server_data,
        server,
        owner,
    } = Instance::start();
    owner
        .run(&["vault", "credential", "set", "STRIPE_KEY=sk_test_kept"])
        .ok();
    let new_password = "a brand new master password";

    let wrong = server_data
        .command(&["master-password", "change", "--password-stdin"])
        .stdin(&format!("not the master password\n{new_password}\n"))
        .run();
    assert_eq!(
        wrong.fails(),
        "error: the current master password is wrong; nothing was changed\n"
    );
    let changed = server_data
        .command(&["master-password", "change", "--password-stdin"])
        .stdin(&format!("{MASTER_PASSWORD}\n{new_password}\n"))
        .run();
    assert_eq!(
        changed.ok(),
        "Master password changed. A running server keeps its unlocked key; from its next start it needs the new password.\n"
    );
    // The running server is unaffected.
    assert_eq!(
        owner.run(&["vault", "credential", "list"]).ok(),
        "STRIPE_KEY\n"
    );
    drop(server);

    let old = server_data
        .command(&["server", "--port", "0"])
        .env("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD)
        .run();
    assert!(
        old.fails()
            .contains("error: wrong master password: give the one chosen when"),
        "{}",
        old.stderr()
    );
    let server = Server::start_with(
        &server_data,
        &[],
        &[("AGENT_VAULT_MASTER_PASSWORD", new_password)],
    );
    // The server moved to a new port; the session is still good there.
    let moved = |args: &[&str]| {
        owner
            .command(args)
            .env("AGENT_VAULT_ADDR", &server.url())
            .run()
            .ok()
    };
    assert_eq!(
        moved(&["vault", "credential", "list", "--reveal"]),
        "STRIPE_KEY=sk_test_kept\n"
    );
}

#[test]
fn removing_the_master_password_needs_a_confirmation() {
    let Instance {
        server_data,
        server,
        owner: _,
    } = Instance::start();
    drop(server);
    let refused = server_data
        .command(&[
            "master-password",
            "change",
            "--password-stdin",
            "--passwordless",
        ])
        .stdin(&format!("{MASTER_PASSWORD}\n"))
        .run();
    let refusal = refused.fails();
    assert!(
        refusal.starts_with("warning: passwordless mode: the data key is stored unencrypted"),
        "{refusal}"
    );
    assert!(
        refusal.ends_with(
            "\nerror: removing the master password needs --yes when standard input is not a terminal\n"
        ),
        "{refusal}"
    );
    let removed = server_data
        .command(&[
            "master-password",
            "change",
            "--password-stdin",
            "--passwordless",
            "--yes",
        ])
        .stdin(&format!("{MASTER_PASSWORD}\n"))
        .run();
    assert_eq!(
        removed.ok(),
        "Master password removed. A running server keeps its unlocked key; from its next start it needs no password.\n"
    );
    // No password now: the server starts without one.
    let server = Server::start_with(&server_data, &[], &[]);
    assert_eq!(server.call("GET", "/health", None, None).0, 200);
}

#[test]
fn commands_say_when_nobody_is_logged_in_or_the_server_is_down() {
    let nobody = DataDir::new();
    assert_eq!(
        nobody.run(&["vault", "list"]).fails(),
        "error: not logged in (run `agent-vault auth login`, or set AGENT_VAULT_TOKEN)\n"
    );

    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("http://127.0.0.1:{closed_port}");
    let unreachable = format!(
        "error: the server is not reachable at {address} (connection refused); start it with `agent-vault server`, or point the CLI at it with --address or AGENT_VAULT_ADDR\n"
    );
    let login = nobody
        .command(&[
            "auth",
            "login",
            "--address",
            &address,
            "--email",
            OWNER,
            "--password-stdin",
        ])
        .stdin("whatever password\n")
        .run();
    assert_eq!(login.fails(), unreachable);
    let agent = nobody
        .command(&["vault", "service", "list"])
        .env("AGENT_VAULT_TOKEN", "av_agt_0000")
        .env("AGENT_VAULT_ADDR", &address)
        .run();
    assert_eq!(agent.fails(), unreachable);

    // A second owner cannot register; people join by invite.
    let instance = Instance::start();
    let second = DataDir::new();
    let registered = second
        .command(&[
            "auth",
            "register",
            "--address",
            &instance.server.url(),
            "--email",
            "eve@example.com",
            "--password-stdin",
        ])
        .stdin("eve's password\n")
        .run();
    assert_eq!(
        registered.fails(),
        "error: This instance already has an owner; new users join by invite (ask an owner or member to run `agent-vault user invite`)\n"
    );
    assert_eq!(
        second
            .run(&["auth", "login", "--address", &instance.server.url()])
            .fails(),
        "error: pass --email (standard input is not a terminal to ask on)\n"
    );
}

#[test]
fn a_changed_password_ends_every_other_session_and_the_old_password() {
    let instance = Instance::start();
    // A second login of the same owner, elsewhere.
    let laptop = instance.owner_logs_in_elsewhere();
    let old_token = session_token(&instance.owner);
    let laptops_device = device_token_of(&laptop);
    let old_device = device_token_of(&instance.owner);
    assert_eq!(
        instance.owner(&["account", "whoami"]),
        "owner@example.com (owner)\n"
    );

    // A wrong current password changes nothing.
    let wrong = instance
        .owner
        .command(&["account", "change-password", "--password-stdin"])
        .stdin("not my password\nsomething new and long\n")
        .run()
        .fails();
    assert!(wrong.contains("The current password is wrong"), "{wrong}");
    let short = instance
        .owner
        .command(&["account", "change-password", "--password-stdin"])
        .stdin(&format!("{OWNER_PASSWORD}\nshort\n"))
        .run()
        .fails();
    assert!(short.contains("Password must be at least"), "{short}");
    assert_eq!(
        laptop.run(&["account", "whoami"]).ok(),
        "owner@example.com (owner)\n"
    );

    let changed = instance
        .owner
        .command(&["account", "change-password", "--password-stdin"])
        .stdin(&format!("{OWNER_PASSWORD}\na brand new passphrase\n"))
        .run()
        .ok();
    assert_eq!(
        changed,
        "Password changed for owner@example.com; your other sessions have ended.\n"
    );
    // This CLI keeps working with its renewed session; the old token and the other login
    // are dead, and so is the old password.
    assert_ne!(session_token(&instance.owner), old_token);
    assert_eq!(
        instance.owner(&["account", "whoami"]),
        "owner@example.com (owner)\n"
    );
    let (status, _) = instance
        .server
        .call("GET", "/v1/auth/me", Some(&old_token), None);
    assert_eq!(status, 401);
    let ended = laptop.run(&["account", "whoami"]).fails();
    assert!(
        ended.contains("not logged in or session expired"),
        "{ended}"
    );
    let (status, _) = instance.server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": OWNER, "password": OWNER_PASSWORD })),
    );
    assert_eq!(status, 401);
    let (status, _) = instance.server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": OWNER, "password": "a brand new passphrase" })),
    );
    assert_eq!(status, 200);

    // Every device token of the owner ended with the old password: signing in with one
    // counts as signing in without (and hands out a new one). The CLI that changed the
    // password was given a new one, which counts.
    let new_device = device_token_of(&instance.owner);
    assert_ne!(new_device, old_device);
    let signs_in_with = |device: &str| {
        let (status, answer) = instance.server.call(
            "POST",
            "/v1/auth/login",
            None,
            Some(&json!({ "email": OWNER, "password": "a brand new passphrase", "device_token": device })),
        );
        assert_eq!(status, 200, "{answer}");
        answer.get("device_token").cloned()
    };
    for ended in [&laptops_device, &old_device] {
        let given = signs_in_with(ended).expect("a new device token");
        assert!(given.as_str().unwrap().starts_with("av_dev_"), "{given}");
    }
    assert_eq!(signs_in_with(&new_device), None);
}

#[test]
fn a_user_lists_their_login_sessions_and_ends_one_elsewhere() {
    let instance = Instance::start();
    let laptop = instance.owner_logs_in_elsewhere();
    let listed = instance.owner(&["auth", "sessions"]);
    let (sessions, devices) = listed
        .split_once("\nDevice tokens (clients that signed in before):\n")
        .unwrap_or_else(|| panic!("{listed}"));
    // Two device tokens: this CLI's, given when it registered, and the laptop's.
    let devices: Vec<&str> = devices.lines().collect();
    assert_eq!(devices.len(), 3, "{listed}");
    assert!(devices[0].starts_with("ID  "), "{listed}");
    let lines: Vec<&str> = sessions.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[0].starts_with("ID  "), "{listed}");
    let ours: Vec<&&str> = lines[1..]
        .iter()
        .filter(|line| line.ends_with('*'))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "exactly this CLI's session is marked: {listed}"
    );
    let laptop_id = lines[1..]
        .iter()
        .find(|line| !line.ends_with('*'))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();

    assert_eq!(
        instance.owner(&["auth", "sessions", "revoke", laptop_id]),
        format!("Ended session {laptop_id}.\n")
    );
    assert!(
        laptop
            .run(&["account", "whoami"])
            .fails()
            .contains("not logged in or session expired")
    );
    let listed = instance.owner(&["auth", "sessions", "list"]);
    assert_eq!(
        listed.split_once("\n\n").unwrap().0.lines().count(),
        2,
        "{listed}"
    );
    let unknown = instance.owner_fails(&["auth", "sessions", "revoke", laptop_id]);
    assert!(unknown.contains("No such session of yours"), "{unknown}");

    // Ending a device token: its client signs in as a new one, and is given another.
    let (_, listed) = instance.server.call(
        "GET",
        "/v1/auth/sessions",
        Some(&session_token(&instance.owner)),
        None,
    );
    let ids: Vec<&str> = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|device| device["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    let laptops_device = device_token_of(&laptop);
    for id in &ids {
        assert_eq!(
            instance.owner(&["auth", "sessions", "revoke-device", id]),
            format!("Ended device token {id}.\n")
        );
    }
    let unknown = instance.owner_fails(&["auth", "sessions", "revoke-device", ids[0]]);
    assert_eq!(unknown, "error: No such device of yours\n");
    laptop
        .command(&["auth", "login", "--email", OWNER, "--password-stdin"])
        .stdin(&format!("{OWNER_PASSWORD}\n"))
        .run()
        .ok();
    assert_ne!(device_token_of(&laptop), laptops_device);
}

#[test]
fn a_vault_is_renamed_and_the_cli_follows_it() {
    let instance = Instance::start();
    instance.owner_uses_new_vault("staging");
    instance.owner(&["vault", "credential", "set", "API_KEY=sk_test_rename"]);
    assert_eq!(
        instance.owner(&["vault", "rename", "staging", "preprod"]),
        "Renamed vault staging to preprod.\n"
    );
    // The current vault followed, and the credentials are where they were.
    assert_eq!(instance.owner(&["vault", "current"]), "preprod\n");
    assert!(
        instance
            .owner(&["vault", "credential", "list"])
            .contains("API_KEY")
    );
    let gone = instance.owner_fails(&["vault", "credential", "list", "--vault", "staging"]);
    assert!(gone.contains("Vault not found: staging"), "{gone}");

    instance.owner(&["vault", "create", "other"]);
    let taken = instance.owner_fails(&["vault", "rename", "preprod", "other"]);
    assert!(taken.contains("vault other already exists"), "{taken}");
    let default = instance.owner_fails(&["vault", "rename", "default", "main"]);
    assert!(
        default.contains("Cannot rename the default vault"),
        "{default}"
    );
    let bad = instance.owner_fails(&["vault", "rename", "preprod", "Not A Slug"]);
    assert!(
        bad.contains("must be lower-case letters, digits and hyphens"),
        "{bad}"
    );
}

#[test]
fn an_agent_is_renamed_and_given_another_role_keeping_its_token() {
    let instance = Instance::start();
    instance.owner_uses_new_vault("team");
    let token = instance
        .owner(&["agent", "create", "bot", "--vault", "team"])
        .trim_end()
        .to_owned();
    let as_agent = |args: &[&str]| {
        DataDir::new()
            .command(args)
            .env("AGENT_VAULT_TOKEN", &token)
            .env("AGENT_VAULT_ADDR", &instance.server.url())
            .run()
    };
    assert_eq!(
        as_agent(&["account", "whoami"]).ok(),
        "agent bot (no-access)\n"
    );

    assert_eq!(
        instance.owner(&["agent", "rename", "bot", "billing-bot"]),
        "Renamed agent bot to billing-bot.\n"
    );
    assert_eq!(
        instance.owner(&["agent", "role", "billing-bot", "member"]),
        "Agent billing-bot is now member (was no-access).\n"
    );
    // The same token, under its new name and role.
    assert_eq!(
        as_agent(&["account", "whoami"]).ok(),
        "agent billing-bot (member)\n"
    );
    assert!(
        instance
            .owner(&["agent", "list"])
            .contains("billing-bot  member")
    );

    instance.owner(&["agent", "create", "other-bot"]);
    let taken = instance.owner_fails(&["agent", "rename", "other-bot", "billing-bot"]);
    assert!(
        taken.contains("agent billing-bot already exists"),
        "{taken}"
    );
    let unknown = instance.owner_fails(&["agent", "role", "nobody", "member"]);
    assert!(unknown.contains("Agent not found: nobody"), "{unknown}");
    // A revoked agent keeps its role until it is reactivated.
    instance.owner(&["agent", "revoke", "other-bot"]);
    let revoked = instance.owner_fails(&["agent", "role", "other-bot", "member"]);
    assert!(
        revoked.contains("Agent other-bot is revoked; rotate its token to reactivate it first"),
        "{revoked}"
    );
}

#[test]
fn the_services_using_a_credential_are_listed_before_it_goes() {
    let instance = Instance::start();
    instance.owner(&[
        "vault",
        "credential",
        "set",
        "SHARED_KEY=sk_shared",
        "OTHER_KEY=sk_other",
    ]);
    for (name, host, key) in [
        ("payments", "api.stripe.com", "SHARED_KEY"),
        ("billing", "billing.example.com", "SHARED_KEY"),
        ("search", "api.search.example", "OTHER_KEY"),
    ] {
        instance.owner(&[
            "vault",
            "service",
            "add",
            "--name",
            name,
            "--host",
            host,
            "--auth-type",
            "bearer",
            "--token-key",
            key,
        ]);
    }
    let token = session_token(&instance.owner);
    let usage = |query: &str| {
        instance.server.call(
            "GET",
            &format!("/v1/vaults/default/services/credential-usage{query}"),
            Some(&token),
            None,
        )
    };
    let (status, answer) = usage("?key=SHARED_KEY");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({ "services": [
            { "name": "payments", "host": "api.stripe.com" },
            { "name": "billing", "host": "billing.example.com" },
        ] })
    );
    assert_eq!(usage("?key=UNUSED").1, json!({ "services": [] }));
    let (status, answer) = usage("");
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("key is required"))
    );
}

#[test]
fn a_caller_reads_its_role_in_a_vault_and_owners_list_every_vault() {
    let instance = Instance::start();
    instance.owner(&["vault", "create", "team"]);
    let owner = session_token(&instance.owner);
    let vault_token = instance.owner(&["vault", "token", "--vault", "team"]);
    let vault_token = vault_token.trim_end();
    let get = |path: &str, token: &str| instance.server.call("GET", path, Some(token), None);

    assert_eq!(
        get("/v1/vaults/team/context", &owner),
        (200, json!({ "vault_name": "team", "vault_role": "admin" }))
    );
    assert_eq!(
        get("/v1/vaults/team/context", vault_token),
        (200, json!({ "vault_name": "team", "vault_role": "proxy" }))
    );
    assert_eq!(get("/v1/vaults/default/context", vault_token).0, 403);

    let (status, all) = get("/v1/admin/vaults", &owner);
    assert_eq!(status, 200, "{all}");
    let vaults: Vec<(&str, bool)> = all["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vault| (vault["name"].as_str().unwrap(), vault["is_default"] == true))
        .collect();
    assert_eq!(vaults, [("default", true), ("team", false)]);
    assert_eq!(get("/v1/admin/vaults", vault_token).0, 403);
}

#[test]
fn an_owner_leaves_a_vault_another_admin_keeps_and_joins_it_again() {
    let instance = Instance::start();
    instance.owner(&["vault", "create", "team"]);
    assert!(
        instance
            .owner_fails(&["vault", "join", "team"])
            .contains("You are already a member of vault team")
    );
    assert!(
        instance
            .owner_fails(&["vault", "leave", "team"])
            .contains("This would leave the vault without an admin")
    );
    instance.owner(&["agent", "create", "ops", "--vault", "team:admin"]);
    assert_eq!(
        instance.owner(&["vault", "leave", "team"]),
        "You left vault team.\n"
    );
    assert!(
        instance
            .owner_fails(&["vault", "leave", "team"])
            .contains("You have no grant in vault team to leave")
    );
    assert_eq!(
        instance.owner(&["vault", "join", "team"]),
        "Joined vault team as an admin.\n"
    );
    let vault_token = instance.owner(&["vault", "token", "--vault", "team"]);
    let (status, answer) = instance.server.call(
        "POST",
        "/v1/vaults/team/leave",
        Some(vault_token.trim_end()),
        Some(&json!({})),
    );
    assert_eq!(status, 403, "{answer}");
}

/// The security issue's item 6: any local process could lock the owner out of signing in by
/// failing 50 times, because failures counted per client address and every local client is
/// 127.0.0.1. Failures now count per account and address, and a client that signed in to the
/// account before (the owner's CLI, the owner's browser) shows its device token and counts
/// apart, even at the owner's own account from the owner's own address.
#[test]
fn another_clients_failed_sign_ins_never_lock_the_owner_out() {
    let server_data = DataDir::new();
    // Behind a reverse proxy on this host, which says who it talked to in X-Forwarded-For;
    // a request without it comes from this host itself.
    // Failures come back one every half hour (50 a day), so that however slowly this machine
    // hashes passwords, none is back before the test is done.
    let server = Server::start_with(
        &server_data,
        &["--trusted-proxies", "127.0.0.1"],
        &[
            ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
            ("AGENT_VAULT_RATELIMIT_AUTH_WINDOW", "24h"),
        ],
    );
    let owner = DataDir::new();
    let owner_signs_in = || {
        owner
            .command(&[
                "auth",
                "login",
                "--address",
                &server.url(),
                "--email",
                OWNER,
                "--password-stdin",
            ])
            .stdin(&format!("{OWNER_PASSWORD}\n"))
            .run()
    };
    owner
        .command(&[
            "auth",
            "register",
            "--address",
            &server.url(),
            "--email",
            OWNER,
            "--password-stdin",
        ])
        .stdin(&format!("{OWNER_PASSWORD}\n"))
        .run()
        .ok();
    let sign_in_with =
        |forwarded_for: Option<&str>, email: &str, password: &str, device: Option<&str>| {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(client) = forwarded_for {
                headers.push(("x-forwarded-for", client));
            }
            let mut body = json!({ "email": email, "password": password });
            if let Some(device) = device {
                body["device_token"] = json!(device);
            }
            let answer = crate::proxy::send_raw(
                &server.address,
                "POST",
                "/v1/auth/login",
                &headers,
                body.to_string().as_bytes(),
            );
            let retry_after = answer.header("retry-after").map(str::to_owned);
            (answer.status, answer.json()["error"].clone(), retry_after)
        };
    let sign_in = |forwarded_for: Option<&str>, email: &str, password: &str| {
        sign_in_with(forwarded_for, email, password, None)
    };
    let invalid = (401, json!("Invalid email or password"), None);

    // The owner's browser logged in on an approval page once, and keeps its cookies.
    let owners_session = session_token(&owner);
    let approval_page = proposal_approval_page(&server, &owners_session);
    let browser_logs_in = |cookies: &[String]| {
        let form = format!(
            "token={}&email=owner%40example.com&password={}",
            approval_page.token,
            OWNER_PASSWORD.replace(' ', "+")
        );
        let cookie = cookies.join("; ");
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if !cookie.is_empty() {
            headers.push(("cookie", &cookie));
        }
        crate::proxy::send_raw(
            &server.address,
            "POST",
            &format!("/approve/{}/login", approval_page.id),
            &headers,
            form.as_bytes(),
        )
    };
    let first_visit = browser_logs_in(&[]);
    assert_eq!(first_visit.status, 303);
    let browser_cookies = set_cookies(&first_visit);

    // Bob, a colleague, has signed in from his own CLI.
    let bob = DataDir::new();
    let invite = owner.run(&["user", "invite", "bob@example.com"]).ok();
    bob.command(&[
        "auth",
        "accept-invite",
        invite.trim_end(),
        "--password-stdin",
    ])
    .stdin("bob's own password\n")
    .run()
    .ok();

    // Another process on the owner's machine fails 60 times at other accounts...
    for n in 0..60 {
        let email = format!("guess{n}@example.com");
        assert_eq!(sign_in(None, &email, "wrong password"), invalid, "{n}");
    }
    // ... and the owner, from that same machine, signs in.
    assert_eq!(
        owner_signs_in().ok(),
        "Logged in as owner@example.com (owner).\n"
    );

    // Then it fails 60 times at the owner's own account...
    for n in 0..50 {
        assert_eq!(sign_in(None, OWNER, "wrong password"), invalid, "{n}");
    }
    let assert_held_back = |(status, error, retry_after): (u16, Value, Option<String>)| {
        assert_eq!(status, 429, "{error}");
        let seconds = retry_after.expect("a Retry-After header");
        assert_eq!(
            error,
            format!(
                "Too many failed sign-ins to this account from your address; try again in \
                 {seconds} s"
            )
        );
        assert!(seconds.parse::<u64>().unwrap() > 0);
    };
    for _ in 50..60 {
        assert_held_back(sign_in(None, OWNER, "wrong password"));
    }
    // ... and the owner's CLI, which signed in before, signs in at once, from the same
    // address.
    assert_eq!(
        owner_signs_in().ok(),
        "Logged in as owner@example.com (owner).\n"
    );
    let owners_device = device_token_of(&owner);
    let (status, answer) = server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": OWNER, "password": OWNER_PASSWORD, "device_token": owners_device })),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("device_token").is_none(), "{answer}");

    // A client without the device token is held back, even with the right password; and so
    // it is with a device token it made up, with Bob's, or with something that is no device
    // token at all: each counts as none.
    assert_held_back(sign_in(None, OWNER, OWNER_PASSWORD));
    let made_up = format!("av_dev_{}", "5".repeat(64));
    assert_held_back(sign_in_with(None, OWNER, OWNER_PASSWORD, Some(&made_up)));
    let bobs = device_token_of(&bob);
    assert!(bobs.starts_with("av_dev_"), "{bobs}");
    assert_held_back(sign_in_with(None, OWNER, OWNER_PASSWORD, Some(&bobs)));
    assert_held_back(sign_in_with(None, OWNER, OWNER_PASSWORD, Some("\u{0}")));

    // The owner's browser signs in with its cookies too; without them it would wait.
    let held_back = browser_logs_in(&[]);
    assert_eq!(held_back.status, 429);
    assert!(
        String::from_utf8_lossy(&held_back.body)
            .contains("Too many failed sign-ins to this account from your address"),
    );
    let device_cookie = browser_cookies
        .iter()
        .find(|cookie| cookie.starts_with("av_device="))
        .expect("an av_device cookie");
    let again = browser_logs_in(std::slice::from_ref(device_cookie));
    assert_eq!(again.status, 303);
    let cookies_again = set_cookies(&again);
    assert_eq!(
        cookies_again.iter().find(|c| c.starts_with("av_device=")),
        Some(device_cookie),
        "the same device token, set again"
    );

    // The local process is held back at the owner's account only: not at Bob's, and
    // nobody else is held back at the owner's.
    assert_eq!(sign_in(None, "bob@example.com", "a guess"), invalid);
    assert_eq!(sign_in(Some("198.51.100.7"), OWNER, OWNER_PASSWORD).0, 200);
}

/// A proposal's approval page, made for the owner to log in on.
struct ApprovalPage {
    id: u64,
    token: String,
}

fn proposal_approval_page(server: &Server, owners_session: &str) -> ApprovalPage {
    let (status, minted) = server.call(
        "POST",
        "/v1/sessions",
        Some(owners_session),
        Some(&json!({ "vault": "default" })),
    );
    assert_eq!(status, 200, "{minted}");
    let (status, proposed) = server.call(
        "POST",
        "/v1/proposals",
        minted["token"].as_str(),
        Some(&json!({
            "services": [{ "name": "items", "host": "api.test.example",
                           "auth": { "type": "bearer", "token": "ITEMS_KEY" },
                           "allow": [{ "methods": ["GET"], "paths": ["/v1/*"] }] }],
            "credentials": [{ "key": "ITEMS_KEY", "description": "The items API key" }],
            "message": "I need to read the items API",
        })),
    );
    assert_eq!(status, 201, "{proposed}");
    let url = proposed["approval_url"].as_str().unwrap();
    ApprovalPage {
        id: proposed["id"].as_u64().unwrap(),
        token: url.rsplit('=').next().unwrap().to_owned(),
    }
}

/// The `name=value` of each cookie a response sets, after checking it is kept from scripts
/// and other sites, and sent only to the approval pages.
fn set_cookies(answer: &crate::proxy::Answer) -> Vec<String> {
    answer
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .map(|(_, cookie)| {
            let mut parts = cookie.split("; ");
            let pair = parts.next().unwrap().to_owned();
            let attributes: Vec<&str> = parts.collect();
            assert_eq!(
                attributes[..3],
                ["HttpOnly", "SameSite=Strict", "Path=/"],
                "{cookie}"
            );
            pair
        })
        .collect()
}

/// The device token `auth` kept in a CLI data directory (its only one).
fn device_token_of(cli: &DataDir) -> String {
    let text = std::fs::read_to_string(cli.path().join("session.json")).unwrap();
    let session: Value = serde_json::from_str(&text).unwrap();
    let devices = session["device_tokens"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{session:#}");
    devices[0]["token"].as_str().unwrap().to_owned()
}
