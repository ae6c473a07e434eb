//! `agent-vault server --database-url`: the state in a PostgreSQL database instead of the
//! data directory's SQLite file, shared by servers that name the same database (replicas,
//! each with its data directory and the master password). The database is one of the
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
fn two_servers_on_one_postgresql_database_share_users_vaults_and_the_master_key() {
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
}
