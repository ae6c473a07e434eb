//! Credentials: a vault's values, stored sealed under their key names. Nothing here ever sees
//! a plaintext credential: values arrive sealed by `vault::crypto`.

use super::Result;
use crate::vault::crypto::Sealed;

/// A credential as stored: its key name and its sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub key: String,
    pub sealed: Sealed,
}

/// A vault's credentials. Every method is one transaction.
pub trait CredentialStore {
    /// Insert or replace credentials, all or none.
    fn put_credentials(&self, vault_id: &str, credentials: &[StoredCredential]) -> Result<()>;
    fn credential(&self, vault_id: &str, key: &str) -> Result<Option<StoredCredential>>;
    /// Key names, sorted.
    fn credential_keys(&self, vault_id: &str) -> Result<Vec<String>>;
    /// Delete the given keys; returns those that existed.
    fn delete_credentials(&self, vault_id: &str, keys: &[String]) -> Result<Vec<String>>;
}
