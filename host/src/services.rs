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

/// Agent Vault's auth types, then ours.
pub const AUTH_TYPES: [&str; 6] = [
    "bearer",
    "basic",
    "api-key",
    "custom",
    "passthrough",
    "plugin",
];

/// Host names a service may not target unless the server runs in development mode.
const INTERNAL_HOSTS: [&str; 8] = [
    "localhost",
    "localhost.localdomain",
    "internal",
    "kubernetes",
    "kubernetes.default",
    "metadata.google.internal",
    "metadata.google",
    "instance-data",
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
                    .flat_map(|(_, template)| template_keys(template))
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

/// Validate what a client sent. `existing` are the vault's current services (for upserts,
/// a spec without a name may not add a new service). The error is one line naming the
/// service by index and the field.
pub fn validate(specs: &[ServiceSpec], rules: Rules<'_>) -> Result<Vec<Service>, String> {
    let mut services: Vec<Service> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let service =
            validate_one(spec, rules).map_err(|message| format!("service {index}: {message}"))?;
        if let Some(other) = services.iter().position(|s| s.name == service.name) {
            return Err(format!(
                "service {index}: duplicate name \"{}\" (also at service {other})",
                service.name
            ));
        }
        services.push(service);
    }
    Ok(services)
}

fn validate_one(spec: &ServiceSpec, rules: Rules<'_>) -> Result<Service, String> {
    if spec.description.is_some() {
        return Err("description is no longer supported; remove it".into());
    }
    let inline = spec.host.as_deref().map(str::trim).unwrap_or_default();
    if inline.is_empty() {
        return Err("host is required".into());
    }
    let (host, inline_port, inline_path) = split_inline_host(inline)?;
    let port = match (inline_port, spec.port) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!("port {b} conflicts with the port {a} in host"));
        }
        (a, b) => a.or(b),
    };
    if port == Some(0) {
        return Err("port must be 1 to 65535".into());
    }
    let path = match (inline_path, spec.path.as_deref()) {
        (Some(_), Some(_)) => return Err("give the path in host or in path, not both".into()),
        (Some(path), None) | (None, Some(path)) => path.to_owned(),
        (None, None) => String::new(),
    };
    let host = check_host(host, rules.dev_mode)?;
    if !path.is_empty() {
        check_path_glob(&path).map_err(|message| format!("path {message}"))?;
    }
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => return Err("name is required".into()),
    };
    check_name(&name)?;
    let auth_value = spec.auth.as_ref().ok_or(
        "auth: type is required (supported: bearer, basic, api-key, custom, passthrough, plugin)",
    )?;
    let auth = parse_auth(auth_value)?;
    let allow = spec.allow.clone().unwrap_or_default();
    for (index, rule) in allow.iter().enumerate() {
        check_allow_rule(rule).map_err(|message| format!("allow {index}: {message}"))?;
    }
    let substitutions = match &spec.substitutions {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => parse_substitutions(value)?,
    };
    let compressed = match spec.compressed_responses.as_deref() {
        None | Some("refuse") => CompressedResponses::Refuse,
        Some("pass") => CompressedResponses::Pass,
        Some(other) => {
            return Err(format!(
                "compressed_responses {other:?} must be \"refuse\" or \"pass\""
            ));
        }
    };
    let service = Service {
        name,
        host,
        port,
        path,
        enabled: spec.enabled.unwrap_or(true),
        auth,
        allow,
        substitutions,
        responses: ResponsePolicy {
            redact_echo: spec.redact_echo.unwrap_or(true),
            compressed,
        },
        allow_plaintext: spec.allow_plaintext.unwrap_or(false),
    };
    if let Some(registry) = rules.plugins {
        check_plugin(&service, registry)?;
    }
    Ok(service)
}

/// `host[:port][/path]` into its parts, the host as written.
fn split_inline_host(inline: &str) -> Result<(&str, Option<u16>, Option<&str>), String> {
    // A scheme comes before the path; the path may hold `://` (`/go/https://...`), and the
    // stored inline form of a service with such a path must read back.
    if let Some(slash) = inline.find('/')
        && inline[..slash].ends_with(':')
        && inline[slash..].starts_with("//")
    {
        return Err(format!("host {inline:?} must not include a scheme"));
    }
    let (authority, path) = match inline.find('/') {
        Some(index) => (&inline[..index], Some(&inline[index..])),
        None => (inline, None),
    };
    let (host, port) = split_authority(authority)
        .map_err(|_| format!("host {authority:?} is not a valid host name"))?;
    let port = port
        .map(|port| {
            authority::parse_port(port)
                .map_err(|_| format!("port {port:?} in host must be 1 to 65535"))
        })
        .transpose()?;
    Ok((host, port, path))
}

/// The host a service may name, in the form requests are matched in
/// (`authority::canonical_host`): a public host name, or `*.` and a domain (which covers one
/// more label); IP addresses and internal names in development mode only.
fn check_host(host: &str, dev_mode: bool) -> Result<String, String> {
    if host.chars().any(|c| c.is_control() || " @?#".contains(c)) {
        return Err(format!(
            "host {host:?} must not contain spaces, @, ?, # or control characters"
        ));
    }
    let invalid = || format!("host {host:?} is not a valid host name");
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, host),
    };
    let name = authority::canonical_host(name).map_err(|_| invalid())?;
    let is_ip = name.parse::<std::net::IpAddr>().is_ok();
    if !wildcard && (is_ip || INTERNAL_HOSTS.contains(&name.as_str())) {
        if dev_mode {
            return Ok(name);
        }
        return Err(format!(
            "host {host:?} is an IP address or internal name; only public host names are allowed (development mode allows them)"
        ));
    }
    if wildcard && !name.contains('.') {
        return Err(format!(
            "wildcard {host:?} must cover a domain with a dot, like *.example.com"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let valid_label = |label: &str| !label.starts_with('-') && !label.ends_with('-');
    let tld = labels.last().copied().unwrap_or_default();
    let valid = labels.len() >= 2
        && labels.iter().all(|label| valid_label(label))
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic());
    if !valid {
        return Err(invalid());
    }
    Ok(if wildcard { format!("*.{name}") } else { name })
}

/// A path glob: starts with `/`, at most 256 characters, `*` the only wildcard.
pub fn check_path_glob(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if path.len() > 256 {
        return Err(format!("{path:?} is longer than 256 characters"));
    }
    if path.contains("**") {
        return Err(format!(
            "{path:?} must not contain ** (a single * already crosses /)"
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "?#[]\\|<>\"".contains(*c))
    {
        return Err(format!("{path:?} must not contain {bad:?}"));
    }
    Ok(())
}

/// A slug name (services, vaults, agents): 3 to 64 lower-case letters, digits and single
/// hyphens, not at either end.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.len() < 3 {
        return Err(format!("name \"{name}\" must be at least 3 characters"));
    }
    if name.len() > 64 {
        return Err(format!("name \"{name}\" must be at most 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "name \"{name}\" must be lower-case letters, digits and hyphens"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "name \"{name}\" must not start or end with a hyphen"
        ));
    }
    if name.contains("--") {
        return Err(format!(
            "name \"{name}\" must not contain consecutive hyphens"
        ));
    }
    Ok(())
}

fn check_allow_rule(rule: &AllowRule) -> Result<(), String> {
    if rule.methods.is_empty() && rule.paths.is_empty() {
        return Err("a rule needs methods, paths or both".into());
    }
    for method in &rule.methods {
        let valid =
            method == "*" || (!method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()));
        if !valid {
            return Err(format!(
                "method {method:?} must be an upper-case HTTP method or *"
            ));
        }
    }
    for path in &rule.paths {
        check_path_glob(path).map_err(|message| format!("path {message}"))?;
    }
    Ok(())
}

/// A credential key: `^[A-Z][A-Z0-9_]*$`.
pub fn check_credential_key(key: &str) -> Result<(), String> {
    let valid = key.starts_with(|c: char| c.is_ascii_uppercase())
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{key:?} must be UPPER_SNAKE_CASE (e.g. STRIPE_KEY)"
        ))
    }
}

fn parse_auth(value: &Value) -> Result<Auth, String> {
    let supported = "supported: bearer, basic, api-key, custom, passthrough, plugin";
    let object = value
        .as_object()
        .ok_or_else(|| format!("auth: must be an object with a type ({supported})"))?;
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => return Err(format!("auth: type is required ({supported})")),
    };
    let allowed: &[&str] = match kind {
        "bearer" => &["token"],
        "basic" => &["username", "password"],
        "api-key" => &["key", "header", "prefix"],
        "custom" => &["headers"],
        "passthrough" => &[],
        "plugin" => &["plugin", "sha256", "config", "credentials"],
        other => return Err(format!("auth: unsupported type {other:?} ({supported})")),
    };
    for field in object.keys().filter(|field| *field != "type") {
        if !allowed.contains(&field.as_str()) {
            return Err(if allowed.is_empty() {
                format!(
                    "auth: unexpected field {field:?} for {kind} auth (no credential fields are permitted)"
                )
            } else {
                format!(
                    "auth: unexpected field {field:?} for {kind} auth (only {})",
                    allowed.join(", ")
                )
            });
        }
    }
    let string = |field: &str| -> Result<Option<String>, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(format!("auth: {field} must be a string")),
        }
    };
    let key = |field: &str| -> Result<String, String> {
        let key =
            string(field)?.ok_or_else(|| format!("auth: {field:?} is required for {kind} auth"))?;
        check_credential_key(&key).map_err(|message| format!("auth: {field} {message}"))?;
        Ok(key)
    };
    Ok(match kind {
        "bearer" => Auth::Bearer {
            token: key("token")?,
        },
        "basic" => Auth::Basic {
            username: key("username")?,
            password: match string("password")? {
                Some(_) => Some(key("password")?),
                None => None,
            },
        },
        "api-key" => Auth::ApiKey {
            key: key("key")?,
            header: string("header")?,
            prefix: string("prefix")?,
        },
        "custom" => {
            let headers = match object.get("headers") {
                Some(Value::Object(headers)) if !headers.is_empty() => headers,
                _ => return Err("auth: \"headers\" is required for custom auth (a map of header name to template)".into()),
            };
            let mut pairs = Vec::new();
            for (name, template) in headers {
                let template = template
                    .as_str()
                    .ok_or_else(|| format!("auth: header {name} must be a template string"))?;
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(format!(
                        "auth: header name {name:?} must be letters, digits and hyphens"
                    ));
                }
                for key in template_keys(template) {
                    check_credential_key(&key)
                        .map_err(|message| format!("auth: header {name}: {message}"))?;
                }
                pairs.push((name.clone(), template.to_owned()));
            }
            Auth::Custom { headers: pairs }
        }
        "passthrough" => Auth::Passthrough,
        _ => {
            let plugin = string("plugin")?.ok_or("auth: \"plugin\" is required for plugin auth")?;
            let pairs =
                |field: &str, values_are_keys: bool| -> Result<Vec<(String, String)>, String> {
                    match object.get(field) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Object(map)) => map
                        .iter()
                        .map(|(name, value)| {
                            let value = match value {
                                Value::String(text) => text.clone(),
                                Value::Number(number) => number.to_string(),
                                Value::Bool(flag) => flag.to_string(),
                                _ => {
                                    return Err(format!(
                                        "auth: {field}.{name} must be a string, number or boolean"
                                    ));
                                }
                            };
                            if values_are_keys {
                                check_credential_key(&value).map_err(|message| {
                                    format!("auth: credentials.{name} {message}")
                                })?;
                            }
                            Ok((name.clone(), value))
                        })
                        .collect(),
                    Some(_) => Err(format!("auth: {field} must be an object")),
                }
                };
            let sha256 = string("sha256")?;
            if let Some(sha) = &sha256
                && !(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err("auth: sha256 must be 64 hexadecimal characters".into());
            }
            Auth::Plugin {
                plugin,
                sha256: sha256.map(|sha| sha.to_ascii_lowercase()),
                config: pairs("config", false)?,
                credentials: pairs("credentials", true)?,
            }
        }
    })
}

/// The `substitutions` list: `{key, placeholder, in}` entries, `in` defaulting to path and
/// query, placeholders unique within the service.
fn parse_substitutions(value: &Value) -> Result<Vec<Substitution>, String> {
    let Value::Array(entries) = value else {
        return Err("substitutions must be a list of {key, placeholder, in}".into());
    };
    let mut substitutions: Vec<Substitution> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let at = |message: String| format!("substitution {index}: {message}");
        let Value::Object(fields) = entry else {
            return Err(at("must be an object {key, placeholder, in}".into()));
        };
        if let Some(field) = fields
            .keys()
            .find(|field| !["key", "placeholder", "in"].contains(&field.as_str()))
        {
            return Err(at(format!(
                "unexpected field {field:?} (only key, placeholder, in)"
            )));
        }
        let key = match fields.get("key") {
            Some(Value::String(key)) => key.clone(),
            _ => return Err(at("key is required (a credential key)".into())),
        };
        check_credential_key(&key).map_err(|message| at(format!("key {message}")))?;
        let placeholder = match fields.get("placeholder") {
            Some(Value::String(placeholder)) => placeholder.clone(),
            _ => return Err(at("placeholder is required (e.g. \"__api_key__\")".into())),
        };
        check_placeholder(&placeholder).map_err(at)?;
        if let Some(other) = substitutions
            .iter()
            .position(|s| s.placeholder == placeholder)
        {
            return Err(at(format!(
                "placeholder {placeholder:?} is already used by substitution {other}"
            )));
        }
        let surfaces = match fields.get("in") {
            None | Some(Value::Null) => vec![Surface::Path, Surface::Query],
            Some(Value::Array(names)) => {
                if names.is_empty() {
                    return Err(at(
                        "in must name at least one of path, query, header, body, websocket".into(),
                    ));
                }
                let mut surfaces = Vec::with_capacity(names.len());
                for name in names {
                    let surface = name
                        .as_str()
                        .and_then(|name| Surface::ALL.into_iter().find(|s| s.as_str() == name))
                        .ok_or_else(|| {
                            at(format!(
                                "invalid substitution surface {name} (supported: path, query, header, body, websocket)"
                            ))
                        })?;
                    if surfaces.contains(&surface) {
                        return Err(at(format!(
                            "surface \"{}\" is listed twice",
                            surface.as_str()
                        )));
                    }
                    surfaces.push(surface);
                }
                surfaces
            }
            Some(_) => return Err(at("in must be a list of surfaces".into())),
        };
        substitutions.push(Substitution {
            key,
            placeholder,
            surfaces,
        });
    }
    Ok(substitutions)
}

/// A placeholder: at least 4 characters of `A-Za-z0-9_.~-`, with `__` or one of `.~-` (so it
/// does not look like an ordinary word), and at least one letter or digit. Matched literally
/// and case-sensitively.
pub fn check_placeholder(placeholder: &str) -> Result<(), String> {
    let hint = "use something like \"__api_key__\"";
    if placeholder.len() < 4 {
        return Err(format!(
            "placeholder {placeholder:?} must be at least 4 characters; {hint}"
        ));
    }
    if placeholder.len() > 128 {
        return Err(format!(
            "placeholder {placeholder:?} must be at most 128 characters"
        ));
    }
    if let Some(bad) = placeholder
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.~-".contains(*c)))
    {
        return Err(format!(
            "placeholder {placeholder:?} must only contain letters, digits, _ . ~ and - (not {bad:?}); {hint}"
        ));
    }
    let marked = placeholder.contains("__") || placeholder.contains(['.', '~', '-']);
    if !marked {
        return Err(format!(
            "placeholder {placeholder:?} could be an ordinary word; mark it with __ or . ~ -, e.g. \"__{placeholder}__\""
        ));
    }
    if !placeholder.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "placeholder {placeholder:?} needs a letter or digit; {hint}"
        ));
    }
    Ok(())
}

/// The `{{ KEY }}` references of a custom-header template, in order.
fn template_keys(template: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        keys.push(after[..end].trim().to_owned());
        rest = &after[end + 2..];
    }
    keys
}

/// The plugin exists (and matches its pin), accepts the configuration, and every slot it
/// needs is bound (and no other).
fn check_plugin(service: &Service, registry: &Registry) -> Result<(), String> {
    let binding = service.binding();
    let plugin = registry
        .get_pinned(&binding.plugin, binding.sha256.as_deref())
        .map_err(|error| format!("auth: {error}"))?;
    let requirements = plugin
        .validate_config(&binding.config)
        .map_err(|error| format!("auth: {error}"))?;
    check_bindings(
        &binding.plugin,
        &requirements,
        binding.credentials.iter().map(|(slot, _)| slot.as_str()),
    )
    .map_err(|error| format!("auth: {error}"))
}

/// Services as a vault stores them (the validated JSON form).
pub fn to_document(services: &[Service]) -> String {
    Value::Array(services.iter().map(Service::to_json).collect()).to_string()
}

/// Services from a vault's stored document. Stored services were validated when written;
/// plugins are not re-checked here (a plugin may have changed since, which requests find).
pub fn from_document(json: &str) -> Result<Vec<Service>, String> {
    let specs: Vec<ServiceSpec> = serde_json::from_str(json)
        .map_err(|error| format!("stored services are unreadable: {error}"))?;
    validate(
        &specs,
        Rules {
            dev_mode: true,
            plugins: None,
        },
    )
}

#[cfg(test)]
mod tests;
