//! Vaults and settings: the [`Vault`]s that hold credentials and services, each vault's
//! settings, and the instance's settings.

use super::{ActorId, Result, StoreError, UnixTime, now};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    pub id: String,
    pub name: String,
    pub created_at: UnixTime,
}

impl Vault {
    /// A new vault named `name`, with a fresh id, created now; not stored yet.
    pub(crate) fn new(name: &str) -> Result<Vault> {
        let mut bytes = [0u8; 16];
        crate::vault::crypto::random(&mut bytes)
            .map_err(|error| StoreError::Database(format!("cannot create a vault id: {error}")))?;
        Ok(Vault {
            id: hex::encode(bytes),
            name: name.to_owned(),
            created_at: now(),
        })
    }
}

/// The name of the vault every instance starts with; it cannot be deleted.
pub const DEFAULT_VAULT: &str = "default";

/// Vaults, their settings and the instance's settings. Every method is one transaction.
pub trait VaultStore {
    /// Create a vault; `admin`, if given, becomes its admin in the same transaction.
    fn create_vault(&self, name: &str, admin: Option<&ActorId>) -> Result<Vault>;
    fn vault(&self, name: &str) -> Result<Option<Vault>>;
    fn vault_by_id(&self, id: &str) -> Result<Option<Vault>>;
    fn vaults(&self) -> Result<Vec<Vault>>;
    /// Delete a vault and everything in it (credentials, services, grants, scoped tokens,
    /// logs, settings).
    fn delete_vault(&self, id: &str) -> Result<()>;
    /// `Conflict` if another vault has the name; `NotFound` if there is no vault `id`.
    fn rename_vault(&self, id: &str, name: &str) -> Result<()>;
    fn vault_setting(&self, vault_id: &str, key: &str) -> Result<Option<String>>;
    /// Set a setting, or remove it with `None`.
    fn set_vault_setting(&self, vault_id: &str, key: &str, value: Option<&str>) -> Result<()>;

    fn instance_setting(&self, key: &str) -> Result<Option<String>>;
    /// Set an instance setting, or remove it (back to its default) with `None`.
    fn set_instance_setting(&self, key: &str, value: Option<&str>) -> Result<()>;
}
