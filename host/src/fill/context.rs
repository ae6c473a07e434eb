//! What applying a plan needs besides the plan ([`ApplyContext`]: the credentials, the
//! clock, the body's hash, the placeholders), and what it can record on the side ([`Masks`]:
//! how each credential-bearing value looks with its secrets hidden, for `plugin test`).

use std::time::SystemTime;

use http::HeaderName;

use crate::vault::Credentials;
use crate::vault::placeholders::Placeholders;

/// What the signer and the renderer need besides the decision.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext<'a> {
    pub credentials: &'a Credentials,
    pub now: SystemTime,
    pub body_sha256: Option<&'a [u8; 32]>,
    pub placeholders: Option<&'a Placeholders>,
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

    pub(super) fn set_path(&mut self, masked: Option<String>) {
        self.path = masked;
    }

    pub(super) fn forget_header(&mut self, name: &HeaderName) {
        self.headers.retain(|(existing, _)| existing != name);
    }
}
