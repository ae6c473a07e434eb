//! What a checked plugin decision asks of the outgoing request, in the host's own types:
//! edits applied in order, then an optional signer. `crate::plugin` builds a plan from the
//! plugin's answer only after checking it (`plugin/decision.rs`), so a plan that reaches the
//! fill stage names only headers a plugin may write and slots the service binds.

pub use crate::vault::value::{Atom, Encoding, Part};

/// A header value, query value or path: the concatenation of its encoded parts.
pub type Value = Vec<Part>;

/// A checked forward decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub edits: Vec<Edit>,
    pub sign: Option<Signer>,
}

/// A header or query parameter to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedValue {
    pub name: String,
    pub value: Value,
}

/// One change to the outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace every value of the header with this one.
    SetHeader(NamedValue),
    /// Add a value to the header, keeping existing ones.
    AppendHeader(NamedValue),
    RemoveHeader(String),
    /// Replace every value of the query parameter; the value is percent-encoded.
    SetQuery(NamedValue),
    RemoveQuery(String),
    /// Replace the path, already percent-encoded; the query string is kept.
    SetPath(Value),
}

/// A signature computed last, over the request as it will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    AwsSigv4(AwsSigv4),
}

/// AWS Signature Version 4's parameters: credential slots, scope, placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSigv4 {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Whether the session token is signed (most services) or added after signing.
    pub sign_session_token: bool,
    pub region: String,
    pub service: String,
    pub placement: Sigv4Placement,
    /// Lifetime of a presigned URL (placement `Query`), 1 to 604800 seconds.
    pub expires_seconds: u32,
    /// Normalise the path and encode it a second time (every service but S3).
    pub normalize_path: bool,
    pub payload: Sigv4Payload,
}

/// Where an AWS signature goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sigv4Placement {
    /// The `Authorization` header (and `X-Amz-Date`, `X-Amz-Security-Token`).
    Header,
    /// A presigned URL's query parameters.
    Query,
}

/// Which payload hash goes into the canonical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sigv4Payload {
    /// `x-amz-content-sha256` if the request carries it, else the body's SHA-256.
    Auto,
    /// The literal `UNSIGNED-PAYLOAD`.
    Unsigned,
}
