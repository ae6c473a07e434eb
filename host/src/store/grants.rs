//! Vault grants: which actor holds which role in which vault.

use super::{ActorId, Result, VaultRole};

/// An actor's role in a vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub actor: ActorId,
    pub vault_id: String,
    pub role: VaultRole,
}

/// Vault grants. Every method is one transaction.
pub trait GrantStore {
    fn grants_of(&self, actor: &ActorId) -> Result<Vec<Grant>>;
    fn vault_grants(&self, vault_id: &str) -> Result<Vec<Grant>>;
    /// Insert or change a grant; `LastAdmin` if it demotes the vault's last admin.
    fn set_grant(&self, grant: &Grant) -> Result<()>;
    /// `LastAdmin` if it removes the vault's last admin; `NotFound` if there is no grant.
    fn remove_grant(&self, actor: &ActorId, vault_id: &str) -> Result<()>;
}
