//! `agent-vault server --database-url`: the state in a PostgreSQL database instead of the
//! data directory's SQLite file, shared by servers that name the same database (replicas,
//! each with its data directory and the master password); `master-password change` on it. The database is one of the
//! throwaway cluster's (`host/src/store/postgres/tests/cluster.rs`).

use crate::pg_cluster::cluster;
use crate::support::{DataDir, MASTER_PASSWORD, Server};

const OWNER: &str = "owner@example.com";
const OWNER_PASSWORD: &str = "correct horse battery staple";

/// `agent-vault auth VERB` against `server` as the owner, from the CLI data directory `cli`.
fn auth(cli: &DataDir, verb: &str, server: &Server) -> String {
    cli.command(&[
        "auth",
        verb,
        "--address",
        &server.url(),
        "--email",
        OWNER,
        "--password-stdin",
    ])
    .stdin(&format!("{OWNER_PASSWORD}\n"))
    .run()
    .ok()
}

#[test]
fn servers_on_one_postgresql_database_share_users_vaults_and_the_master_key() {
    let url = cluster().new_database();
    let env = [
        ("AGENT_VAULT_MASTER_PASSWORD", MASTER_PASSWORD),
        ("DATABASE_URL", url.as_str()),
    ];
    let first_data = DataDir::new();
    let first = Server::start_with(&first_data, &[], &env);
    let owner = DataDir::new();
    assert_eq!(
        auth(&owner, "register", &first),
        "Registered and logged in as owner@example.com (owner).\n"
    );
    assert_eq!(
        owner.run(&["vault", "create", "payments"]).ok(),
        "Created vault payments; you are its admin.\n"
    );

    // A second server on the same database unlocks the same master key, and knows the
    // owner and the vault.
    let second_data = DataDir::new();
    let second = Server::start_with(&second_data, &[], &env);
    let elsewhere = DataDir::new();
    assert_eq!(
        auth(&elsewhere, "login", &second),
        "Logged in as owner@example.com (owner).\n"
    );
    assert_eq!(
        elsewhere.run(&["vault", "list"]).ok(),
        "  NAME      ROLE   MEMBERSHIP\n* default   admin  explicit\n  payments  admin  explicit\n"
    );
    for data in [&first_data, &second_data] {
        assert!(!data.path().join("agent-vault.db").exists());
    }

    // The master password changes in the database, for every server's next start.
    let new_password = "a brand new master password";
    let changed = DataDir::new()
        .command(&["master-password", "change", "--password-stdin"])
        .env("DATABASE_URL", &url)
        .stdin(&format!("{MASTER_PASSWORD}\n{new_password}\n"))
        .run();
    assert_eq!(
        changed.ok(),
        "Master password changed. A running server keeps its unlocked key; from its next start it needs the new password.\n"
    );
    let third_data = DataDir::new();
    let third = Server::start_with(
        &third_data,
        &[],
        &[
            ("AGENT_VAULT_MASTER_PASSWORD", new_password),
            ("DATABASE_URL", url.as_str()),
        ],
    );
    assert_eq!(
        auth(&DataDir::new(), "login", &third),
        "Logged in as owner@example.com (owner).\n"
    );
}
