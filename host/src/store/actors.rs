//! Who acts on an instance and with what standing: an [`ActorId`] names a user or an agent
//! (who holds a grant, minted a token, made a request), an [`InstanceRole`] is its standing
//! on the instance and a [`VaultRole`] its standing in one vault. Every entity that records
//! an actor or a role uses these.

use serde::{Deserialize, Serialize};

/// A role on the instance: `owner` > `member` > `no-access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceRole {
    NoAccess,
    Member,
    Owner,
}

/// A role in one vault: `admin` > `member` > `proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultRole {
    Proxy,
    Member,
    Admin,
}

text_enum!(InstanceRole { Owner => "owner", Member => "member", NoAccess => "no-access" });
text_enum!(VaultRole { Admin => "admin", Member => "member", Proxy => "proxy" });
text_enum!(ActorKind { User => "user", Agent => "agent" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActorKind {
    User,
    Agent,
}

/// A user or an agent: who holds a grant, minted a token, or made a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActorId {
    pub kind: ActorKind,
    pub id: String,
}

impl ActorId {
    pub fn user(id: impl Into<String>) -> Self {
        ActorId {
            kind: ActorKind::User,
            id: id.into(),
        }
    }

    pub fn agent(id: impl Into<String>) -> Self {
        ActorId {
            kind: ActorKind::Agent,
            id: id.into(),
        }
    }
}
