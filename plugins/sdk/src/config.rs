//! A service's plugin configuration as the plugin reads it: string keys and values in the
//! order the service declares them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::bindings::agent_vault::plugin::types::{AuthError, ConfigKey, Field};

/// The configuration a service gives its plugin.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<Field>,
}

impl Config {
    pub fn new(entries: Vec<Field>) -> Self {
        Config { entries }
    }

    /// The value of a key, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|entry| entry.name == key)
            .map(|entry| entry.value.as_str())
    }

    /// The value of a key, or `default` when it is not set.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of a required key; a missing key is an `invalid-config` error.
    pub fn require(&self, key: &str) -> Result<&str, AuthError> {
        self.get(key)
            .ok_or_else(|| AuthError::InvalidConfig(format!("missing config key \"{key}\"")))
    }

    /// Every `(rest, value)` for keys that start with `prefix` (e.g. `header.`), in order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.entries.iter().filter_map(move |entry| {
            entry
                .name
                .strip_prefix(prefix)
                .map(|rest| (rest, entry.value.as_str()))
        })
    }

    /// All entries in order.
    pub fn entries(&self) -> &[Field] {
        &self.entries
    }

    /// Check that every required, non-pattern key of `keys` is present.
    pub fn check_required(&self, keys: &[ConfigKey]) -> Result<(), String> {
        for key in keys {
            if let Some(prefix) = key.name.strip_suffix('*') {
                if key.required && self.with_prefix(prefix).next().is_none() {
                    return Err(format!("at least one \"{}\" key is required", key.name));
                }
            } else if key.required && self.get(&key.name).is_none() {
                return Err(format!("missing config key \"{}\"", key.name));
            }
        }
        Ok(())
    }

    /// Parse a boolean key (`true` / `false`), with a default when unset.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!("\"{key}\" must be true or false, not \"{other}\"")),
        }
    }
}
