//! Services: which upstream host (and port and path) a vault's credentials are for, how the
//! credential is attached (a plugin and its binding), and which requests are allowed.
//!
//! The JSON shape is Agent Vault's (`name`, `host` in the inline `host[:port][/path]` form,
//! `enabled`, `auth` with `type` `bearer` | `basic` | `api-key` | `custom` | `passthrough`),
//! plus `auth.type = "plugin"` for any plugin and `allow` rules of methods and path globs.
//! [`validate`] turns what a client sent into [`Service`]s or one message naming the field;
//! every auth type resolves to a plugin binding ([`Service::binding`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::authority::{self, split_authority};
use crate::plugin::PluginConfig;
use crate::plugin::config::check_bindings;
use crate::plugin::registry::Registry;

mod parse;
mod validate;

pub use parse::check_placeholder;
pub use validate::{
    check_credential_key, check_name, check_path_glob, from_document, to_document, validate,
};

/// Agent Vault's auth types, then ours.
pub const AUTH_TYPES: [&str; 6] = [
    "bearer",
    "basic",
    "api-key",
    "custom",
    "passthrough",
    "plugin",
];

/// A service as a client writes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// YAML form: the port apart from the host.
    #[serde(default)]
    pub port: Option<u16>,
    /// YAML form: the path glob apart from the host.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub auth: Option<Value>,
    #[serde(default)]
    pub allow: Option<Vec<AllowRule>>,
    #[serde(default)]
    pub description: Option<Value>,
    #[serde(default)]
    pub substitutions: Option<Value>,
    #[serde(default)]
    pub redact_echo: Option<bool>,
    #[serde(default)]
    pub compressed_responses: Option<String>,
    #[serde(default)]
    pub allow_plaintext: Option<bool>,
}

/// Requests a service lets through: any of `methods` (or `*`) on any of `paths` (globs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
}

/// A validated service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    /// Lower-case host name, or `*.` and a domain.
    pub host: String,
    pub port: Option<u16>,
    /// Empty: any path. `*` is a glob that crosses `/`.
    pub path: String,
    pub enabled: bool,
    pub auth: Auth,
    pub allow: Vec<AllowRule>,
    /// Placeholders the agent writes where a credential goes.
    pub substitutions: Vec<Substitution>,
    /// What the proxy does to the upstream's answers.
    pub responses: ResponsePolicy,
    /// Whether the credential may go out over plain HTTP (a lab upstream without TLS); off,
    /// a plain-http request to the service is refused with `plaintext_refused`.
    pub allow_plaintext: bool,
}

pub use crate::request::Surface;

/// A placeholder in the agent's request that the proxy replaces with a credential value on
/// the way out, on the surfaces listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    pub key: String,
    pub placeholder: String,
    pub surfaces: Vec<Surface>,
}

/// How the proxy treats a service's responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePolicy {
    /// Replace any credential value bound to the service (and its base64, percent-encoded
    /// and JSON-escaped forms) in response headers and bodies.
    pub redact_echo: bool,
    /// What happens to a compressed response body, which redaction cannot read.
    pub compressed: CompressedResponses,
}

impl Default for ResponsePolicy {
    fn default() -> Self {
        ResponsePolicy {
            redact_echo: true,
            compressed: CompressedResponses::Refuse,
        }
    }
}

/// A compressed response body of a service that redacts echoes: refused with 502
/// (`compressed_response`), or passed on unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressedResponses {
    Refuse,
    Pass,
}

/// How a service attaches its credential.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: Option<String>,
    },
    ApiKey {
        key: String,
        header: Option<String>,
        prefix: Option<String>,
    },
    Custom {
        headers: Vec<(String, String)>,
    },
    Passthrough,
    Plugin {
        plugin: String,
        sha256: Option<String>,
        config: Vec<(String, String)>,
        credentials: Vec<(String, String)>,
    },
}

/// A service's plugin, its configuration, and which vault credential fills each slot.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginBinding {
    pub plugin: String,
    pub sha256: Option<String>,
    pub config: PluginConfig,
    /// (slot, credential key).
    pub credentials: Vec<(String, String)>,
}

/// What validation may look at besides the services.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Allow `localhost`, IP addresses and other internal names as hosts.
    pub dev_mode: bool,
    /// Check plugins, their configuration and slots; `None` skips those checks.
    pub plugins: Option<&'a Registry>,
}

impl Service {
    /// The inline form: `host[:port][/path]`.
    pub fn inline_host(&self) -> String {
        let mut inline = authority::display_host(&self.host);
        if let Some(port) = self.port {
            inline.push_str(&format!(":{port}"));
        }
        inline.push_str(&self.path);
        inline
    }

    /// The plugin that attaches this service's credential, and its binding.
    pub fn binding(&self) -> PluginBinding {
        let config = |pairs: Vec<(&str, &str)>| {
            PluginConfig::from_pairs(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())))
                .expect("validated services have no duplicate config keys")
        };
        let binding =
            |plugin: &str, config: PluginConfig, credentials: Vec<(&str, &str)>| PluginBinding {
                plugin: plugin.to_owned(),
                sha256: None,
                config,
                credentials: credentials
                    .into_iter()
                    .map(|(slot, key)| (slot.to_owned(), key.to_owned()))
                    .collect(),
            };
        match &self.auth {
            Auth::Bearer { token } => binding("bearer", config(vec![]), vec![("token", token)]),
            Auth::Basic { username, password } => {
                let mut credentials = vec![("username", username.as_str())];
                if let Some(password) = password {
                    credentials.push(("password", password));
                }
                binding("basic", config(vec![]), credentials)
            }
            Auth::ApiKey {
                key,
                header,
                prefix,
            } => {
                let mut pairs = Vec::new();
                if let Some(header) = header {
                    pairs.push(("header", header.as_str()));
                }
                if let Some(prefix) = prefix {
                    pairs.push(("prefix", prefix.as_str()));
                }
                binding("api-key", config(pairs), vec![("key", key)])
            }
            Auth::Custom { headers } => {
                let names: Vec<String> = headers
                    .iter()
                    .map(|(name, _)| format!("header.{name}"))
                    .collect();
                let pairs = names
                    .iter()
                    .zip(headers)
                    .map(|(name, (_, template))| (name.as_str(), template.as_str()))
                    .collect();
                let keys: Vec<String> = headers
                    .iter()
                    .flat_map(|(_, template)| parse::template_keys(template))
                    .collect();
                let mut unique: Vec<&str> = Vec::new();
                for key in &keys {
                    if !unique.contains(&key.as_str()) {
                        unique.push(key);
                    }
                }
                binding(
                    "custom-headers",
                    config(pairs),
                    unique.iter().map(|key| (*key, *key)).collect(),
                )
            }
            Auth::Passthrough => binding("passthrough", config(vec![]), vec![]),
            Auth::Plugin {
                plugin,
                sha256,
                config: pairs,
                credentials,
            } => PluginBinding {
                plugin: plugin.clone(),
                sha256: sha256.clone(),
                config: config(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                ),
                credentials: credentials.clone(),
            },
        }
    }

    /// The credential keys this service uses.
    pub fn credential_keys(&self) -> Vec<String> {
        self.credential_keys_with(&self.binding())
    }

    /// [`Service::credential_keys`], for a caller that already holds the binding: its keys,
    /// then the substitutions' keys it lacks.
    pub fn credential_keys_with(&self, binding: &PluginBinding) -> Vec<String> {
        let mut keys: Vec<String> = binding
            .credentials
            .iter()
            .map(|(_, key)| key.clone())
            .collect();
        for substitution in &self.substitutions {
            if !keys.contains(&substitution.key) {
                keys.push(substitution.key.clone());
            }
        }
        keys
    }

    /// Whether any placeholder is looked for on `surface`.
    pub fn substitutes_on(&self, surface: Surface) -> bool {
        self.substitutions
            .iter()
            .any(|substitution| substitution.surfaces.contains(&surface))
    }

    /// The JSON form a client reads back.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("name".into(), Value::String(self.name.clone()));
        object.insert("host".into(), Value::String(self.inline_host()));
        object.insert("enabled".into(), Value::Bool(self.enabled));
        object.insert("auth".into(), self.auth.to_json());
        if !self.allow.is_empty() {
            object.insert(
                "allow".into(),
                serde_json::to_value(&self.allow).expect("plain data"),
            );
        }
        if !self.substitutions.is_empty() {
            let list = self
                .substitutions
                .iter()
                .map(|substitution| {
                    serde_json::json!({
                        "key": substitution.key,
                        "placeholder": substitution.placeholder,
                        "in": substitution.surfaces.iter().map(|surface| surface.as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            object.insert("substitutions".into(), Value::Array(list));
        }
        let defaults = ResponsePolicy::default();
        if self.responses.redact_echo != defaults.redact_echo {
            object.insert(
                "redact_echo".into(),
                Value::Bool(self.responses.redact_echo),
            );
        }
        if self.responses.compressed != defaults.compressed {
            let text = match self.responses.compressed {
                CompressedResponses::Refuse => "refuse",
                CompressedResponses::Pass => "pass",
            };
            object.insert("compressed_responses".into(), Value::String(text.into()));
        }
        if self.allow_plaintext {
            object.insert("allow_plaintext".into(), Value::Bool(true));
        }
        Value::Object(object)
    }
}

impl Auth {
    fn to_json(&self) -> Value {
        let mut object = Map::new();
        let mut put = |key: &str, value: Value| {
            object.insert(key.to_owned(), value);
        };
        let text = |text: &str| Value::String(text.to_owned());
        match self {
            Auth::Bearer { token } => {
                put("type", text("bearer"));
                put("token", text(token));
            }
            Auth::Basic { username, password } => {
                put("type", text("basic"));
                put("username", text(username));
                if let Some(password) = password {
                    put("password", text(password));
                }
            }
            Auth::ApiKey {
                key,
                header,
                prefix,
            } => {
                put("type", text("api-key"));
                put("key", text(key));
                if let Some(header) = header {
                    put("header", text(header));
                }
                if let Some(prefix) = prefix {
                    put("prefix", text(prefix));
                }
            }
            Auth::Custom { headers } => {
                put("type", text("custom"));
                let map: Map<String, Value> = headers
                    .iter()
                    .map(|(name, template)| (name.clone(), text(template)))
                    .collect();
                put("headers", Value::Object(map));
            }
            Auth::Passthrough => put("type", text("passthrough")),
            Auth::Plugin {
                plugin,
                sha256,
                config,
                credentials,
            } => {
                put("type", text("plugin"));
                put("plugin", text(plugin));
                if let Some(sha256) = sha256 {
                    put("sha256", text(sha256));
                }
                let pairs = |pairs: &[(String, String)]| {
                    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                };
                put("config", pairs(config));
                put("credentials", pairs(credentials));
            }
        }
        Value::Object(object)
    }
}

#[cfg(test)]
mod tests;
