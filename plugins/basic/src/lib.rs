//! `basic`: `Authorization: Basic base64(username ":" password)`; the password is optional
//! (an unbound password slot sends an empty one).
#![no_std]

use agent_vault_plugin::prelude::*;

struct Basic;

impl Plugin for Basic {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "basic",
            env!("CARGO_PKG_VERSION"),
            "HTTP Basic authentication: `Authorization: Basic base64(username:password)`.",
        )
        .credential("username", "the user name", true)
        .credential("password", "the password (empty if not bound)", false)
    }

    fn authorize(request: &Request, _config: &Config) -> Result<Decision, AuthError> {
        let mut user_pass = vec![slot("username"), lit(":")];
        if request.has_credential("password") {
            user_pass.push(slot("password"));
        }
        Ok(Forward::new()
            .set_header("authorization", [raw([lit("Basic ")]), base64(user_pass)])
            .into())
    }
}

export_plugin!(Basic);
