//! Checking a plugin's decision before anything of it touches the request.
//!
//! A decision may only edit what a credential needs: no `Host`, hop-by-hop, framing,
//! forwarding, method- or URL-override or agent-vault headers; valid names; literal text
//! without line breaks or control characters; bounded sizes (edits, parts, atoms, text, and
//! credential references per value); credential references only to slots the service binds;
//! and a deny status the agent cannot mistake for a proxy error. Anything else is an invalid
//! decision, which refuses the request. Every check here looks at the decision alone, never
//! at a credential's value, so its verdict tells nothing about a secret. Rendered values are
//! checked again when the vault renders them (a credential may hold bytes a header cannot
//! carry). The bytes a decision may make the host copy at all are bounded earlier, while it
//! is lifted out of the plugin (`wasm::MAX_LIFTED_BYTES`).

use http::HeaderName;

use super::contract::{self, Denial};
use crate::fill::plan::{Atom, AwsSigv4, Edit, Encoding, Part, Plan, Signer, Sigv4Placement};
use crate::path::escapes_complete;
use crate::request::is_protected_header;
use crate::vault::Credentials;

/// Edits one decision may make.
pub const MAX_EDITS: usize = 64;
/// Parts in one value, and atoms in one part.
pub const MAX_PARTS: usize = 32;
/// Atoms in a whole decision.
pub const MAX_DECISION_ATOMS: usize = 1024;
/// Bytes of literal text and names in a whole decision.
pub const MAX_DECISION_BYTES: usize = 64 * 1024;
/// Bytes of literal text in one value. With [`MAX_VALUE_CREDENTIALS`], this keeps every
/// value with credentials of up to 4 KiB under `render::MAX_RENDERED_LEN`, so that a plugin
/// cannot pad a value to find a credential's length from whether it renders.
pub const MAX_VALUE_TEXT: usize = 4 * 1024;
/// Credential references in one value.
pub const MAX_VALUE_CREDENTIALS: usize = 4;
/// Longest query parameter name and deny reason, in bytes.
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_REASON_LEN: usize = 1024;

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

/// Check every edit and the signer of a forward decision against the bound credentials,
/// and hand it on as the plan the fill stage applies (`crate::fill`).
pub fn check_forward(
    forward: contract::Forward,
    credentials: &Credentials,
) -> Result<Plan, InvalidDecision> {
    let plan = Plan::from(forward);
    check_plan(&plan, credentials)?;
    Ok(plan)
}

fn check_plan(plan: &Plan, credentials: &Credentials) -> Result<(), InvalidDecision> {
    if plan.edits.len() > MAX_EDITS {
        return Err(invalid(format!("more than {MAX_EDITS} edits")));
    }
    let mut size = Size::default();
    for edit in &plan.edits {
        match edit {
            Edit::SetHeader(named) | Edit::AppendHeader(named) => {
                size.name(&named.name)?;
                check_header_name(&named.name)?;
                check_value(
                    &named.value,
                    credentials,
                    Target::Header(&named.name),
                    &mut size,
                )?;
            }
            Edit::RemoveHeader(name) => {
                size.name(name)?;
                check_header_name(name)?;
            }
            Edit::SetQuery(named) => {
                size.name(&named.name)?;
                check_query_name(&named.name)?;
                check_value(
                    &named.value,
                    credentials,
                    Target::Query(&named.name),
                    &mut size,
                )?;
            }
            Edit::RemoveQuery(name) => {
                size.name(name)?;
                check_query_name(name)?;
            }
            Edit::SetPath(value) => check_value(value, credentials, Target::Path, &mut size)?,
        }
    }
    match &plan.sign {
        Some(Signer::AwsSigv4(sigv4)) => check_sigv4(sigv4, credentials),
        None => Ok(()),
    }
}

/// What a decision adds up to so far, against its whole-decision limits.
#[derive(Debug, Default)]
struct Size {
    atoms: usize,
    bytes: usize,
}

impl Size {
    fn name(&mut self, name: &str) -> Result<(), InvalidDecision> {
        self.bytes(name.len())
    }

    fn bytes(&mut self, count: usize) -> Result<(), InvalidDecision> {
        self.bytes += count;
        if self.bytes > MAX_DECISION_BYTES {
            return Err(invalid(format!(
                "the decision has more than {MAX_DECISION_BYTES} bytes of text and names"
            )));
        }
        Ok(())
    }

    fn atoms(&mut self, count: usize) -> Result<(), InvalidDecision> {
        self.atoms += count;
        if self.atoms > MAX_DECISION_ATOMS {
            return Err(invalid(format!(
                "the decision has more than {MAX_DECISION_ATOMS} atoms"
            )));
        }
        Ok(())
    }
}

/// A header name a plugin may write, lower-cased.
fn check_header_name(name: &str) -> Result<HeaderName, InvalidDecision> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(format!("{:?} is not a valid header name", truncate(name))))?;
    let lower = header.as_str();
    if is_protected_header(&header) {
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
    size: &mut Size,
) -> Result<(), InvalidDecision> {
    if value.len() > MAX_PARTS {
        return Err(invalid(format!(
            "the value of {what} has more than {MAX_PARTS} parts"
        )));
    }
    let (mut text_bytes, mut references) = (0, 0);
    for part in value {
        if part.atoms.len() > MAX_PARTS {
            return Err(invalid(format!(
                "the value of {what} has a part with more than {MAX_PARTS} atoms"
            )));
        }
        size.atoms(part.atoms.len())?;
        for atom in &part.atoms {
            match atom {
                Atom::Text(text) => {
                    size.bytes(text.len())?;
                    text_bytes += text.len();
                    if text.chars().any(|c| c.is_control() && c != '\t') {
                        return Err(invalid(format!(
                            "the value of {what} contains a line break or control character"
                        )));
                    }
                    if matches!(what, Target::Path)
                        && part.encoding == Encoding::Raw
                        && !escapes_complete(text.as_bytes())
                    {
                        // Checked on the text alone, so that a `%` cannot take its digits
                        // from a credential next to it.
                        return Err(invalid(
                            "a literal text of the path has a \"%\" not followed by two hex digits",
                        ));
                    }
                }
                Atom::Credential(slot) => {
                    check_slot(slot, credentials, what)?;
                    references += 1;
                }
            }
        }
    }
    if text_bytes > MAX_VALUE_TEXT {
        return Err(invalid(format!(
            "the value of {what} has more than {MAX_VALUE_TEXT} bytes of literal text"
        )));
    }
    if references > MAX_VALUE_CREDENTIALS {
        return Err(invalid(format!(
            "the value of {what} refers to credentials more than {MAX_VALUE_CREDENTIALS} times"
        )));
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
mod tests;
