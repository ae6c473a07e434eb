//! `query-param`: the key in a named query parameter (`?api_key=<key>`), replacing any the
//! agent sent.
#![no_std]

use agent_vault_plugin::prelude::*;

struct QueryParam;

impl Plugin for QueryParam {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "query-param",
            env!("CARGO_PKG_VERSION"),
            "Sends the key as the query parameter `<name>=<key>`.",
        )
        .config("name", "the query parameter, e.g. api_key", true)
        .credential("key", "the API key", true)
    }

    fn validate_config(config: &Config) -> Result<Requirements, String> {
        let name = config.get("name").ok_or("missing config key \"name\"")?;
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err("name must be a non-empty query parameter name".into());
        }
        Ok(Requirements::credentials(Self::describe().credentials))
    }

    fn authorize(_request: &Request, config: &Config) -> Result<Decision, AuthError> {
        let name = config.require("name")?;
        Ok(Forward::new().set_query(name, slot("key")).into())
    }
}

export_plugin!(QueryParam);
