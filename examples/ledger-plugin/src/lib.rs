//! The Ledger API (invented for this example) wants three headers on every call:
//! `X-Ledger-Key: <key id>`, `X-Ledger-Timestamp: <unix seconds>` and
//! `X-Ledger-Signature: hex(HMAC-SHA256(secret, "<timestamp>:<METHOD>:<path>"))`.
//! Writes need `allow-writes = true` in the service's config; otherwise they are refused.
#![no_std]

use agent_vault_plugin::prelude::*;

struct Ledger;

impl Plugin for Ledger {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "ledger-signature",
            env!("CARGO_PKG_VERSION"),
            "Signs Ledger API calls.",
        )
        .config(
            "allow-writes",
            "true to allow POST, PUT, PATCH and DELETE",
            false,
        )
        .credential("key_id", "the Ledger key id", true)
        .credential("secret", "the Ledger signing secret", true)
    }

    fn validate_config(config: &Config) -> Result<Requirements, String> {
        config.bool_or("allow-writes", false)?;
        Ok(Requirements::credentials(Self::describe().credentials))
    }

    fn authorize(request: &Request, config: &Config) -> Result<Decision, AuthError> {
        let allow_writes = config
            .bool_or("allow-writes", false)
            .map_err(AuthError::invalid_config)?;
        if !allow_writes && !matches!(request.method.as_str(), "GET" | "HEAD") {
            return Ok(Decision::deny(
                403,
                "this service is read-only (allow-writes is off)",
            ));
        }
        let timestamp = request.now.seconds.to_string();
        let message = format!("{timestamp}:{}:{}", request.method, request.path);
        let signature = hmac(
            HashAlgorithm::Sha256,
            &HmacKey::credential("secret"),
            message.as_bytes(),
        )?;
        Ok(Forward::new()
            .set_header("x-ledger-key", slot("key_id"))
            .set_header("x-ledger-timestamp", timestamp)
            .set_header("x-ledger-signature", hex_encode(&signature))
            .into())
    }
}

export_plugin!(Ledger);
