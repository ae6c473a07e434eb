//! Rendering a plugin's value (literal text and credential references, each run encoded)
//! into the bytes that go into the outgoing request.
//!
//! This is where a credential's bytes meet the request. The output goes straight into the
//! request: a header value marked sensitive, a query value, or a path. Errors name the slot
//! whose value did not fit, never the value.
//!
//! No oracle: a value that carries a credential and cannot be rendered fails with the one
//! error [`RenderError::Credential`], whichever check failed (its length, a byte a header
//! cannot carry, a path it would break), so the agent who sees the error learns nothing of
//! the secret's bytes or length; which check failed goes to the server log at debug level,
//! with the slot names and never the value. Values of literal text alone get the precise
//! error. The decision's own limits (`plugin::decision`) keep a value's literal text and
//! credential references small enough that the length limit here is out of reach for
//! credentials of up to 4 KiB.

use base64::Engine as _;
use http::HeaderValue;
use zeroize::Zeroizing;

use super::value::{Atom, Encoding, Part};
use super::{Credentials, UnboundSlot};
use crate::path::PathError;
use crate::path::escapes_complete;
use crate::request::QUERY_COMPONENT;

/// The longest header value, query value or path a decision may produce, in bytes.
pub const MAX_RENDERED_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error(transparent)]
    Unbound(#[from] UnboundSlot),
    /// A value with a credential in it does not fit where it goes. Deliberately says no more.
    #[error("a value that carries a credential cannot be written where the plugin put it")]
    Credential,
    #[error("the value is longer than {MAX_RENDERED_LEN} bytes")]
    TooLong,
    #[error("the header value has bytes a header cannot carry")]
    NotHeaderSafe,
    #[error("the path {0}")]
    InvalidPath(&'static str),
}

/// Render a value into a header value, marked sensitive when it carries a credential.
pub fn header_value(value: &[Part], credentials: &Credentials) -> Result<HeaderValue, RenderError> {
    let bytes = render(value, credentials)?;
    match HeaderValue::from_bytes(&bytes) {
        Ok(mut header) => {
            header.set_sensitive(carries_credential(value));
            Ok(header)
        }
        Err(_) => Err(unrenderable(
            value,
            "a header cannot carry its bytes (CR, LF, NUL or another control character)",
            RenderError::NotHeaderSafe,
        )),
    }
}

/// Render a value for a query parameter; the caller percent-encodes it into the query.
pub fn query_value(
    value: &[Part],
    credentials: &Credentials,
) -> Result<Zeroizing<Vec<u8>>, RenderError> {
    render(value, credentials)
}

/// Render a path: it must already be percent-encoded, start with `/`, and have no dot
/// segments, so that a plugin can neither escape the path it was given nor smuggle a query.
///
/// A `%` must start an escape within its own text or credential: the decision's check does it
/// for literal text, this for each credential that goes into the path unencoded, so that no
/// escape is made of a secret's first bytes.
pub fn path(value: &[Part], credentials: &Credentials) -> Result<String, RenderError> {
    for part in value.iter().filter(|part| part.encoding == Encoding::Raw) {
        for atom in &part.atoms {
            if let Atom::Credential(slot) = atom
                && !escapes_complete(credential(credentials, slot)?.expose())
            {
                return Err(unrenderable(
                    value,
                    "a credential in the path has a \"%\" not followed by two hex digits",
                    RenderError::InvalidPath("has a \"%\" not followed by two hex digits"),
                ));
            }
        }
    }
    let bytes = render(value, credentials)?;
    if let Err(error) = check_path(&bytes) {
        let RenderError::InvalidPath(reason) = error else {
            return Err(error);
        };
        return Err(unrenderable(value, reason, error));
    }
    // check_path only lets ASCII through.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether any part of the value refers to a credential.
pub fn carries_credential(value: &[Part]) -> bool {
    value
        .iter()
        .flat_map(|part| &part.atoms)
        .any(|atom| matches!(atom, Atom::Credential(_)))
}

/// The value for display: literal parts as they are, any part that refers to a credential
/// as `****`, so `plugin test` can show the shape of a request without its secrets.
pub fn masked(value: &[Part]) -> String {
    let mut out = String::new();
    for part in value {
        if part
            .atoms
            .iter()
            .any(|atom| matches!(atom, Atom::Credential(_)))
        {
            out.push_str("****");
        } else {
            let text: Vec<u8> = part
                .atoms
                .iter()
                .flat_map(|atom| match atom {
                    Atom::Text(text) => text.as_bytes().to_vec(),
                    Atom::Credential(_) => Vec::new(),
                })
                .collect();
            out.push_str(&String::from_utf8_lossy(&encode(part.encoding, &text)));
        }
    }
    out
}

fn render(value: &[Part], credentials: &Credentials) -> Result<Zeroizing<Vec<u8>>, RenderError> {
    // Buffers are sized up front: a Vec that grows leaves copies of secret bytes behind in
    // the allocations it frees, and only the final buffer is zeroed.
    let mut capacity = 0;
    for part in value {
        let joined = joined_len(part, credentials)?;
        capacity += match part.encoding {
            Encoding::Raw => joined,
            Encoding::Base64 | Encoding::Base64url => joined.div_ceil(3) * 4,
            Encoding::Hex => joined * 2,
            Encoding::Percent => joined * 3,
        };
    }
    if capacity > MAX_RENDERED_LEN * 3 {
        return Err(unrenderable(value, "too long", RenderError::TooLong));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    for part in value {
        if part.encoding == Encoding::Raw {
            append_atoms(&mut out, &part.atoms, credentials)?;
        } else {
            let mut joined = Zeroizing::new(Vec::with_capacity(joined_len(part, credentials)?));
            append_atoms(&mut joined, &part.atoms, credentials)?;
            out.extend_from_slice(&encode(part.encoding, &joined));
        }
    }
    if out.len() > MAX_RENDERED_LEN {
        return Err(unrenderable(value, "too long", RenderError::TooLong));
    }
    Ok(out)
}

/// The error for a value that cannot be rendered: `precise` when it is literal text alone,
/// [`RenderError::Credential`] when a credential is in it, with `reason` (and the slots, never
/// their values) in the server log only.
fn unrenderable(value: &[Part], reason: &str, precise: RenderError) -> RenderError {
    if !carries_credential(value) {
        return precise;
    }
    let slots: Vec<&str> = value
        .iter()
        .flat_map(|part| &part.atoms)
        .filter_map(|atom| match atom {
            Atom::Credential(slot) => Some(slot.as_str()),
            Atom::Text(_) => None,
        })
        .collect();
    tracing::debug!(
        ?slots,
        reason,
        "a plugin's value with a credential could not be rendered"
    );
    RenderError::Credential
}

fn joined_len(part: &Part, credentials: &Credentials) -> Result<usize, RenderError> {
    part.atoms.iter().try_fold(0, |total, atom| {
        Ok(total
            + match atom {
                Atom::Text(text) => text.len(),
                Atom::Credential(slot) => credential(credentials, slot)?.expose().len(),
            })
    })
}

fn append_atoms(
    out: &mut Vec<u8>,
    atoms: &[Atom],
    credentials: &Credentials,
) -> Result<(), RenderError> {
    for atom in atoms {
        match atom {
            Atom::Text(text) => out.extend_from_slice(text.as_bytes()),
            Atom::Credential(slot) => {
                out.extend_from_slice(credential(credentials, slot)?.expose())
            }
        }
    }
    Ok(())
}

fn credential<'a>(
    credentials: &'a Credentials,
    slot: &str,
) -> Result<&'a super::Secret, UnboundSlot> {
    credentials
        .get(slot)
        .ok_or_else(|| UnboundSlot(slot.to_owned()))
}

fn encode(encoding: Encoding, bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(match encoding {
        Encoding::Raw => bytes.to_vec(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes(),
        Encoding::Base64url => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(bytes)
            .into_bytes(),
        Encoding::Hex => hex::encode(bytes).into_bytes(),
        Encoding::Percent => percent_encoding::percent_encode(bytes, QUERY_COMPONENT)
            .to_string()
            .into_bytes(),
    })
}

pub(super) fn check_path(path: &[u8]) -> Result<(), RenderError> {
    if path.first() != Some(&b'/') {
        return Err(RenderError::InvalidPath("must start with \"/\""));
    }
    if path.starts_with(b"//") {
        return Err(RenderError::InvalidPath("must not start with \"//\""));
    }
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&byte);
    if !path.iter().all(|&byte| allowed(byte)) {
        return Err(RenderError::InvalidPath(
            "may only hold URL path characters; percent-encode the rest",
        ));
    }
    // The rule the route applies to an agent's path (`crate::path`): a path made here must
    // not mean one thing to the route and another to the upstream either.
    let text = String::from_utf8_lossy(path);
    let canonical = crate::path::canonical_path(&text).map_err(|error| {
        RenderError::InvalidPath(match error {
            PathError::DotSegment => "must not have \".\" or \"..\" segments",
            PathError::BadEncoding => "has a \"%\" not followed by two hex digits",
            PathError::DoubleEncoding => {
                "must not encode a \"%\" before two hex digits (double encoding)"
            }
            PathError::NotUtf8 => "must be UTF-8 once percent-decoded",
            PathError::ControlCharacter => "must not have control characters once percent-decoded",
            PathError::NotAbsolute | PathError::BadOverride => "must start with \"/\"",
        })
    })?;
    // The canonical form is decoded: an encoded `?` or `#` shows there.
    if canonical.contains(['?', '#']) {
        return Err(RenderError::InvalidPath("must not encode \"?\" or \"#\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
