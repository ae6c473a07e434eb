//! Black-box tests: run the `agent-vault` binary the way a user does and check what it
//! prints and serves. One binary so that the tests share one build.

mod support;

/// The throwaway PostgreSQL cluster of the store's tests, shared rather than copied; the
/// black-box tests use a part of it.
#[allow(dead_code)]
#[path = "../../host/src/store/postgres/tests/cluster.rs"]
mod pg_cluster;

mod adversarial;
mod agent_invites;
mod api_permissions;
mod at_rest;
mod base_path;
mod console;
mod control_plane;
mod database;
mod egress_proxy;
mod example_plugin;
mod hardening;
mod hostile_plugins;
mod metrics;
mod migrate_db;
mod plugin_commands;
mod plugins_api;
mod proposals;
mod proxy;
mod request_log;
mod run_clients;
mod server;
mod store_rows;
mod substitutions;
mod transparent;
mod upstream;
