//! Applying a checked decision to the outgoing request: edits in order, credentials rendered
//! by the vault, the service's placeholders replaced by the vault, then the signer last so
//! that it signs exactly what goes out.
//!
//! On error the request is left half-edited; callers refuse it (a request is never forwarded
//! after a failed apply). `Masks` optionally records how each credential-bearing value
//! looks with its secrets hidden, for `plugin test`.

use std::time::SystemTime;

use http::HeaderName;

use super::contract::{Edit, Forward, Signer};
use super::sigv4;
use crate::request::RequestHead;
use crate::vault::Credentials;
use crate::vault::render::{self, RenderError};
use crate::vault::substitute::{Placeholders, SubstitutionError};

/// What the signer and the renderer need besides the decision.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext<'a> {
    pub credentials: &'a Credentials,
    pub now: SystemTime,
    pub body_sha256: Option<&'a [u8; 32]>,
    pub placeholders: Option<&'a Placeholders>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Substitution(#[from] SubstitutionError),
    #[error(transparent)]
    Sign(#[from] sigv4::SignError),
}

/// Credential-bearing values as they may be shown: secrets replaced by `****`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Masks {
    headers: Vec<(HeaderName, String)>,
    query: Vec<(String, String)>,
    path: Option<String>,
}

impl Masks {
    pub(crate) fn header(&mut self, name: HeaderName, masked: String) {
        self.headers.retain(|(existing, _)| *existing != name);
        self.headers.push((name, masked));
    }

    pub(crate) fn append_header(&mut self, name: HeaderName, masked: String) {
        self.headers.push((name, masked));
    }

    pub(crate) fn query(&mut self, name: &str, masked: String) {
        self.query.retain(|(existing, _)| existing != name);
        self.query.push((name.to_owned(), masked));
    }

    /// The masked values recorded for a header, in order.
    pub fn header_values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(existing, _)| existing == name)
            .map(|(_, masked)| masked.as_str())
    }

    /// The masked value recorded for a query parameter.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, masked)| masked.as_str())
    }

    /// The masked path, if the path carries a credential.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    fn forget_header(&mut self, name: &HeaderName) {
        self.headers.retain(|(existing, _)| existing != name);
    }
}

/// Apply `forward` to `head`. The decision must have passed `decision::check_forward`.
pub fn apply(
    forward: &Forward,
    head: &mut RequestHead,
    context: ApplyContext<'_>,
    mut masks: Option<&mut Masks>,
) -> Result<(), ApplyError> {
    for edit in &forward.edits {
        match edit {
            Edit::SetHeader(named) | Edit::AppendHeader(named) => {
                let name = HeaderName::from_bytes(named.name.as_bytes())
                    .expect("checked by decision::check_forward");
                let value = render::header_value(&named.value, context.credentials)?;
                let carries_credential = value.is_sensitive();
                let append = matches!(edit, Edit::AppendHeader(_));
                if let Some(masks) = masks.as_deref_mut() {
                    match (append, carries_credential) {
                        (false, false) => masks.forget_header(&name),
                        (false, true) => masks.header(name.clone(), render::masked(&named.value)),
                        (true, true) => {
                            masks.append_header(name.clone(), render::masked(&named.value))
                        }
                        (true, false) => {}
                    }
                }
                if append {
                    head.headers.append(name, value);
                } else {
                    head.headers.insert(name, value);
                }
            }
            Edit::RemoveHeader(name) => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .expect("checked by decision::check_forward");
                if let Some(masks) = masks.as_deref_mut() {
                    masks.forget_header(&name);
                }
                head.headers.remove(name);
            }
            Edit::SetQuery(named) => {
                let value = render::query_value(&named.value, context.credentials)?;
                if let Some(masks) = masks.as_deref_mut()
                    && render::carries_credential(&named.value)
                {
                    masks.query(&named.name, render::masked(&named.value));
                }
                head.set_query_param(&named.name, &value);
            }
            Edit::RemoveQuery(name) => head.remove_query_param(name),
            Edit::SetPath(value) => {
                head.path = render::path(value, context.credentials)?;
                if let Some(masks) = masks.as_deref_mut() {
                    masks.path = render::carries_credential(value).then(|| render::masked(value));
                }
            }
        }
    }
    if let Some(placeholders) = context.placeholders {
        placeholders.apply_to_head(head)?;
    }
    match &forward.sign {
        Some(Signer::AwsSigv4(params)) => sigv4::sign(params, head, context, masks)?,
        None => {}
    }
    Ok(())
}
