//! Proposals: what an agent may ask for, and what approving it does to a vault.
//!
//! An agent proposes service changes (`set` a service with its `auth`, or switch an existing
//! one with `enabled` alone; `delete` one) and credential slots (keys a human fills in when
//! approving, or keys to delete). [`validate`] checks a proposal against the vault as it is,
//! with Agent Vault's rules and one message naming the field; [`merge`] computes the vault's
//! services once a human approves. A proposal never carries a credential value: whoever
//! approves types it, so it never passes through the agent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::services::{self, Rules, Service, ServiceSpec, check_credential_key};

pub const MAX_SERVICES: usize = 10;
pub const MAX_SLOTS: usize = 10;
pub const MAX_MESSAGE: usize = 2000;
pub const MAX_USER_MESSAGE: usize = 5000;
const MAX_DESCRIPTION: usize = 500;
const MAX_OBTAIN: usize = 500;
const MAX_OBTAIN_INSTRUCTIONS: usize = 1000;

/// A proposal as an agent sends it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProposalRequest {
    /// Service entries, kept as JSON: each is a service spec plus an `action`.
    #[serde(default)]
    pub services: Vec<Value>,
    #[serde(default)]
    pub credentials: Vec<Slot>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub user_message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Set,
    Delete,
}

/// A credential slot: a key the approver fills in (`set`) or a key to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    #[serde(default)]
    pub action: Action,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where a human gets the value (an http(s) URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtain_instructions: Option<String>,
    /// `static` (the only kind here).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Refused: an agent never sends a value.
    #[serde(default, skip_serializing)]
    pub value: Option<Value>,
    /// Refused: OAuth credentials are not supported.
    #[serde(default, skip_serializing)]
    pub oauth: Option<Value>,
}

/// One checked service change.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceChange {
    pub action: Action,
    pub name: String,
    /// `set` with `auth`: the service as it will be.
    pub service: Option<Service>,
    /// `set` without `auth`: the flag to change on the existing service.
    pub enabled: Option<bool>,
    /// The entry as stored, with its name resolved.
    pub entry: Value,
}

/// A checked proposal, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub services: Vec<ServiceChange>,
    pub slots: Vec<Slot>,
}

impl Checked {
    pub fn services_json(&self) -> String {
        Value::Array(self.services.iter().map(|c| c.entry.clone()).collect()).to_string()
    }

    pub fn credentials_json(&self) -> String {
        serde_json::to_string(&self.slots).expect("slots serialize")
    }

    /// The keys the approver must supply.
    pub fn keys_to_set(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|slot| slot.action == Action::Set)
            .map(|slot| slot.key.as_str())
            .collect()
    }

    pub fn keys_to_delete(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|slot| slot.action == Action::Delete)
            .map(|slot| slot.key.clone())
            .collect()
    }
}

/// Why a proposal was refused: the status it maps to and a message naming the field.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// 400.
    Invalid(String),
    /// 404: a `delete` names a host no service has.
    NotFound(String),
    /// 409: a `delete` by host matches several services; `(name, host)` of each.
    Ambiguous {
        message: String,
        candidates: Vec<(String, String)>,
    },
}

fn invalid(message: impl Into<String>) -> Refused {
    Refused::Invalid(message.into())
}

/// Check a new proposal against the vault's `existing` services and credential keys.
pub fn validate(
    request: &ProposalRequest,
    existing: &[Service],
    existing_keys: &[String],
    rules: Rules<'_>,
) -> Result<Checked, Refused> {
    if request.services.is_empty() && request.credentials.is_empty() {
        return Err(invalid(
            "A proposal needs at least one service or credential",
        ));
    }
    if request.services.len() > MAX_SERVICES {
        return Err(invalid(format!(
            "services: at most {MAX_SERVICES} per proposal"
        )));
    }
    if request.credentials.len() > MAX_SLOTS {
        return Err(invalid(format!(
            "credentials: at most {MAX_SLOTS} per proposal"
        )));
    }
    if request.message.chars().count() > MAX_MESSAGE {
        return Err(invalid(format!(
            "message: at most {MAX_MESSAGE} characters"
        )));
    }
    if request.user_message.chars().count() > MAX_USER_MESSAGE {
        return Err(invalid(format!(
            "user_message: at most {MAX_USER_MESSAGE} characters"
        )));
    }
    let slots = check_slots(&request.credentials)?;
    let services = changes(&request.services, existing, rules)?;
    check_references(&services, &slots, existing_keys)?;
    Ok(Checked { services, slots })
}

/// A stored proposal's checked changes, read back for approval against the vault's services
/// as they are now (names were resolved when it was proposed).
pub fn stored(
    services_json: &str,
    credentials_json: &str,
    existing: &[Service],
    rules: Rules<'_>,
) -> Result<Checked, Refused> {
    let entries: Vec<Value> = serde_json::from_str(services_json)
        .map_err(|error| invalid(format!("the stored proposal is unreadable: {error}")))?;
    let slots: Vec<Slot> = serde_json::from_str(credentials_json)
        .map_err(|error| invalid(format!("the stored proposal is unreadable: {error}")))?;
    let services = changes(&entries, existing, rules)?;
    Ok(Checked { services, slots })
}

fn check_slots(slots: &[Slot]) -> Result<Vec<Slot>, Refused> {
    let mut checked: Vec<Slot> = Vec::with_capacity(slots.len());
    for (index, slot) in slots.iter().enumerate() {
        let field = |message: String| invalid(format!("credentials[{index}]: {message}"));
        check_credential_key(&slot.key).map_err(|message| field(format!("key {message}")))?;
        if checked.iter().any(|other| other.key == slot.key) {
            return Err(field(format!("duplicate key {}", slot.key)));
        }
        if slot.value.is_some() {
            return Err(field(
                "value: an agent never sends a credential value; whoever approves types it".into(),
            ));
        }
        if slot.oauth.is_some() || slot.kind.as_deref() == Some("oauth") {
            return Err(field("OAuth credentials are not supported".into()));
        }
        if let Some(kind) = slot.kind.as_deref()
            && kind != "static"
        {
            return Err(field(format!("type must be \"static\", not {kind:?}")));
        }
        let too_long = |text: &Option<String>, max: usize| {
            text.as_ref().is_some_and(|text| text.chars().count() > max)
        };
        if too_long(&slot.description, MAX_DESCRIPTION) {
            return Err(field(format!(
                "description: at most {MAX_DESCRIPTION} characters"
            )));
        }
        if too_long(&slot.obtain, MAX_OBTAIN) {
            return Err(field(format!("obtain: at most {MAX_OBTAIN} characters")));
        }
        if let Some(obtain) = &slot.obtain
            && !(obtain.starts_with("https://") || obtain.starts_with("http://"))
        {
            return Err(field("obtain must be an http:// or https:// URL".into()));
        }
        if too_long(&slot.obtain_instructions, MAX_OBTAIN_INSTRUCTIONS) {
            return Err(field(format!(
                "obtain_instructions: at most {MAX_OBTAIN_INSTRUCTIONS} characters"
            )));
        }
        checked.push(Slot {
            value: None,
            oauth: None,
            ..slot.clone()
        });
    }
    Ok(checked)
}

fn changes(
    entries: &[Value],
    existing: &[Service],
    rules: Rules<'_>,
) -> Result<Vec<ServiceChange>, Refused> {
    let mut changes: Vec<ServiceChange> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let change = change(entry, existing, rules).map_err(|refused| match refused {
            Refused::Invalid(message) => invalid(format!("services[{index}]: {message}")),
            other => other,
        })?;
        if changes.iter().any(|other| other.name == change.name) {
            return Err(invalid(format!(
                "services[{index}]: duplicate name {}",
                change.name
            )));
        }
        changes.push(change);
    }
    Ok(changes)
}

fn change(entry: &Value, existing: &[Service], rules: Rules<'_>) -> Result<ServiceChange, Refused> {
    let Some(object) = entry.as_object() else {
        return Err(invalid("must be an object"));
    };
    let mut fields: Map<String, Value> = object.clone();
    let action: Action = match fields.remove("action") {
        None => Action::Set,
        Some(value) => serde_json::from_value(value)
            .map_err(|_| invalid("action must be \"set\" or \"delete\""))?,
    };
    let mut spec: ServiceSpec = serde_json::from_value(Value::Object(fields.clone()))
        .map_err(|error| invalid(error.to_string()))?;
    let name = match spec.name.clone() {
        Some(name) => name,
        None => resolve_name(&spec, existing, action)?,
    };
    spec.name = Some(name.clone());
    let mut entry = fields;
    entry.insert("action".into(), json!(action));
    entry.insert("name".into(), json!(name));
    let entry = Value::Object(entry);
    match action {
        Action::Delete => Ok(ServiceChange {
            action,
            name,
            service: None,
            enabled: None,
            entry,
        }),
        Action::Set if spec.auth.is_none() => {
            if spec.substitutions.is_some() {
                return Err(invalid("substitutions need auth in the same entry"));
            }
            let Some(enabled) = spec.enabled else {
                return Err(invalid(
                    "a set needs auth, or enabled alone to switch an existing service",
                ));
            };
            if !existing.iter().any(|service| service.name == name) {
                return Err(invalid(format!(
                    "no service named {name} to switch; give its auth to add it"
                )));
            }
            Ok(ServiceChange {
                action,
                name,
                service: None,
                enabled: Some(enabled),
                entry,
            })
        }
        Action::Set => {
            let mut service = services::validate(std::slice::from_ref(&spec), rules)
                .map_err(|message| invalid(message.trim_start_matches("service 0: ").to_owned()))?;
            Ok(ServiceChange {
                action,
                name,
                service: service.pop(),
                enabled: None,
                entry,
            })
        }
    }
}

/// The name of the one existing service on the entry's host (its inline form).
fn resolve_name(
    spec: &ServiceSpec,
    existing: &[Service],
    action: Action,
) -> Result<String, Refused> {
    let Some(host) = spec.host.as_deref().map(|h| h.trim().to_ascii_lowercase()) else {
        return Err(invalid("name is required"));
    };
    let matches: Vec<&Service> = existing
        .iter()
        .filter(|service| service.inline_host() == host || service.host == host)
        .collect();
    match (matches.as_slice(), action) {
        ([service], _) => Ok(service.name.clone()),
        ([], Action::Set) => Err(invalid("name is required")),
        ([], Action::Delete) => Err(Refused::NotFound(format!("No service matches host {host}"))),
        (many, _) => Err(Refused::Ambiguous {
            message: format!("Several services match host {host}; name the one you mean"),
            candidates: many
                .iter()
                .map(|service| (service.name.clone(), service.inline_host()))
                .collect(),
        }),
    }
}

fn check_references(
    services: &[ServiceChange],
    slots: &[Slot],
    existing_keys: &[String],
) -> Result<(), Refused> {
    let set_slots: Vec<&str> = slots
        .iter()
        .filter(|slot| slot.action == Action::Set)
        .map(|slot| slot.key.as_str())
        .collect();
    let mut referenced: Vec<String> = Vec::new();
    for change in services {
        let Some(service) = &change.service else {
            continue;
        };
        for key in service.credential_keys() {
            if !set_slots.contains(&key.as_str()) && !existing_keys.contains(&key) {
                return Err(invalid(format!(
                    "credential {key} referenced in service {} is not provided in this \
                     proposal and does not exist in the vault",
                    service.name
                )));
            }
            referenced.push(key);
        }
    }
    if !services.is_empty()
        && let Some(unused) = set_slots
            .iter()
            .find(|key| !referenced.iter().any(|r| r == *key))
    {
        return Err(invalid(format!(
            "credential slot {unused} is not referenced by any service auth config"
        )));
    }
    Ok(())
}

/// The vault's services once `changes` are applied: a `set` with auth replaces the service of
/// that name or adds it; a `set` of `enabled` switches it; a `delete` removes it if it is
/// still there. Fails if a service to switch has gone since the proposal was made.
pub fn merge(
    mut services: Vec<Service>,
    changes: &[ServiceChange],
) -> Result<Vec<Service>, String> {
    for change in changes {
        let position = services.iter().position(|s| s.name == change.name);
        match (change.action, &change.service, change.enabled, position) {
            (Action::Set, Some(service), _, Some(index)) => {
                // A proposal that replaces a service's auth without a word on its
                // substitutions keeps them (the agent may not know they exist).
                let mut service = service.clone();
                if change.entry.get("substitutions").is_none() {
                    service.substitutions = std::mem::take(&mut services[index].substitutions);
                }
                services[index] = service;
            }
            (Action::Set, Some(service), _, None) => services.push(service.clone()),
            (Action::Set, None, Some(enabled), Some(index)) => services[index].enabled = enabled,
            (Action::Set, None, _, None) => {
                return Err(format!(
                    "service {} no longer exists; reject the proposal",
                    change.name
                ));
            }
            (Action::Set, None, None, Some(_)) => {}
            (Action::Delete, _, _, Some(index)) => {
                services.remove(index);
            }
            (Action::Delete, _, _, None) => {}
        }
    }
    Ok(services)
}

/// A change in plain words, for the people who approve it.
pub fn describe(change: &ServiceChange) -> String {
    match (change.action, &change.service, change.enabled) {
        (Action::Delete, _, _) => format!("Remove the service {}", change.name),
        (Action::Set, None, Some(true)) => format!("Switch on the service {}", change.name),
        (Action::Set, None, _) => format!("Switch off the service {}", change.name),
        (Action::Set, Some(service), _) => {
            let json = service.to_json();
            let auth = &json["auth"];
            let kind = auth["type"].as_str().unwrap_or("?");
            let how = match auth["plugin"].as_str() {
                Some(plugin) => format!("the {plugin} plugin"),
                None => format!("{kind} auth"),
            };
            let keys = service.credential_keys();
            let with = if keys.is_empty() {
                String::new()
            } else {
                format!(" with {}", keys.join(", "))
            };
            let allowed = if service.allow.is_empty() {
                "every method and path".to_owned()
            } else {
                service
                    .allow
                    .iter()
                    .map(|rule| {
                        let methods = if rule.methods.is_empty() {
                            "any method".to_owned()
                        } else {
                            rule.methods.join(", ")
                        };
                        let paths = if rule.paths.is_empty() {
                            "any path".to_owned()
                        } else {
                            rule.paths.join(", ")
                        };
                        format!("{methods} on {paths}")
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let state = if service.enabled {
                ""
            } else {
                " (switched off)"
            };
            let placeholders: String = service
                .substitutions
                .iter()
                .map(|substitution| {
                    let surfaces: Vec<&str> =
                        substitution.surfaces.iter().map(|s| s.as_str()).collect();
                    format!(
                        "; puts {} where the request has {} (in {})",
                        substitution.key,
                        substitution.placeholder,
                        surfaces.join(", ")
                    )
                })
                .collect();
            // What a reviewer should not miss: where else the credential may go.
            let ports = if service.port.is_none() {
                " (any port)"
            } else {
                ""
            };
            let plaintext = if service.allow_plaintext {
                "; also sends the credential over plain HTTP (allow_plaintext)"
            } else {
                ""
            };
            let echo = if service.responses.redact_echo {
                ""
            } else {
                "; does not search answers for echoed credentials"
            };
            format!(
                "Service {} for https://{}{ports}: {how}{with}; allows {allowed}{placeholders}\
                 {plaintext}{echo}{state}",
                service.name,
                service.inline_host()
            )
        }
    }
}

pub mod wording;

#[cfg(test)]
mod tests;
