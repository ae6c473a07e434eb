//! Checking a plugin's decision before anything of it touches the request.
//!
//! A decision may only edit what a credential needs: no `Host`, hop-by-hop, framing or
//! agent-vault headers; valid names; literal text without line breaks or control
//! characters; bounded sizes; credential references only to slots the service binds; and a
//! deny status the agent cannot mistake for a proxy error. Anything else is an invalid
//! decision, which refuses the request. Rendered values are checked again when the vault
//! renders them (a credential may hold bytes a header cannot carry).

use http::HeaderName;

use super::contract::{Atom, AwsSigv4, Denial, Edit, Forward, Part, Signer, Sigv4Placement};
use crate::vault::Credentials;

/// Edits one decision may make.
pub const MAX_EDITS: usize = 64;
/// Parts in one value, and atoms in one part.
pub const MAX_PARTS: usize = 32;
/// Longest query parameter name and deny reason, in bytes.
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_REASON_LEN: usize = 1024;

/// Headers a plugin may neither set nor remove: the target, message framing, hop-by-hop
/// headers and the proxy's own.
const FORBIDDEN_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-vault",
];
const FORBIDDEN_HEADER_PREFIX: &str = "x-agent-vault-";

/// Why a decision was refused. The message names the offending edit, never a value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidDecision(pub String);

fn invalid(message: impl Into<String>) -> InvalidDecision {
    InvalidDecision(message.into())
}

/// Check a denial: a 4xx status other than 401 and 407 (those say the agent's own
/// credentials to the proxy failed) and a short, printable reason.
pub fn check_denial(denial: &Denial) -> Result<(), InvalidDecision> {
    if !(400..=499).contains(&denial.status) || matches!(denial.status, 401 | 407) {
        return Err(invalid(format!(
            "deny status {} is not allowed (use a 4xx other than 401 and 407)",
            denial.status
        )));
    }
    if denial.reason.len() > MAX_REASON_LEN {
        return Err(invalid(format!(
            "deny reason is longer than {MAX_REASON_LEN} bytes"
        )));
    }
    if denial.reason.chars().any(char::is_control) {
        return Err(invalid("deny reason contains control characters"));
    }
    Ok(())
}

/// Check every edit and the signer of a forward decision against the bound credentials.
pub fn check_forward(forward: &Forward, credentials: &Credentials) -> Result<(), InvalidDecision> {
    if forward.edits.len() > MAX_EDITS {
        return Err(invalid(format!("more than {MAX_EDITS} edits")));
    }
    for edit in &forward.edits {
        match edit {
            Edit::SetHeader(named) | Edit::AppendHeader(named) => {
                check_header_name(&named.name)?;
                check_value(&named.value, credentials, Target::Header(&named.name))?;
            }
            Edit::RemoveHeader(name) => {
                check_header_name(name)?;
            }
            Edit::SetQuery(named) => {
                check_query_name(&named.name)?;
                check_value(&named.value, credentials, Target::Query(&named.name))?;
            }
            Edit::RemoveQuery(name) => check_query_name(name)?,
            Edit::SetPath(value) => check_value(value, credentials, Target::Path)?,
        }
    }
    match &forward.sign {
        Some(Signer::AwsSigv4(sigv4)) => check_sigv4(sigv4, credentials),
        None => Ok(()),
    }
}

/// A header name a plugin may write, lower-cased.
fn check_header_name(name: &str) -> Result<HeaderName, InvalidDecision> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(format!("{:?} is not a valid header name", truncate(name))))?;
    let lower = header.as_str();
    if FORBIDDEN_HEADERS.contains(&lower) || lower.starts_with(FORBIDDEN_HEADER_PREFIX) {
        return Err(invalid(format!(
            "plugins may not edit the \"{lower}\" header"
        )));
    }
    Ok(header)
}

fn check_query_name(name: &str) -> Result<(), InvalidDecision> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "query parameter names must be 1 to {MAX_NAME_LEN} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "a query parameter name contains control characters",
        ));
    }
    Ok(())
}

/// What a value is written to, for error messages (formatted only when there is an error).
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Header(&'a str),
    Query(&'a str),
    Path,
    Signer,
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Header(name) => write!(f, "header {:?}", truncate(name)),
            Target::Query(name) => write!(f, "query parameter {:?}", truncate(name)),
            Target::Path => f.write_str("path"),
            Target::Signer => f.write_str("the aws-sigv4 signer"),
        }
    }
}

fn check_value(
    value: &[Part],
    credentials: &Credentials,
    what: Target<'_>,
) -> Result<(), InvalidDecision> {
    if value.len() > MAX_PARTS {
        return Err(invalid(format!(
            "the value of {what} has more than {MAX_PARTS} parts"
        )));
    }
    for part in value {
        if part.atoms.len() > MAX_PARTS {
            return Err(invalid(format!(
                "the value of {what} has a part with more than {MAX_PARTS} atoms"
            )));
        }
        for atom in &part.atoms {
            match atom {
                Atom::Text(text) => {
                    if text.chars().any(|c| c.is_control() && c != '\t') {
                        return Err(invalid(format!(
                            "the value of {what} contains a line break or control character"
                        )));
                    }
                }
                Atom::Credential(slot) => check_slot(slot, credentials, what)?,
            }
        }
    }
    Ok(())
}

fn check_slot(
    slot: &str,
    credentials: &Credentials,
    what: Target<'_>,
) -> Result<(), InvalidDecision> {
    if credentials.contains(slot) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} refers to credential slot {:?}, which this service does not bind",
            truncate(slot)
        )))
    }
}

fn check_sigv4(sigv4: &AwsSigv4, credentials: &Credentials) -> Result<(), InvalidDecision> {
    let what = Target::Signer;
    check_slot(&sigv4.access_key_id, credentials, what)?;
    check_slot(&sigv4.secret_access_key, credentials, what)?;
    if let Some(slot) = &sigv4.session_token {
        check_slot(slot, credentials, what)?;
    }
    for (field, text) in [("region", &sigv4.region), ("service", &sigv4.service)] {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(invalid(format!(
                "aws-sigv4 {field} must be 1 to 64 lower-case letters, digits or hyphens"
            )));
        }
    }
    if sigv4.placement == Sigv4Placement::Query && !(1..=604_800).contains(&sigv4.expires_seconds) {
        return Err(invalid("aws-sigv4 expires-seconds must be 1 to 604800"));
    }
    Ok(())
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::contract::{Encoding, NamedValue};
    use crate::vault::Secret;

    fn credentials() -> Credentials {
        Credentials::new([("token".to_owned(), Secret::new("t"))])
    }

    fn header(name: &str, atoms: Vec<Atom>) -> Edit {
        Edit::SetHeader(NamedValue {
            name: name.to_owned(),
            value: vec![Part {
                atoms,
                encoding: Encoding::Raw,
            }],
        })
    }

    fn forward(edits: Vec<Edit>) -> Forward {
        Forward { edits, sign: None }
    }

    fn check(edits: Vec<Edit>) -> Result<(), InvalidDecision> {
        check_forward(&forward(edits), &credentials())
    }

    #[test]
    fn a_bearer_decision_is_valid() {
        let edit = header(
            "Authorization",
            vec![
                Atom::Text("Bearer ".into()),
                Atom::Credential("token".into()),
            ],
        );
        assert_eq!(check(vec![edit]), Ok(()));
    }

    #[test]
    fn forbidden_headers_cannot_be_set_or_removed() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "connection",
            "x-agent-vault-proxy-error",
            "X-Vault",
        ] {
            let error = check(vec![header(name, vec![])]).unwrap_err();
            assert!(error.0.contains("may not edit"), "{name}: {error}");
            assert!(
                check(vec![Edit::RemoveHeader(name.into())]).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn line_breaks_in_literal_text_are_refused() {
        let error = check(vec![header(
            "x-a",
            vec![Atom::Text("a\r\nHost: evil".into())],
        )])
        .unwrap_err();
        assert_eq!(
            error.0,
            "the value of header \"x-a\" contains a line break or control character"
        );
    }

    #[test]
    fn invalid_header_names_are_refused() {
        assert!(check(vec![header("bad name", vec![])]).is_err());
        assert!(check(vec![header("", vec![])]).is_err());
    }

    #[test]
    fn slots_must_be_bound() {
        let error = check(vec![header("x-a", vec![Atom::Credential("other".into())])]).unwrap_err();
        assert_eq!(
            error.0,
            "header \"x-a\" refers to credential slot \"other\", which this service does not bind"
        );
    }

    #[test]
    fn edits_are_capped() {
        let edits = (0..=MAX_EDITS)
            .map(|_| Edit::RemoveQuery("a".into()))
            .collect();
        assert!(check(edits).is_err());
    }

    #[test]
    fn deny_statuses_are_4xx_but_not_401_or_407() {
        let deny = |status| {
            check_denial(&Denial {
                status,
                reason: "no".into(),
            })
        };
        assert_eq!(deny(403), Ok(()));
        assert_eq!(deny(429), Ok(()));
        for status in [200, 302, 401, 407, 500, 502] {
            assert!(deny(status).is_err(), "{status}");
        }
        assert!(
            check_denial(&Denial {
                status: 403,
                reason: "a\nb".into()
            })
            .is_err()
        );
    }
}
