//! The standard plugins, embedded in the binary so that a server with an empty plugin
//! directory still has `bearer`, `basic`, `api-key`, `custom-headers`, `passthrough`,
//! `query-param`, `hmac` and `aws-sigv4`. `build.rs` builds them from `plugins/`.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// Where the plugin build put every component, fixtures included (for tests and benches).
pub const PLUGIN_BUILD_DIR: &str = env!("AGENT_VAULT_PLUGIN_BUILD_DIR");
