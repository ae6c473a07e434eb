//! `hmac`: generic request signing. The host computes HMAC(secret, string-to-sign); the
//! plugin builds the string to sign from a template and places the signature.
//!
//! Config:
//! - `string-to-sign`: a template (default `{method}\n{path}\n{timestamp}`) of
//!   `{method}`, `{host}`, `{path}`, `{query}` (decoded, re-encoded, sorted),
//!   `{header:NAME}` (values joined with `,`), `{timestamp}` and `{body-sha256}` (hex);
//!   `{{` and `}}` are literal braces.
//! - `algorithm`: `sha1`, `sha256` (default) or `sha512`; `encoding`: `hex` (default) or
//!   `base64`.
//! - `signature-header` (default `x-signature`) or `signature-query`, and `signature-prefix`.
//! - `timestamp-header` and `timestamp-format` (`unix` default, `unix-ms`, `iso8601`).
//! - `key-id-header`: also send the `key_id` credential in this header.
#![no_std]

use agent_vault_plugin::CredentialSlot;
use agent_vault_plugin::prelude::*;

struct Hmac;

const DEFAULT_TEMPLATE: &str = "{method}\n{path}\n{timestamp}";

impl Plugin for Hmac {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hmac",
            env!("CARGO_PKG_VERSION"),
            "Signs a configurable string with HMAC and sends the signature in a header or query parameter.",
        )
        .config("string-to-sign", "template of the signed string", false)
        .config("algorithm", "sha1, sha256 (default) or sha512", false)
        .config("encoding", "hex (default) or base64", false)
        .config("signature-header", "header for the signature (default x-signature)", false)
        .config("signature-query", "query parameter for the signature, instead of a header", false)
        .config("signature-prefix", "text before the signature", false)
        .config("timestamp-header", "header to send the timestamp in", false)
        .config("timestamp-format", "unix (default), unix-ms or iso8601", false)
        .config("key-id-header", "header to send the key_id credential in", false)
        .credential("secret", "the signing secret", true)
        .credential("key_id", "the key's public identifier (with key-id-header)", false)
        .body(BodyNeed::Sha256)
    }

    fn validate_config(config: &Config) -> Result<Requirements, String> {
        let settings = Settings::read(config)?;
        let template = parse_template(settings.template)?;
        let mut credentials = vec![CredentialSlot {
            name: "secret".into(),
            description: "the signing secret".into(),
            required: true,
        }];
        if config.get("key-id-header").is_some() {
            credentials.push(CredentialSlot {
                name: "key_id".into(),
                description: "the key's public identifier".into(),
                required: true,
            });
        }
        let body = if template
            .iter()
            .any(|piece| matches!(piece, Piece::BodySha256))
        {
            BodyNeed::Sha256
        } else {
            BodyNeed::None
        };
        Ok(Requirements { credentials, body })
    }

    fn authorize(request: &Request, config: &Config) -> Result<Decision, AuthError> {
        let settings = Settings::read(config).map_err(AuthError::invalid_config)?;
        let template = parse_template(settings.template).map_err(AuthError::invalid_config)?;
        let timestamp = settings.timestamp_format.format(&request.now);
        let mut string_to_sign = String::new();
        for piece in &template {
            match piece {
                Piece::Text(text) => string_to_sign.push_str(text),
                Piece::Method => string_to_sign.push_str(&request.method),
                Piece::Host => string_to_sign.push_str(&request.host),
                Piece::Path => string_to_sign.push_str(&request.path),
                Piece::Query => string_to_sign.push_str(&canonical_query(request)),
                Piece::Header(name) => {
                    let values: Vec<&str> = request.header_values(name).collect();
                    string_to_sign.push_str(&values.join(","));
                }
                Piece::Timestamp => string_to_sign.push_str(&timestamp),
                Piece::BodySha256 => match &request.body_sha256 {
                    Some(hash) => string_to_sign.push_str(&hex_encode(hash)),
                    None => {
                        return Err(AuthError::Internal(
                            "the body's SHA-256 was not provided".into(),
                        ));
                    }
                },
            }
        }
        let mac = hmac(
            settings.algorithm,
            &HmacKey::credential("secret"),
            string_to_sign.as_bytes(),
        )?;
        let signature = match settings.encoding {
            SignatureEncoding::Hex => hex_encode(&mac),
            SignatureEncoding::Base64 => base64_encode(&mac),
        };
        let signature = format!("{}{signature}", settings.prefix);

        let mut forward = Forward::new();
        if let Some(header) = settings.timestamp_header {
            forward = forward.set_header(header, timestamp.as_str());
        }
        if let Some(header) = config.get("key-id-header") {
            forward = forward.set_header(header, slot("key_id"));
        }
        forward = match settings.signature_query {
            Some(name) => forward.set_query(name, signature),
            None => forward.set_header(settings.signature_header, signature),
        };
        Ok(forward.into())
    }
}

enum SignatureEncoding {
    Hex,
    Base64,
}

enum TimestampFormat {
    Unix,
    UnixMs,
    Iso8601,
}

impl TimestampFormat {
    fn format(&self, now: &Timestamp) -> String {
        match self {
            TimestampFormat::Unix => now.seconds.to_string(),
            TimestampFormat::UnixMs => {
                (now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)).to_string()
            }
            TimestampFormat::Iso8601 => iso8601(now.seconds),
        }
    }
}

struct Settings<'a> {
    template: &'a str,
    algorithm: HashAlgorithm,
    encoding: SignatureEncoding,
    signature_header: &'a str,
    signature_query: Option<&'a str>,
    prefix: &'a str,
    timestamp_header: Option<&'a str>,
    timestamp_format: TimestampFormat,
}

impl<'a> Settings<'a> {
    fn read(config: &'a Config) -> Result<Self, String> {
        let algorithm = match config.get_or("algorithm", "sha256") {
            "sha1" => HashAlgorithm::Sha1,
            "sha256" => HashAlgorithm::Sha256,
            "sha512" => HashAlgorithm::Sha512,
            other => {
                return Err(format!(
                    "algorithm {other:?} must be sha1, sha256 or sha512"
                ));
            }
        };
        let encoding = match config.get_or("encoding", "hex") {
            "hex" => SignatureEncoding::Hex,
            "base64" => SignatureEncoding::Base64,
            other => return Err(format!("encoding {other:?} must be hex or base64")),
        };
        let timestamp_format = match config.get_or("timestamp-format", "unix") {
            "unix" => TimestampFormat::Unix,
            "unix-ms" => TimestampFormat::UnixMs,
            "iso8601" => TimestampFormat::Iso8601,
            other => {
                return Err(format!(
                    "timestamp-format {other:?} must be unix, unix-ms or iso8601"
                ));
            }
        };
        if config.get("signature-header").is_some() && config.get("signature-query").is_some() {
            return Err("set signature-header or signature-query, not both".into());
        }
        Ok(Settings {
            template: config.get_or("string-to-sign", DEFAULT_TEMPLATE),
            algorithm,
            encoding,
            signature_header: config.get_or("signature-header", "x-signature"),
            signature_query: config.get("signature-query"),
            prefix: config.get_or("signature-prefix", ""),
            timestamp_header: config.get("timestamp-header"),
            timestamp_format,
        })
    }
}

enum Piece<'a> {
    Text(String),
    Method,
    Host,
    Path,
    Query,
    Header(&'a str),
    Timestamp,
    BodySha256,
}

fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(index) = rest.find(['{', '}']) {
        text.push_str(&rest[..index]);
        let after = &rest[index..];
        if after.starts_with("{{") || after.starts_with("}}") {
            text.push_str(&after[..1]);
            rest = &after[2..];
            continue;
        }
        if after.starts_with('}') {
            return Err("a \"}\" has no opening \"{\" (write \"}}\" for a literal brace)".into());
        }
        let end = after.find('}').ok_or("a \"{\" is never closed")?;
        let name = &after[1..end];
        let piece = match name {
            "method" => Piece::Method,
            "host" => Piece::Host,
            "path" => Piece::Path,
            "query" => Piece::Query,
            "timestamp" => Piece::Timestamp,
            "body-sha256" => Piece::BodySha256,
            _ => match name.strip_prefix("header:") {
                Some(header) if !header.is_empty() => Piece::Header(header),
                _ => return Err(format!("unknown placeholder {{{name}}}")),
            },
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(core::mem::take(&mut text)));
        }
        pieces.push(piece);
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Query parameters percent-encoded (all but unreserved) and sorted by name, then value.
fn canonical_query(request: &Request) -> String {
    let mut pairs: Vec<(String, String)> = request
        .query
        .iter()
        .map(|field| (encode(&field.name), encode(&field.value)))
        .collect();
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    joined.join("&")
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` from Unix seconds (proleptic Gregorian, UTC).
fn iso8601(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let time = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

export_plugin!(Hmac);
