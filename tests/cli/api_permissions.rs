//! The permission table (roles and permissions, section 4.3 of the Agent Vault research),
//! row by row, over the HTTP API of a real server: every capability, tried by an actor of
//! each role, with the status and message each must get.

use serde_json::{Value, json};

use crate::support::{DataDir, Server};

/// Everyone the table speaks of, in one instance with one shared vault `team`.
struct World {
    server: Server,
    _data: DataDir,
    owner: String,
    vault_admin: String,
    vault_member: String,
    no_access: String,
    proxy_agent: String,
    scoped: String,
}

impl World {
    fn new() -> World {
        let data = DataDir::new();
        let server = Server::start(&data);
        let owner = register_owner(&server);
        ok(
            &server,
            "POST",
            "/v1/vaults",
            &owner,
            json!({ "name": "team" }),
        );
        let vault_admin = invited(
            &server,
            &owner,
            "admin@example.com",
            "member",
            Some("admin"),
        );
        let vault_member = invited(
            &server,
            &owner,
            "member@example.com",
            "member",
            Some("member"),
        );
        let no_access = invited(&server, &owner, "nobody@example.com", "no-access", None);
        let agent = ok(
            &server,
            "POST",
            "/v1/agents",
            &owner,
            json!({ "name": "proxy-bot", "vaults": [{ "vault_name": "team", "vault_role": "proxy" }] }),
        );
        let proxy_agent = agent["av_agent_token"].as_str().unwrap().to_owned();
        let session = ok(
            &server,
            "POST",
            "/v1/sessions",
            &owner,
            json!({ "vault": "team" }),
        );
        let scoped = session["token"].as_str().unwrap().to_owned();
        ok(
            &server,
            "POST",
            "/v1/credentials",
            &owner,
            json!({ "vault": "team", "credentials": { "STRIPE_KEY": "sk_test_team" } }),
        );
        World {
            server,
            _data: data,
            owner,
            vault_admin,
            vault_member,
            no_access,
            proxy_agent,
            scoped,
        }
    }

    fn token(&self, who: Who) -> &str {
        match who {
            Who::Owner => &self.owner,
            Who::VaultAdmin => &self.vault_admin,
            Who::VaultMember => &self.vault_member,
            Who::NoAccess => &self.no_access,
            Who::ProxyAgent => &self.proxy_agent,
            Who::Scoped => &self.scoped,
        }
    }

    fn call(&self, who: Who, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.server
            .call(method, path, Some(self.token(who)), Some(&body))
    }

    /// Assert what each actor gets for one request: `Ok(status)` or `Err((status, message))`.
    fn expect(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Value,
        outcomes: &[(Who, Outcome)],
    ) {
        for (who, expected) in outcomes {
            let (status, answer) = self.call(*who, method, path, body.clone());
            match expected {
                Ok(code) => {
                    assert_eq!(status, *code, "{what}: {who:?} {method} {path} -> {answer}")
                }
                Err((code, message)) => {
                    assert_eq!(status, *code, "{what}: {who:?} {method} {path} -> {answer}");
                    assert_eq!(answer["error"], *message, "{what}: {who:?} {method} {path}");
                }
            }
        }
    }
}

/// What one actor gets: `Ok(status)`, or `Err((status, error message))`.
type Outcome = Result<u16, (u16, &'static str)>;

#[derive(Debug, Clone, Copy)]
enum Who {
    Owner,
    VaultAdmin,
    VaultMember,
    NoAccess,
    ProxyAgent,
    Scoped,
}

fn ok(server: &Server, method: &str, path: &str, token: &str, body: Value) -> Value {
    let (status, answer) = server.call(method, path, Some(token), Some(&body));
    assert!(
        (200..300).contains(&status),
        "{method} {path} -> {status} {answer}"
    );
    answer
}

fn register_owner(server: &Server) -> String {
    let (status, answer) = server.call(
        "POST",
        "/v1/auth/register",
        None,
        Some(&json!({ "email": "owner@example.com", "password": "owner password" })),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["role"], "owner");
    answer["token"].as_str().unwrap().to_owned()
}

/// Invite `email` with an instance role (and a role in `team`), accept, return the login token.
fn invited(
    server: &Server,
    owner: &str,
    email: &str,
    role: &str,
    team_role: Option<&str>,
) -> String {
    let vaults = match team_role {
        Some(team_role) => json!([{ "vault_name": "team", "vault_role": team_role }]),
        None => json!([]),
    };
    let invite = ok(
        server,
        "POST",
        "/v1/users/invites",
        owner,
        json!({ "email": email, "role": role, "vaults": vaults }),
    );
    let token = invite["token"].as_str().unwrap();
    assert!(invite["invite_link"].as_str().unwrap().ends_with(token));
    let (status, accepted) = server.call(
        "POST",
        &format!("/v1/users/invites/{token}/accept"),
        None,
        Some(&json!({ "password": "a user password" })),
    );
    assert_eq!(status, 200, "{accepted}");
    accepted["token"].as_str().unwrap().to_owned()
}

const MEMBER_REQUIRED: (u16, &str) = (403, "Member role required");
const ADMIN_REQUIRED: (u16, &str) = (403, "Admin role required");
const NO_VAULT_ACCESS: (u16, &str) = (403, "No access to this vault");
const INSTANCE_MEMBER_REQUIRED: (u16, &str) = (403, "Instance member role required");
const OWNER_REQUIRED: (u16, &str) = (403, "Owner role required");
const VALUES_ARE_FOR_PEOPLE: (u16, &str) = (
    403,
    "Credential values are shown only to people signed in with their own login; agents and \
     vault sessions can set and delete credentials but never read them back",
);
const NEEDS_ACCOUNT: (u16, &str) = (
    403,
    "This needs a user or agent token, not a vault-scoped session",
);

#[test]
fn instance_administration_is_for_owners_only() {
    let world = World::new();
    // User management: change a role, remove a user.
    world.expect(
        "user role change",
        "POST",
        "/v1/admin/users/member@example.com/role",
        json!({ "role": "member" }),
        &[
            (Who::VaultAdmin, Err(OWNER_REQUIRED)),
            (Who::NoAccess, Err(OWNER_REQUIRED)),
            (Who::ProxyAgent, Err(OWNER_REQUIRED)),
            (Who::Scoped, Err(NEEDS_ACCOUNT)),
            (Who::Owner, Ok(200)),
        ],
    );
    // Every vault is listed for owners, members see only their own.
    let (_, listed) = world.call(Who::Owner, "GET", "/v1/vaults", json!({}));
    let names: Vec<&str> = listed["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{listed}");
    ok(
        &world.server,
        "POST",
        "/v1/vaults",
        &world.vault_member,
        json!({ "name": "private" }),
    );
    let (_, owner_view) = world.call(Who::Owner, "GET", "/v1/vaults", json!({}));
    let private = owner_view["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "private")
        .unwrap()
        .clone();
    assert_eq!(
        private["membership"], "implicit",
        "owners are not implicit members"
    );
    let (_, admin_view) = world.call(Who::VaultAdmin, "GET", "/v1/vaults", json!({}));
    assert!(
        !admin_view["vaults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "private")
    );
    // Deleting any vault: owners may, others need to be its admin.
    world.expect(
        "delete someone else's vault",
        "DELETE",
        "/v1/vaults/private",
        json!({}),
        &[
            (Who::VaultAdmin, Err(NO_VAULT_ACCESS)),
            (Who::Owner, Ok(200)),
        ],
    );
    world.expect(
        "remove a user",
        "DELETE",
        "/v1/admin/users/nobody@example.com",
        json!({}),
        &[
            (Who::VaultMember, Err(OWNER_REQUIRED)),
            (Who::Owner, Ok(200)),
        ],
    );
}

#[test]
fn members_create_vaults_agents_and_invites_and_list_users_but_no_access_cannot() {
    let world = World::new();
    let rows: [(&str, &str, &str, Value, u16); 5] = [
        (
            "create a vault",
            "POST",
            "/v1/vaults",
            json!({ "name": "{who}-vault" }),
            201,
        ),
        (
            "create an agent",
            "POST",
            "/v1/agents",
            json!({ "name": "{who}-agent" }),
            201,
        ),
        (
            "create an invite",
            "POST",
            "/v1/users/invites",
            json!({ "email": "{who}-friend@example.com" }),
            201,
        ),
        ("list users", "GET", "/v1/users", json!({}), 200),
        ("list agents", "GET", "/v1/agents", json!({}), 200),
    ];
    for (what, method, path, body, success) in rows {
        for (who, name) in [(Who::Owner, "owner"), (Who::VaultMember, "member")] {
            let body: Value =
                serde_json::from_str(&body.to_string().replace("{who}", name)).unwrap();
            world.expect(what, method, path, body, &[(who, Ok(success))]);
        }
        let body: Value =
            serde_json::from_str(&body.to_string().replace("{who}", "nobody")).unwrap();
        world.expect(
            what,
            method,
            path,
            body,
            &[
                (Who::NoAccess, Err(INSTANCE_MEMBER_REQUIRED)),
                (Who::ProxyAgent, Err(INSTANCE_MEMBER_REQUIRED)),
                (Who::Scoped, Err(NEEDS_ACCOUNT)),
            ],
        );
    }
}

#[test]
fn vault_content_needs_an_explicit_grant_even_for_owners() {
    let world = World::new();
    ok(
        &world.server,
        "POST",
        "/v1/vaults",
        &world.vault_member,
        json!({ "name": "private" }),
    );
    world.expect(
        "read another vault's credentials",
        "GET",
        "/v1/credentials?vault=private",
        json!({}),
        &[
            (Who::Owner, Err(NO_VAULT_ACCESS)),
            (Who::VaultAdmin, Err(NO_VAULT_ACCESS)),
            (Who::ProxyAgent, Err(NO_VAULT_ACCESS)),
            (
                Who::Scoped,
                Err((403, "Session not authorized for this vault")),
            ),
            (Who::VaultMember, Ok(200)),
        ],
    );
}

#[test]
fn every_vault_role_lists_credential_names_and_services() {
    let world = World::new();
    for who in [
        Who::VaultAdmin,
        Who::VaultMember,
        Who::ProxyAgent,
        Who::Scoped,
    ] {
        let (status, listed) = world.call(who, "GET", "/v1/credentials?vault=team", json!({}));
        assert_eq!(
            (status, &listed),
            (200, &json!({ "keys": ["STRIPE_KEY"] })),
            "{who:?}"
        );
        let (status, services) = world.call(who, "GET", "/v1/vaults/team/services", json!({}));
        assert_eq!(status, 200, "{who:?}: {services}");
    }
    world.expect(
        "no grant, no names",
        "GET",
        "/v1/credentials?vault=team",
        json!({}),
        &[(Who::NoAccess, Err(NO_VAULT_ACCESS)), (Who::Owner, Ok(200))],
    );
}

#[test]
fn only_people_read_credential_values_and_members_write_them() {
    let world = World::new();
    world.expect(
        "reveal values",
        "GET",
        "/v1/credentials?vault=team&reveal=true",
        json!({}),
        &[
            (Who::ProxyAgent, Err(VALUES_ARE_FOR_PEOPLE)),
            (Who::Scoped, Err(VALUES_ARE_FOR_PEOPLE)),
            (Who::NoAccess, Err(NO_VAULT_ACCESS)),
            (Who::VaultMember, Ok(200)),
            (Who::VaultAdmin, Ok(200)),
        ],
    );
    let (_, revealed) = world.call(
        Who::VaultMember,
        "GET",
        "/v1/credentials?vault=team&reveal=true",
        json!({}),
    );
    assert_eq!(revealed["credentials"][0]["value"], "sk_test_team");
    world.expect(
        "set a credential",
        "POST",
        "/v1/credentials",
        json!({ "vault": "team", "credentials": { "OPENAI_KEY": "sk-proj-x" } }),
        &[
            (Who::ProxyAgent, Err(MEMBER_REQUIRED)),
            (Who::Scoped, Err(MEMBER_REQUIRED)),
            (Who::VaultMember, Ok(200)),
            (Who::VaultAdmin, Ok(200)),
        ],
    );
    world.expect(
        "delete a credential",
        "DELETE",
        "/v1/credentials",
        json!({ "vault": "team", "keys": ["OPENAI_KEY"] }),
        &[
            (Who::ProxyAgent, Err(MEMBER_REQUIRED)),
            (Who::Scoped, Err(MEMBER_REQUIRED)),
            (Who::VaultMember, Ok(200)),
        ],
    );
}

/// The security issue's item 1: a member-role agent read every credential value with
/// `GET /v1/credentials?reveal=true`, as Agent Vault allows. Here no agent token, and no vault
/// session whoever minted it, ever receives one, whatever the role; agents still set and
/// delete credentials.
#[test]
fn no_agent_or_vault_session_reads_a_credential_value_whatever_its_role() {
    let world = World::new();
    let agent = |name: &str, role: &str, vault_role: &str| {
        let created = ok(
            &world.server,
            "POST",
            "/v1/agents",
            &world.owner,
            json!({ "name": name, "role": role, "vaults": [{ "vault_name": "team", "vault_role": vault_role }] }),
        );
        created["av_agent_token"].as_str().unwrap().to_owned()
    };
    let member_agent = agent("member-bot", "member", "member");
    let admin_agent = agent("admin-bot", "member", "admin");
    let owner_agent = agent("owner-bot", "owner", "admin");
    let minted_by = |token: &str| {
        ok(
            &world.server,
            "POST",
            "/v1/sessions",
            token,
            json!({ "vault": "team" }),
        )["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let agents_session = minted_by(&member_agent);
    let members_session = minted_by(&world.vault_member);
    let callers = [
        ("member agent", member_agent.as_str()),
        ("admin agent", admin_agent.as_str()),
        ("owner agent", owner_agent.as_str()),
        ("session an agent minted", agents_session.as_str()),
        ("session a member minted", members_session.as_str()),
        ("session the owner minted", world.scoped.as_str()),
        ("proxy agent", world.proxy_agent.as_str()),
    ];
    for (who, token) in callers {
        for path in [
            "/v1/credentials?vault=team&reveal=true",
            "/v1/credentials?vault=team&key=STRIPE_KEY&reveal=true",
            "/v1/credentials?reveal=true&vault=team&key=NO_SUCH_KEY",
        ] {
            let (status, answer) = world.server.call("GET", path, Some(token), None);
            assert_eq!(
                (status, answer["error"].as_str()),
                (VALUES_ARE_FOR_PEOPLE.0, Some(VALUES_ARE_FOR_PEOPLE.1)),
                "{who}: {path}"
            );
            assert!(
                !answer.to_string().contains("sk_test_team"),
                "{who}: {answer}"
            );
        }
        // Names, yes.
        let (status, listed) =
            world
                .server
                .call("GET", "/v1/credentials?vault=team", Some(token), None);
        assert_eq!(
            (status, &listed),
            (200, &json!({ "keys": ["STRIPE_KEY"] })),
            "{who}"
        );
    }
    // A member agent sets and deletes values, and cannot read back the one it set.
    ok(
        &world.server,
        "POST",
        "/v1/credentials",
        &member_agent,
        json!({ "vault": "team", "credentials": { "AGENT_SET_KEY": "sk_test_set_by_agent" } }),
    );
    let (status, _) = world.server.call(
        "GET",
        "/v1/credentials?vault=team&key=AGENT_SET_KEY&reveal=true",
        Some(&member_agent),
        None,
    );
    assert_eq!(status, 403);
    let (_, revealed) = world.call(
        Who::VaultMember,
        "GET",
        "/v1/credentials?vault=team&key=AGENT_SET_KEY&reveal=true",
        json!({}),
    );
    assert_eq!(revealed["credentials"][0]["value"], "sk_test_set_by_agent");
    ok(
        &world.server,
        "DELETE",
        "/v1/credentials",
        &member_agent,
        json!({ "vault": "team", "keys": ["AGENT_SET_KEY"] }),
    );
}

#[test]
fn only_members_and_admins_mint_scoped_tokens_and_read_logs() {
    let world = World::new();
    world.expect(
        "mint a vault token",
        "POST",
        "/v1/sessions",
        json!({ "vault": "team" }),
        &[
            (Who::ProxyAgent, Err(MEMBER_REQUIRED)),
            (Who::Scoped, Err(MEMBER_REQUIRED)),
            (Who::NoAccess, Err(NO_VAULT_ACCESS)),
            (Who::VaultMember, Ok(200)),
            (Who::VaultAdmin, Ok(200)),
        ],
    );
    world.expect(
        "read the request log",
        "GET",
        "/v1/vaults/team/logs",
        json!({}),
        &[
            (Who::ProxyAgent, Err(MEMBER_REQUIRED)),
            (Who::Scoped, Err(MEMBER_REQUIRED)),
            (Who::VaultMember, Ok(200)),
            (Who::VaultAdmin, Ok(200)),
        ],
    );
}

#[test]
fn only_vault_admins_write_services_manage_members_and_settings() {
    let world = World::new();
    let service = json!({ "services": [{ "name": "stripe", "host": "api.stripe.com", "auth": { "type": "bearer", "token": "STRIPE_KEY" } }] });
    let not_admin = [
        (Who::VaultMember, Err(ADMIN_REQUIRED)),
        (Who::ProxyAgent, Err(ADMIN_REQUIRED)),
        (Who::Scoped, Err(ADMIN_REQUIRED)),
        (Who::NoAccess, Err(NO_VAULT_ACCESS)),
    ];
    let with_admin = |outcome: u16| {
        let mut all: Vec<(Who, Outcome)> = not_admin.to_vec();
        all.push((Who::VaultAdmin, Ok(outcome)));
        all
    };
    world.expect(
        "write services",
        "POST",
        "/v1/vaults/team/services",
        service,
        &with_admin(200),
    );
    world.expect(
        "disable a service",
        "PATCH",
        "/v1/vaults/team/services/stripe",
        json!({ "enabled": false }),
        &with_admin(200),
    );
    world.expect(
        "add an agent",
        "POST",
        "/v1/vaults/team/agents",
        json!({ "name": "proxy-bot" }),
        &with_admin(409),
    );
    world.expect(
        "add a user",
        "POST",
        "/v1/vaults/team/users",
        json!({ "email": "owner@example.com", "role": "member" }),
        &with_admin(409),
    );
    world.expect(
        "vault settings",
        "PATCH",
        "/v1/vaults/team/settings",
        json!({ "unmatched_host_policy": "deny" }),
        &with_admin(200),
    );
    world.expect(
        "delete the vault",
        "DELETE",
        "/v1/vaults/team",
        json!({}),
        &with_admin(200),
    );
}

#[test]
fn the_last_owner_and_the_last_vault_admin_cannot_be_removed() {
    let world = World::new();
    let (status, answer) = world.call(
        Who::Owner,
        "POST",
        "/v1/admin/users/owner@example.com/role",
        json!({ "role": "member" }),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("This would leave the instance without an owner"))
    );
    let (status, _) = world.call(
        Who::Owner,
        "DELETE",
        "/v1/admin/users/owner@example.com",
        json!({}),
    );
    assert_eq!(status, 409);
    // The team vault has two admins: the owner (its creator) and admin@. Remove one, then the
    // other is the last.
    let (status, answer) = world.call(
        Who::VaultAdmin,
        "DELETE",
        "/v1/vaults/team/users/owner@example.com",
        json!({}),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = world.call(
        Who::VaultAdmin,
        "POST",
        "/v1/vaults/team/users/admin@example.com/role",
        json!({ "role": "member" }),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("This would leave the vault without an admin"))
    );
    let (status, _) = world.call(
        Who::VaultAdmin,
        "DELETE",
        "/v1/vaults/team/users/admin@example.com",
        json!({}),
    );
    assert_eq!(status, 409);
}

#[test]
fn a_revoked_agent_and_the_sessions_it_minted_stop_working() {
    let world = World::new();
    let created = ok(
        &world.server,
        "POST",
        "/v1/agents",
        &world.owner,
        json!({ "name": "minter", "role": "member", "vaults": [{ "vault_name": "team", "vault_role": "member" }] }),
    );
    let agent = created["av_agent_token"].as_str().unwrap();
    let minted = ok(
        &world.server,
        "POST",
        "/v1/sessions",
        agent,
        json!({ "vault": "team" }),
    );
    let session = minted["token"].as_str().unwrap();
    let me = |token: &str| world.server.call("GET", "/v1/auth/me", Some(token), None).0;
    assert_eq!((me(agent), me(session)), (200, 200));
    ok(
        &world.server,
        "DELETE",
        "/v1/agents/minter",
        &world.owner,
        json!({}),
    );
    assert_eq!((me(agent), me(session)), (401, 401));
}

#[test]
fn service_writes_are_checked_against_the_plugins() {
    let world = World::new();
    let write = |auth: Value, host: &str| {
        let body = json!({ "services": [{ "name": "svc", "host": host, "auth": auth }] });
        world.call(Who::Owner, "POST", "/v1/vaults/team/services", body)
    };
    let cases = [
        (
            json!({ "type": "plugin", "plugin": "no-such-plugin" }),
            "api.example.com",
            "Invalid services: service 0: auth: no plugin named \"no-such-plugin\" is loaded",
        ),
        (
            json!({ "type": "plugin", "plugin": "basic", "credentials": { "password": "PW" } }),
            "api.example.com",
            "Invalid services: service 0: auth: credential slot \"username\" is required but not bound to a credential",
        ),
        (
            json!({ "type": "plugin", "plugin": "bearer", "credentials": { "token": "T", "extra": "X" } }),
            "api.example.com",
            "Invalid services: service 0: auth: credential slot \"extra\" is not one plugin bearer uses (it uses: token)",
        ),
        (
            json!({ "type": "plugin", "plugin": "query-param", "credentials": { "key": "K" } }),
            "api.example.com",
            "Invalid services: service 0: auth: missing required config key \"name\"",
        ),
        (
            json!({ "type": "plugin", "plugin": "hmac", "config": { "algorithm": "md5" }, "credentials": { "secret": "S" } }),
            "api.example.com",
            "Invalid services: service 0: auth: the plugin rejected the configuration: algorithm \"md5\" must be sha1, sha256 or sha512",
        ),
        (
            json!({ "type": "plugin", "plugin": "bearer", "sha256": "00".repeat(32), "credentials": { "token": "T" } }),
            "api.example.com",
            "",
        ),
        (
            json!({ "type": "bearer", "token": "T" }),
            "api.example.com/v1/[a]",
            "Invalid services: service 0: path \"/v1/[a]\" must not contain '['",
        ),
    ];
    for (auth, host, expected) in cases {
        let (status, answer) = write(auth.clone(), host);
        assert_eq!(status, 400, "{auth}: {answer}");
        if expected.is_empty() {
            let message = answer["error"].as_str().unwrap();
            assert!(message.contains("but the service pins 0000"), "{message}");
        } else {
            assert_eq!(answer["error"], expected, "{auth}");
        }
    }
    let (status, answer) = write(
        json!({ "type": "plugin", "plugin": "query-param", "config": { "name": "api_key" }, "credentials": { "key": "MAPS_KEY" } }),
        "maps.example.com",
    );
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn a_body_with_credential_values_that_does_not_fit_is_not_quoted_back() {
    let world = World::new();
    // serde's own message would be: invalid type: string "sk_test_...", expected a map.
    let pasted = "sk_test_pasted_in_the_wrong_place";
    for (path, body, column) in [
        (
            "/v1/credentials",
            format!(r#"{{"vault": "team", "credentials": "{pasted}"}}"#),
            68,
        ),
        (
            "/v1/admin/proposals/1/approve",
            format!(r#"{{"vault": "team", "credentials": {{"STRIPE_KEY": ["{pasted}"]}}}}"#),
            48,
        ),
    ] {
        let answer = crate::proxy::send_raw(
            &world.server.address,
            "POST",
            path,
            &[
                ("authorization", &format!("Bearer {}", world.owner)),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(answer.status, 400, "{path}");
        assert_eq!(
            answer.json()["error"],
            format!(
                "invalid JSON body at line 1, column {column}: a field has the wrong type or an \
                 unknown name (the body carries credential values, so the error does not quote it)"
            ),
            "{path}"
        );
    }
}

const DRY_RUN_IS_FOR_PEOPLE: (u16, &str) = (
    403,
    "Plugin dry runs are for people signed in with their own login (they run plugin code on the \
     plugin threads the proxy uses)",
);

#[test]
fn instance_members_list_plugins_and_only_people_dry_run_them() {
    let world = World::new();
    let agent = ok(
        &world.server,
        "POST",
        "/v1/agents",
        &world.owner,
        json!({ "name": "member-bot", "role": "member" }),
    );
    let member_agent = agent["av_agent_token"].as_str().unwrap();
    let dry_run = json!({ "plugin": "passthrough", "url": "https://api.example.com/" });
    world.expect(
        "list plugins",
        "GET",
        "/v1/plugins",
        json!({}),
        &[
            (Who::Owner, Ok(200)),
            (Who::VaultMember, Ok(200)),
            (Who::NoAccess, Err(INSTANCE_MEMBER_REQUIRED)),
            (Who::ProxyAgent, Err(INSTANCE_MEMBER_REQUIRED)),
            (Who::Scoped, Err(NEEDS_ACCOUNT)),
        ],
    );
    world.expect(
        "dry run",
        "POST",
        "/v1/plugins/test",
        dry_run.clone(),
        &[
            (Who::Owner, Ok(200)),
            (Who::VaultMember, Ok(200)),
            (Who::NoAccess, Err(INSTANCE_MEMBER_REQUIRED)),
            (Who::ProxyAgent, Err(INSTANCE_MEMBER_REQUIRED)),
            (Who::Scoped, Err(NEEDS_ACCOUNT)),
        ],
    );
    let (status, _) = world
        .server
        .call("GET", "/v1/plugins", Some(member_agent), None);
    assert_eq!(status, 200);
    let (status, answer) = world.server.call(
        "POST",
        "/v1/plugins/test",
        Some(member_agent),
        Some(&dry_run),
    );
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        DRY_RUN_IS_FOR_PEOPLE
    );
}
