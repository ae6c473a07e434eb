//! AWS Signature Version 4, computed by the host over the request exactly as it will be
//! sent, after every plugin edit. The plugin only chooses the parameters (slots, region,
//! service, placement); it cannot choose what gets signed, and the signing key chain stays
//! in the vault.
//!
//! Canonicalisation follows the AWS specification and its test suite
//! (`host/tests/plugins/testdata/aws-sigv4`): the path is normalised and URI-encoded once more than
//! it arrives (except for S3, `normalize-path = false`), query parameters are decoded,
//! re-encoded and sorted, header values are trimmed with inner runs of spaces collapsed and
//! duplicates joined with commas, in arrival order.

use std::time::SystemTime;

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::context::{ApplyContext, Masks};
use super::plan::{Atom, AwsSigv4, Encoding, Part, Sigv4Payload, Sigv4Placement};
use crate::request::{RequestHead, raw_query_pairs};
use crate::vault::render::{self, RenderError};
use crate::vault::{UnboundSlot, keyring};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const CONTENT_SHA256: &str = "x-amz-content-sha256";
const SECURITY_TOKEN: &str = "x-amz-security-token";

/// Headers never signed: ones intermediaries add, change or drop (as the AWS SDKs do),
/// message framing, and anything the proxy itself strips before forwarding.
const UNSIGNED_HEADERS: [&str; 15] = [
    "authorization",
    "user-agent",
    "expect",
    "x-amzn-trace-id",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-vault",
];

/// Query parameters of a presigned URL; a client's own are replaced.
const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
];

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error(transparent)]
    Unbound(#[from] UnboundSlot),
    #[error("aws-sigv4: {0}")]
    Render(#[from] RenderError),
    #[error(
        "aws-sigv4 signs the payload but the body's SHA-256 is not available; send \
         x-amz-content-sha256 or configure payload = \"unsigned\""
    )]
    NoPayloadHash,
    #[error(
        "aws-sigv4 cannot re-sign a chunk-signed streaming upload ({0}): each chunk's \
         signature chains from the client's; configure the SDK to send the body's SHA-256 \
         or UNSIGNED-PAYLOAD instead"
    )]
    StreamingPayload(String),
    #[error("aws-sigv4: the clock is before 1970")]
    Clock,
}

/// Sign `head` in place: set `X-Amz-Date`, the session token and `Authorization` (or the
/// presigned query parameters).
pub fn sign(
    params: &AwsSigv4,
    head: &mut RequestHead,
    context: ApplyContext<'_>,
    mut masks: Option<&mut Masks>,
) -> Result<(), SignError> {
    let amz_date = amz_date(context.now)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        &amz_date[..8],
        params.region,
        params.service
    );
    head.headers.remove(http::header::AUTHORIZATION);
    head.headers.remove(SECURITY_TOKEN);
    for name in PRESIGN_PARAMS {
        head.remove_query_param(name);
    }
    let credentials = context.credentials;
    let token_slot = params.session_token.as_deref();

    let canonical = match params.placement {
        Sigv4Placement::Header => {
            head.headers.insert(
                HeaderName::from_static("x-amz-date"),
                HeaderValue::from_str(&amz_date).expect("digits and letters"),
            );
            if let (Some(slot), true) = (token_slot, params.sign_session_token) {
                set_token_header(head, slot, context, masks.as_deref_mut())?;
            }
            if params.payload == Sigv4Payload::Unsigned && head.headers.contains_key(CONTENT_SHA256)
            {
                // S3 takes the payload hash from this header, not from what we signed; a
                // client's real hash here would contradict the signature.
                head.headers
                    .insert(CONTENT_SHA256, HeaderValue::from_static(UNSIGNED_PAYLOAD));
            }
            let payload = payload_hash(params.payload, head, context.body_sha256)?;
            let signed_headers = signed_header_names(head);
            canonical_request(head, params.normalize_path, &signed_headers, &payload)
        }
        Sigv4Placement::Query => {
            let credential = credential_value(&params.access_key_id, &scope);
            let rendered = render::query_value(&credential, credentials)?;
            head.set_query_param("X-Amz-Algorithm", ALGORITHM.as_bytes());
            head.set_query_param("X-Amz-Credential", &rendered);
            head.set_query_param("X-Amz-Date", amz_date.as_bytes());
            head.set_query_param(
                "X-Amz-Expires",
                params.expires_seconds.to_string().as_bytes(),
            );
            head.set_query_param("X-Amz-SignedHeaders", b"host");
            if let Some(masks) = masks.as_deref_mut() {
                masks.query("X-Amz-Credential", render::masked(&credential));
            }
            if let (Some(slot), true) = (token_slot, params.sign_session_token) {
                set_token_query(head, slot, context, masks.as_deref_mut())?;
            }
            canonical_request(
                head,
                params.normalize_path,
                &["host".to_owned()],
                UNSIGNED_PAYLOAD,
            )
        }
    };

    let string_to_sign = string_to_sign(&amz_date, &scope, &canonical);
    let signature = keyring::sigv4_signature(
        credentials,
        &params.secret_access_key,
        &amz_date[..8],
        &params.region,
        &params.service,
        &string_to_sign,
    )?;

    match params.placement {
        Sigv4Placement::Header => {
            let signed = signed_header_names(head).join(";");
            let authorization = vec![
                text_part(&format!("{ALGORITHM} Credential=")),
                Part {
                    atoms: vec![Atom::Credential(params.access_key_id.clone())],
                    encoding: Encoding::Raw,
                },
                text_part(&format!(
                    "/{scope}, SignedHeaders={signed}, Signature={signature}"
                )),
            ];
            let value = render::header_value(&authorization, credentials)?;
            if let Some(masks) = masks.as_deref_mut() {
                masks.header(http::header::AUTHORIZATION, render::masked(&authorization));
            }
            head.headers.insert(http::header::AUTHORIZATION, value);
            if let (Some(slot), false) = (token_slot, params.sign_session_token) {
                set_token_header(head, slot, context, masks)?;
            }
        }
        Sigv4Placement::Query => {
            head.set_query_param("X-Amz-Signature", signature.as_bytes());
            if let (Some(slot), false) = (token_slot, params.sign_session_token) {
                set_token_query(head, slot, context, masks)?;
            }
        }
    }
    Ok(())
}

fn text_part(text: &str) -> Part {
    Part {
        atoms: vec![Atom::Text(text.to_owned())],
        encoding: Encoding::Raw,
    }
}

fn credential_value(access_key_slot: &str, scope: &str) -> Vec<Part> {
    vec![
        Part {
            atoms: vec![Atom::Credential(access_key_slot.to_owned())],
            encoding: Encoding::Raw,
        },
        text_part(&format!("/{scope}")),
    ]
}

fn token_value(slot: &str) -> Vec<Part> {
    vec![Part {
        atoms: vec![Atom::Credential(slot.to_owned())],
        encoding: Encoding::Raw,
    }]
}

fn set_token_header(
    head: &mut RequestHead,
    slot: &str,
    context: ApplyContext<'_>,
    masks: Option<&mut Masks>,
) -> Result<(), SignError> {
    let value = token_value(slot);
    let header = render::header_value(&value, context.credentials)?;
    let name = HeaderName::from_static(SECURITY_TOKEN);
    if let Some(masks) = masks {
        masks.header(name.clone(), render::masked(&value));
    }
    head.headers.insert(name, header);
    Ok(())
}

fn set_token_query(
    head: &mut RequestHead,
    slot: &str,
    context: ApplyContext<'_>,
    masks: Option<&mut Masks>,
) -> Result<(), SignError> {
    let value = token_value(slot);
    let rendered = render::query_value(&value, context.credentials)?;
    if let Some(masks) = masks {
        masks.query("X-Amz-Security-Token", render::masked(&value));
    }
    head.set_query_param("X-Amz-Security-Token", &rendered);
    Ok(())
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
fn amz_date(now: SystemTime) -> Result<String, SignError> {
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| SignError::Clock)?
        .as_secs();
    let time =
        time::OffsetDateTime::from_unix_timestamp(seconds as i64).map_err(|_| SignError::Clock)?;
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    Ok(time
        .format(&format)
        .expect("a fixed format of a valid date"))
}

fn payload_hash(
    payload: Sigv4Payload,
    head: &RequestHead,
    body_sha256: Option<&[u8; 32]>,
) -> Result<String, SignError> {
    if payload == Sigv4Payload::Unsigned {
        return Ok(UNSIGNED_PAYLOAD.to_owned());
    }
    if let Some(declared) = head
        .headers
        .get(CONTENT_SHA256)
        .and_then(|v| v.to_str().ok())
    {
        // Chunk signatures in the body chain from the seed signature we replace; only the
        // unsigned streaming variants survive re-signing.
        if declared.starts_with("STREAMING-") && !declared.starts_with("STREAMING-UNSIGNED-PAYLOAD")
        {
            return Err(SignError::StreamingPayload(declared.to_owned()));
        }
        return Ok(declared.to_owned());
    }
    body_sha256.map(hex::encode).ok_or(SignError::NoPayloadHash)
}

/// Names of the headers to sign, lower case, sorted, with `host` always among them.
pub fn signed_header_names(head: &RequestHead) -> Vec<String> {
    let mut names: Vec<String> = head
        .headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| !UNSIGNED_HEADERS.contains(name))
        .map(str::to_owned)
        .collect();
    if !names.iter().any(|name| name == "host") {
        names.push("host".to_owned());
    }
    names.sort();
    names.dedup();
    names
}

/// The canonical request of the AWS specification, over `signed_headers`. Bytes, because
/// header values need not be UTF-8 and the server hashes what it received.
pub fn canonical_request(
    head: &RequestHead,
    normalize_path: bool,
    signed_headers: &[String],
    payload_hash: &str,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(512));
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(&head.path, normalize_path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(head.query.as_deref()).as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        if name == "host" && !head.headers.contains_key(http::header::HOST) {
            out.extend_from_slice(head.authority().as_bytes());
        } else {
            for (index, value) in head.headers.get_all(name.as_str()).iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                push_canonical_header_value(&mut out, value.as_bytes());
            }
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request))
    )
}

fn canonical_uri(path: &str, normalize: bool) -> String {
    if normalize {
        uri_encode(normalize_path(path).as_bytes(), false)
    } else {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
        uri_encode(&decoded, false)
    }
}

/// Remove empty, `.` and `..` segments, keeping a trailing slash.
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = format!("/{}", segments.join("/"));
    let ends_in_directory = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if ends_in_directory && normalized != "/" {
        normalized.push('/');
    }
    normalized
}

/// Names and values decoded to bytes (not text: `%FF` must stay one byte), re-encoded and
/// sorted.
fn canonical_query(query: Option<&str>) -> String {
    let encode = |raw: &str| {
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        uri_encode(&bytes, true)
    };
    let mut pairs: Vec<(String, String)> = raw_query_pairs(query)
        .map(|(name, value)| (encode(name), encode(value)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// AWS URI encoding: everything but `A-Z a-z 0-9 - . _ ~` (and `/` unless `encode_slash`).
fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if unreserved || (byte == b'/' && !encode_slash) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The value trimmed, with inner runs of spaces and tabs collapsed to one space.
fn push_canonical_header_value(out: &mut Vec<u8>, value: &[u8]) {
    let words = value
        .split(|byte| matches!(byte, b' ' | b'\t'))
        .filter(|word| !word.is_empty());
    for (index, word) in words.enumerate() {
        if index > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths_like_the_aws_suite() {
        for (path, expected) in [
            ("/", "/"),
            ("//", "/"),
            ("//example//", "/example/"),
            ("/./", "/"),
            ("/./example", "/example"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/a/b/../c/", "/a/c/"),
        ] {
            assert_eq!(normalize_path(path), expected, "{path}");
        }
    }

    #[test]
    fn encodes_like_aws() {
        assert_eq!(uri_encode("/a b/$x~".as_bytes(), false), "/a%20b/%24x~");
        assert_eq!(uri_encode("a/b".as_bytes(), true), "a%2Fb");
        assert_eq!(
            canonical_uri("/example%20space/", true),
            "/example%2520space/"
        );
        assert_eq!(
            canonical_uri("/example%20space/", false),
            "/example%20space/"
        );
    }

    #[test]
    fn sorts_query_by_encoded_name_then_value() {
        assert_eq!(
            canonical_query(Some("Param1=value2&Param1=Value1&%E1%88%B4=x&empty")),
            "%E1%88%B4=x&Param1=Value1&Param1=value2&empty="
        );
    }

    #[test]
    fn formats_the_amz_date() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(now).unwrap(), "20150830T123600Z");
    }

    #[test]
    fn query_bytes_that_are_not_utf8_are_signed_as_sent() {
        assert_eq!(
            canonical_query(Some("b=%FF&a=%e2%82%ac")),
            "a=%E2%82%AC&b=%FF"
        );
    }

    #[test]
    fn header_values_that_are_not_utf8_are_signed_as_sent() {
        let mut out = Vec::new();
        push_canonical_header_value(&mut out, b"  caf\xe9 \t  au   lait ");
        assert_eq!(out, b"caf\xe9 au lait");
    }

    #[test]
    fn chunk_signed_streaming_uploads_are_refused() {
        let mut head =
            RequestHead::from_url(http::Method::PUT, "https://b.s3.amazonaws.com/k").unwrap();
        head.headers.insert(
            CONTENT_SHA256,
            HeaderValue::from_static("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        );
        assert_eq!(
            payload_hash(Sigv4Payload::Auto, &head, None),
            Err(SignError::StreamingPayload(
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()
            ))
        );
        head.headers.insert(
            CONTENT_SHA256,
            HeaderValue::from_static("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        );
        assert_eq!(
            payload_hash(Sigv4Payload::Auto, &head, None).unwrap(),
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        );
    }
}
