//! Builders that make decisions read like what they do:
//! `Forward::new().set_header("authorization", [lit("Bearer "), slot("token")])`.
//!
//! Values are lists of parts; a part is a run of atoms (literal text or a credential slot)
//! that the host joins and encodes. [`lit`] and [`slot`] make atoms, [`raw`], [`base64`],
//! [`hex`] ... make parts, and anything that is [`IntoValue`] can be written to a header,
//! a query parameter or the path.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::bindings::agent_vault::plugin::types::{
    Atom, AuthError, BodyNeed, ConfigKey, CredentialSlot, Decision, Denial, Edit, Encoding, Field,
    Forward, NamedValue, Part, PluginInfo, Request, Requirements, Signer, Value,
};

/// Literal text.
pub fn lit(text: impl Into<String>) -> Atom {
    Atom::Text(text.into())
}

/// A reference to a credential slot; the host puts the value in after the plugin returns.
pub fn slot(name: impl Into<String>) -> Atom {
    Atom::Credential(name.into())
}

fn part(encoding: Encoding, atoms: impl IntoIterator<Item = Atom>) -> Part {
    Part {
        atoms: atoms.into_iter().collect(),
        encoding,
    }
}

/// Atoms joined as they are.
pub fn raw(atoms: impl IntoIterator<Item = Atom>) -> Part {
    part(Encoding::Raw, atoms)
}

/// Atoms joined, then standard base64 (e.g. HTTP Basic: `base64([slot("u"), lit(":"), slot("p")])`).
pub fn base64(atoms: impl IntoIterator<Item = Atom>) -> Part {
    part(Encoding::Base64, atoms)
}

/// Atoms joined, then URL-safe base64 without padding.
pub fn base64url(atoms: impl IntoIterator<Item = Atom>) -> Part {
    part(Encoding::Base64url, atoms)
}

/// Atoms joined, then lower-case hex.
pub fn hex(atoms: impl IntoIterator<Item = Atom>) -> Part {
    part(Encoding::Hex, atoms)
}

/// Atoms joined, then percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`).
pub fn percent(atoms: impl IntoIterator<Item = Atom>) -> Part {
    part(Encoding::Percent, atoms)
}

/// Anything that can be written as a value: an atom, a part, text, or a list of them.
pub trait IntoValue {
    fn into_value(self) -> Value;
}

impl IntoValue for Atom {
    fn into_value(self) -> Value {
        vec![raw([self])]
    }
}

impl IntoValue for Part {
    fn into_value(self) -> Value {
        vec![self]
    }
}

impl IntoValue for &str {
    fn into_value(self) -> Value {
        lit(self).into_value()
    }
}

impl IntoValue for String {
    fn into_value(self) -> Value {
        lit(self).into_value()
    }
}

impl<const N: usize> IntoValue for [Atom; N] {
    fn into_value(self) -> Value {
        vec![raw(self)]
    }
}

impl<const N: usize> IntoValue for [Part; N] {
    fn into_value(self) -> Value {
        self.into_iter().collect()
    }
}

impl IntoValue for Vec<Part> {
    fn into_value(self) -> Value {
        self
    }
}

impl Forward {
    /// A decision to forward the request unchanged; add edits with the methods below.
    pub fn new() -> Self {
        Forward {
            edits: Vec::new(),
            sign: None,
        }
    }

    fn named(name: impl Into<String>, value: impl IntoValue) -> NamedValue {
        NamedValue {
            name: name.into(),
            value: value.into_value(),
        }
    }

    /// Replace every value of the header with this one.
    pub fn set_header(mut self, name: impl Into<String>, value: impl IntoValue) -> Self {
        self.edits.push(Edit::SetHeader(Self::named(name, value)));
        self
    }

    /// Add a value to the header.
    pub fn append_header(mut self, name: impl Into<String>, value: impl IntoValue) -> Self {
        self.edits
            .push(Edit::AppendHeader(Self::named(name, value)));
        self
    }

    pub fn remove_header(mut self, name: impl Into<String>) -> Self {
        self.edits.push(Edit::RemoveHeader(name.into()));
        self
    }

    /// Replace every value of the query parameter; the host percent-encodes the value.
    pub fn set_query(mut self, name: impl Into<String>, value: impl IntoValue) -> Self {
        self.edits.push(Edit::SetQuery(Self::named(name, value)));
        self
    }

    pub fn remove_query(mut self, name: impl Into<String>) -> Self {
        self.edits.push(Edit::RemoveQuery(name.into()));
        self
    }

    /// Replace the path (already percent-encoded, starting with `/`).
    pub fn set_path(mut self, path: impl IntoValue) -> Self {
        self.edits.push(Edit::SetPath(path.into_value()));
        self
    }

    /// Have the host sign the request after the edits (e.g. AWS SigV4).
    pub fn sign(mut self, signer: Signer) -> Self {
        self.sign = Some(signer);
        self
    }
}

impl Default for Forward {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Forward> for Decision {
    fn from(forward: Forward) -> Self {
        Decision::Forward(forward)
    }
}

impl Decision {
    /// Refuse the request with a 4xx status and a reason the agent will see.
    pub fn deny(status: u16, reason: impl Into<String>) -> Self {
        Decision::Deny(Denial {
            status,
            reason: reason.into(),
        })
    }
}

impl AuthError {
    pub fn invalid_config(message: impl Into<String>) -> Self {
        AuthError::InvalidConfig(message.into())
    }
}

impl PluginInfo {
    /// A plugin with no configuration, no credentials and no need for the body.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            config: Vec::new(),
            credentials: Vec::new(),
            body: BodyNeed::None,
        }
    }

    /// A configuration key (or a family of keys: a name ending in `*`).
    pub fn config(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        required: bool,
    ) -> Self {
        self.config.push(ConfigKey {
            name: name.into(),
            description: description.into(),
            required,
        });
        self
    }

    /// A credential slot the service binds to one of its vault's credentials.
    pub fn credential(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        required: bool,
    ) -> Self {
        self.credentials.push(CredentialSlot {
            name: name.into(),
            description: description.into(),
            required,
        });
        self
    }

    /// What the plugin needs of the body at most.
    pub fn body(mut self, need: BodyNeed) -> Self {
        self.body = need;
        self
    }
}

impl Requirements {
    /// The given slots, without the body.
    pub fn credentials(credentials: Vec<CredentialSlot>) -> Self {
        Requirements {
            credentials,
            body: BodyNeed::None,
        }
    }
}

impl Request {
    /// The first value of a header (names are lower case in the request).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// Every value of a header, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        find_all(&self.headers, name)
    }

    /// The first value of a query parameter (percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        find(&self.query, name)
    }

    /// Whether the service binds this credential slot.
    pub fn has_credential(&self, slot: &str) -> bool {
        self.credentials.iter().any(|bound| bound == slot)
    }
}

fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|field| field.name.eq_ignore_ascii_case(name))
        .map(|field| field.value.as_str())
}

fn find_all<'a>(fields: &'a [Field], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    fields
        .iter()
        .filter(move |field| field.name.eq_ignore_ascii_case(name))
        .map(|field| field.value.as_str())
}
