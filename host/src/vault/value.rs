//! A value as a plugin describes it, in the host's own types: parts of literal text and
//! credential references, each joined and then encoded. The plugin contract's types are
//! turned into these where a decision is checked (in the plugin module), so nothing from
//! the WebAssembly interface reaches the vault or the request.

/// How one part of a value is encoded after its atoms are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// As is.
    Raw,
    /// Standard base64 with padding (RFC 4648 section 4).
    Base64,
    /// URL-safe base64 without padding (RFC 4648 section 5).
    Base64url,
    /// Lower-case hexadecimal.
    Hex,
    /// Percent-encoding of every byte except `A-Z a-z 0-9 - . _ ~`.
    Percent,
}

/// The smallest piece of a value: literal text or the name of a credential slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    Text(String),
    Credential(String),
}

/// A run of atoms that is joined and then encoded, e.g. base64(user ":" pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub atoms: Vec<Atom>,
    pub encoding: Encoding,
}
