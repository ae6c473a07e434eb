//! `passthrough`: forwards the request as the agent sent it, with no credential. For APIs
//! that need none, or where the agent's own headers are the point.
#![no_std]

use agent_vault_plugin::prelude::*;

struct Passthrough;

impl Plugin for Passthrough {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "passthrough",
            env!("CARGO_PKG_VERSION"),
            "Forwards the request unchanged; no credential fields are permitted.",
        )
    }

    fn authorize(_request: &Request, _config: &Config) -> Result<Decision, AuthError> {
        Ok(Forward::new().into())
    }
}

export_plugin!(Passthrough);
