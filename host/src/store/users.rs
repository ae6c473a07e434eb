//! Users: the people who sign in, with their instance role and password hash.

use std::fmt;

use super::{InstanceRole, Result, UnixTime};

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// Lower case.
    pub email: String,
    pub role: InstanceRole,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub created_at: UnixTime,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Users. Every method is one transaction.
pub trait UserStore {
    /// Whether any user or active agent has the owner role.
    fn has_owner(&self) -> Result<bool>;
    /// Create the first owner (admin of the default vault); `Conflict` if an owner exists.
    fn create_first_owner(&self, user: &User) -> Result<()>;
    fn user(&self, id: &str) -> Result<Option<User>>;
    fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    fn users(&self) -> Result<Vec<User>>;
    /// `LastOwner` if this demotes the last owner.
    fn set_user_role(&self, id: &str, role: InstanceRole) -> Result<()>;
    /// Set the user's password and end every login session and device token of theirs
    /// (vault tokens they minted stay valid): a new login is the caller's to start.
    fn set_user_password(&self, id: &str, password_hash: &str) -> Result<()>;
    /// Delete a user, its grants, its sessions and device tokens and the scoped tokens it
    /// minted, and revoke the agent invites it created; `LastOwner` if it is the last owner.
    fn delete_user(&self, id: &str) -> Result<()>;
}
