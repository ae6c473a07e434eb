//! `api-key`: the key in a header of your choice, after an optional prefix
//! (`X-Api-Key: <key>`, `Authorization: Token <key>`).
#![no_std]

use agent_vault_plugin::prelude::*;

struct ApiKey;

const DEFAULT_HEADER: &str = "authorization";

impl Plugin for ApiKey {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "api-key",
            env!("CARGO_PKG_VERSION"),
            "Sends the key as `<header>: <prefix><key>`.",
        )
        .config(
            "header",
            "the header to send the key in (default Authorization)",
            false,
        )
        .config(
            "prefix",
            "text before the key, e.g. \"Token \" (default none)",
            false,
        )
        .credential("key", "the API key", true)
    }

    fn validate_config(config: &Config) -> Result<Requirements, String> {
        let header = config.get_or("header", DEFAULT_HEADER);
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "header {header:?} must be letters, digits and hyphens"
            ));
        }
        Ok(Requirements::credentials(Self::describe().credentials))
    }

    fn authorize(_request: &Request, config: &Config) -> Result<Decision, AuthError> {
        let header = config.get_or("header", DEFAULT_HEADER);
        let prefix = config.get_or("prefix", "");
        Ok(Forward::new()
            .set_header(header, [lit(prefix), slot("key")])
            .into())
    }
}

export_plugin!(ApiKey);
