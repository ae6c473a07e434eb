//! Where the plugin contract's generated types end: a plugin's forward decision, as lifted
//! out of WebAssembly, becomes the fill stage's [`Plan`] in the host's own types. Values are
//! moved, not copied. Every `match` is exhaustive, so a case added to `wit/plugin.wit` does
//! not compile until the host says what it means.

use super::contract;
use crate::fill::plan::{
    Atom, AwsSigv4, Edit, Encoding, NamedValue, Part, Plan, Signer, Sigv4Payload, Sigv4Placement,
};

impl From<contract::Forward> for Plan {
    fn from(forward: contract::Forward) -> Self {
        Plan {
            edits: forward.edits.into_iter().map(Edit::from).collect(),
            sign: forward.sign.map(Signer::from),
        }
    }
}

impl From<contract::Edit> for Edit {
    fn from(edit: contract::Edit) -> Self {
        match edit {
            contract::Edit::SetHeader(named) => Edit::SetHeader(named.into()),
            contract::Edit::AppendHeader(named) => Edit::AppendHeader(named.into()),
            contract::Edit::RemoveHeader(name) => Edit::RemoveHeader(name),
            contract::Edit::SetQuery(named) => Edit::SetQuery(named.into()),
            contract::Edit::RemoveQuery(name) => Edit::RemoveQuery(name),
            contract::Edit::SetPath(value) => Edit::SetPath(value_from(value)),
        }
    }
}

impl From<contract::NamedValue> for NamedValue {
    fn from(named: contract::NamedValue) -> Self {
        NamedValue {
            name: named.name,
            value: value_from(named.value),
        }
    }
}

fn value_from(parts: Vec<contract::Part>) -> Vec<Part> {
    parts.into_iter().map(Part::from).collect()
}

impl From<contract::Part> for Part {
    fn from(part: contract::Part) -> Self {
        Part {
            atoms: part.atoms.into_iter().map(Atom::from).collect(),
            encoding: part.encoding.into(),
        }
    }
}

impl From<contract::Atom> for Atom {
    fn from(atom: contract::Atom) -> Self {
        match atom {
            contract::Atom::Text(text) => Atom::Text(text),
            contract::Atom::Credential(slot) => Atom::Credential(slot),
        }
    }
}

impl From<contract::Encoding> for Encoding {
    fn from(encoding: contract::Encoding) -> Self {
        match encoding {
            contract::Encoding::Raw => Encoding::Raw,
            contract::Encoding::Base64 => Encoding::Base64,
            contract::Encoding::Base64url => Encoding::Base64url,
            contract::Encoding::Hex => Encoding::Hex,
            contract::Encoding::Percent => Encoding::Percent,
        }
    }
}

impl From<contract::Signer> for Signer {
    fn from(signer: contract::Signer) -> Self {
        match signer {
            contract::Signer::AwsSigv4(params) => Signer::AwsSigv4(params.into()),
        }
    }
}

impl From<contract::AwsSigv4> for AwsSigv4 {
    fn from(params: contract::AwsSigv4) -> Self {
        AwsSigv4 {
            access_key_id: params.access_key_id,
            secret_access_key: params.secret_access_key,
            session_token: params.session_token,
            sign_session_token: params.sign_session_token,
            region: params.region,
            service: params.service,
            placement: match params.placement {
                contract::Sigv4Placement::Header => Sigv4Placement::Header,
                contract::Sigv4Placement::Query => Sigv4Placement::Query,
            },
            expires_seconds: params.expires_seconds,
            normalize_path: params.normalize_path,
            payload: match params.payload {
                contract::Sigv4Payload::Auto => Sigv4Payload::Auto,
                contract::Sigv4Payload::Unsigned => Sigv4Payload::Unsigned,
            },
        }
    }
}
