//! A service's plugin configuration and credential bindings, and the checks that run when a
//! service is written: known keys only, required keys present, the plugin's own
//! `validate-config`, and every required slot bound to a credential.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::contract::{BodyNeed, Field, PluginInfo, Requirements};

/// The configuration a service gives its plugin: string keys and values, in order. Cheap to
/// clone: every call of the plugin shares the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    fields: Arc<[Field]>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            fields: Arc::new([]),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("config key \"{0}\" is given twice")]
    DuplicateKey(String),
    #[error("unknown config key \"{key}\" (plugin {plugin} accepts: {accepted})")]
    UnknownKey {
        plugin: String,
        key: String,
        accepted: String,
    },
    #[error("missing required config key \"{0}\"")]
    MissingKey(String),
    #[error("the plugin rejected the configuration: {0}")]
    Rejected(String),
    #[error("the plugin asked for more of the body than its describe declares")]
    BodyBeyondDescribe,
    #[error("credential slot \"{slot}\" is not one plugin {plugin} uses (it uses: {used})")]
    UnknownSlot {
        plugin: String,
        slot: String,
        used: String,
    },
    #[error("credential slot \"{0}\" is required but not bound to a credential")]
    UnboundSlot(String),
}

impl PluginConfig {
    /// A configuration from key/value pairs; a key given twice is an error.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut fields: Vec<Field> = Vec::new();
        for (name, value) in pairs {
            if fields.iter().any(|field| field.name == name) {
                return Err(ConfigError::DuplicateKey(name));
            }
            fields.push(Field { name, value });
        }
        Ok(PluginConfig {
            fields: fields.into(),
        })
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The fields, shared, for a call that may outlive the caller's borrow.
    pub(crate) fn shared_fields(&self) -> Arc<[Field]> {
        self.fields.clone()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|field| field.name == key)
            .map(|field| field.value.as_str())
    }
}

/// Every key must be one `describe` declares (or match a declared `prefix*` family), and
/// every required key must be present.
pub fn check_keys(info: &PluginInfo, config: &PluginConfig) -> Result<(), ConfigError> {
    let accepts = |key: &str| {
        info.config
            .iter()
            .any(|declared| match declared.name.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix) && key.len() > prefix.len(),
                None => declared.name == key,
            })
    };
    for field in config.fields() {
        if !accepts(&field.name) {
            let accepted: Vec<&str> = info.config.iter().map(|key| key.name.as_str()).collect();
            return Err(ConfigError::UnknownKey {
                plugin: info.name.clone(),
                key: field.name.clone(),
                accepted: if accepted.is_empty() {
                    "no keys".to_owned()
                } else {
                    accepted.join(", ")
                },
            });
        }
    }
    for declared in info.config.iter().filter(|key| key.required) {
        let present = match declared.name.strip_suffix('*') {
            Some(prefix) => config.fields().iter().any(|f| f.name.starts_with(prefix)),
            None => config.get(&declared.name).is_some(),
        };
        if !present {
            return Err(ConfigError::MissingKey(declared.name.clone()));
        }
    }
    Ok(())
}

/// A configuration may not ask for more of the body than the plugin declares.
pub fn check_requirements(
    info: &PluginInfo,
    requirements: &Requirements,
) -> Result<(), ConfigError> {
    fn rank(need: &BodyNeed) -> u8 {
        match need {
            BodyNeed::None => 0,
            BodyNeed::Sha256UnlessHeader(_) => 1,
            BodyNeed::Sha256 => 2,
        }
    }
    if rank(&requirements.body) > rank(&info.body) {
        return Err(ConfigError::BodyBeyondDescribe);
    }
    Ok(())
}

/// Every bound slot must be one the configuration uses, and every required one bound.
pub fn check_bindings<'a>(
    plugin: &str,
    requirements: &Requirements,
    bound: impl IntoIterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let bound: BTreeSet<&str> = bound.into_iter().collect();
    for slot in &bound {
        if !requirements
            .credentials
            .iter()
            .any(|used| used.name == *slot)
        {
            let used: Vec<&str> = requirements
                .credentials
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            return Err(ConfigError::UnknownSlot {
                plugin: plugin.to_owned(),
                slot: (*slot).to_owned(),
                used: if used.is_empty() {
                    "none; no credential fields are permitted".to_owned()
                } else {
                    used.join(", ")
                },
            });
        }
    }
    for slot in requirements.credentials.iter().filter(|slot| slot.required) {
        if !bound.contains(slot.name.as_str()) {
            return Err(ConfigError::UnboundSlot(slot.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::contract::{ConfigKey, CredentialSlot};

    fn info() -> PluginInfo {
        PluginInfo {
            name: "api-key".into(),
            version: "0.1.0".into(),
            description: String::new(),
            config: vec![
                ConfigKey {
                    name: "header".into(),
                    description: String::new(),
                    required: true,
                },
                ConfigKey {
                    name: "extra.*".into(),
                    description: String::new(),
                    required: false,
                },
            ],
            credentials: vec![],
            body: BodyNeed::None,
        }
    }

    fn config(pairs: &[(&str, &str)]) -> PluginConfig {
        PluginConfig::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn known_keys_and_families_pass() {
        assert_eq!(
            check_keys(&info(), &config(&[("header", "x"), ("extra.a", "1")])),
            Ok(())
        );
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let error = check_keys(&info(), &config(&[("header", "x"), ("heder", "y")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown config key \"heder\" (plugin api-key accepts: header, extra.*)"
        );
        assert_eq!(
            check_keys(&info(), &config(&[])),
            Err(ConfigError::MissingKey("header".into()))
        );
        assert!(check_keys(&info(), &config(&[("header", "x"), ("extra.", "1")])).is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let pairs = [
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ];
        assert_eq!(
            PluginConfig::from_pairs(pairs),
            Err(ConfigError::DuplicateKey("a".into()))
        );
    }

    #[test]
    fn bindings_must_match_the_slots() {
        let requirements = Requirements {
            credentials: vec![
                CredentialSlot {
                    name: "username".into(),
                    description: String::new(),
                    required: true,
                },
                CredentialSlot {
                    name: "password".into(),
                    description: String::new(),
                    required: false,
                },
            ],
            body: BodyNeed::None,
        };
        assert_eq!(check_bindings("basic", &requirements, ["username"]), Ok(()));
        assert_eq!(
            check_bindings("basic", &requirements, ["password"]),
            Err(ConfigError::UnboundSlot("username".into()))
        );
        let error = check_bindings("basic", &requirements, ["username", "token"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "credential slot \"token\" is not one plugin basic uses (it uses: username, password)"
        );
        let none = Requirements {
            credentials: vec![],
            body: BodyNeed::None,
        };
        let error = check_bindings("passthrough", &none, ["token"]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no credential fields are permitted")
        );
    }
}
