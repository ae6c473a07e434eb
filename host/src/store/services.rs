//! Services: one JSON document per vault, which `services/` parses and validates; the store
//! keeps it as text.

use super::Result;

/// A vault's services document. Every method is one transaction.
pub trait ServiceStore {
    fn services(&self, vault_id: &str) -> Result<Option<String>>;
    fn set_services(&self, vault_id: &str, json: &str) -> Result<()>;
}
