//! `aws-sigv4`: AWS Signature Version 4, in the `Authorization` header or as a presigned
//! URL. The host signs the real outgoing request; this plugin only picks the parameters.
//! It replaces whatever signature the client made, so an AWS SDK configured with dummy
//! credentials works through the proxy.
//!
//! Config: `region` and `service` (required); `placement` `header` (default) or `query`;
//! `expires` seconds for presigned URLs (default 900); `session-token` `signed` (default)
//! or `unsigned`; `normalize-path` (default true, false for S3); `payload` `auto`
//! (default: the client's `x-amz-content-sha256`, else the body's SHA-256) or `unsigned`.
#![no_std]

use agent_vault_plugin::prelude::*;

struct AwsSigv4Plugin;

const CONTENT_SHA256: &str = "x-amz-content-sha256";

impl Plugin for AwsSigv4Plugin {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "aws-sigv4",
            env!("CARGO_PKG_VERSION"),
            "AWS Signature Version 4 (header or presigned URL), computed by the host.",
        )
        .config("region", "AWS region, e.g. us-east-1", true)
        .config(
            "service",
            "AWS service name, e.g. s3, sts, execute-api",
            true,
        )
        .config("placement", "header (default) or query", false)
        .config(
            "expires",
            "lifetime of a presigned URL in seconds (default 900)",
            false,
        )
        .config("session-token", "signed (default) or unsigned", false)
        .config(
            "normalize-path",
            "true (default) or false (S3's default)",
            false,
        )
        .config("payload", "auto (default) or unsigned", false)
        .credential("access_key_id", "AWS access key ID", true)
        .credential("secret_access_key", "AWS secret access key", true)
        .credential(
            "session_token",
            "AWS session token for temporary credentials",
            false,
        )
        .body(BodyNeed::Sha256UnlessHeader(CONTENT_SHA256.into()))
    }

    fn validate_config(config: &Config) -> Result<Requirements, String> {
        let params = params(config, false)?;
        let body =
            if params.placement == Sigv4Placement::Header && params.payload == Sigv4Payload::Auto {
                BodyNeed::Sha256UnlessHeader(CONTENT_SHA256.into())
            } else {
                BodyNeed::None
            };
        Ok(Requirements {
            credentials: Self::describe().credentials,
            body,
        })
    }

    fn authorize(request: &Request, config: &Config) -> Result<Decision, AuthError> {
        let params = params(config, request.has_credential("session_token"))
            .map_err(AuthError::invalid_config)?;
        let mut forward = Forward::new();
        // S3 requires x-amz-content-sha256 on every header-signed request.
        if params.service == "s3"
            && params.placement == Sigv4Placement::Header
            && request.header(CONTENT_SHA256).is_none()
        {
            // Without a body hash (the host did not provide one) the header stays unset and
            // the host's signer refuses the request rather than sign it unsigned.
            let value = match (&params.payload, &request.body_sha256) {
                (Sigv4Payload::Auto, Some(hash)) => Some(hex_encode(hash)),
                (Sigv4Payload::Auto, None) => None,
                (Sigv4Payload::Unsigned, _) => Some("UNSIGNED-PAYLOAD".to_string()),
            };
            if let Some(value) = value {
                forward = forward.set_header(CONTENT_SHA256, value);
            }
        }
        Ok(forward.sign(Signer::AwsSigv4(params)).into())
    }
}

fn params(config: &Config, has_session_token: bool) -> Result<AwsSigv4, String> {
    let region = config
        .get("region")
        .ok_or("missing config key \"region\"")?;
    let service = config
        .get("service")
        .ok_or("missing config key \"service\"")?;
    for (key, value) in [("region", region), ("service", service)] {
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(format!(
                "{key} {value:?} must be lower-case letters, digits and hyphens"
            ));
        }
    }
    let placement = match config.get_or("placement", "header") {
        "header" => Sigv4Placement::Header,
        "query" => Sigv4Placement::Query,
        other => return Err(format!("placement {other:?} must be header or query")),
    };
    let expires_seconds = match config.get("expires") {
        None => 900,
        Some(text) => match text.parse::<u32>() {
            Ok(seconds) if (1..=604_800).contains(&seconds) => seconds,
            _ => return Err(format!("expires {text:?} must be 1 to 604800 seconds")),
        },
    };
    let sign_session_token = match config.get_or("session-token", "signed") {
        "signed" => true,
        "unsigned" => false,
        other => {
            return Err(format!(
                "session-token {other:?} must be signed or unsigned"
            ));
        }
    };
    let normalize_path = config.bool_or("normalize-path", service != "s3")?;
    let payload = match config.get_or("payload", "auto") {
        "auto" => Sigv4Payload::Auto,
        "unsigned" => Sigv4Payload::Unsigned,
        other => return Err(format!("payload {other:?} must be auto or unsigned")),
    };
    Ok(AwsSigv4 {
        access_key_id: "access_key_id".into(),
        secret_access_key: "secret_access_key".into(),
        session_token: has_session_token.then(|| "session_token".into()),
        sign_session_token,
        region: region.into(),
        service: service.into(),
        placement,
        expires_seconds,
        normalize_path,
        payload,
    })
}

export_plugin!(AwsSigv4Plugin);
