//! `bearer`: `Authorization: Bearer <token>`.
#![no_std]

use agent_vault_plugin::prelude::*;

struct Bearer;

impl Plugin for Bearer {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "bearer",
            env!("CARGO_PKG_VERSION"),
            "Sends the token as `Authorization: Bearer <token>`.",
        )
        .credential("token", "the API token", true)
    }

    fn authorize(_request: &Request, _config: &Config) -> Result<Decision, AuthError> {
        Ok(Forward::new()
            .set_header("authorization", [lit("Bearer "), slot("token")])
            .into())
    }
}

export_plugin!(Bearer);
