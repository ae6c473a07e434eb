//! A vault's services (`/vaults/{name}/services`): the list (host, how the credential is
//! attached, allow rules, badges), one form to add or edit a service of any auth type the
//! API accepts (bearer, basic, api-key, custom headers, passthrough, any loaded plugin),
//! and switching one off or removing it.
//!
//! The form is plain HTML that works with JavaScript off: every auth type's fields are on
//! the page, and only the chosen type's are sent. Lists (allow rules, placeholders, custom
//! headers, a plugin's configuration and credential slots) are textareas with one entry a
//! line, read by [`ServiceForm::to_spec`]; [`ServiceForm::from_service`] writes a stored
//! service back in the same form, so an edit round-trips. Writes go to the API
//! (`POST /v1/vaults/{name}/services`, an upsert by name), which validates the whole
//! service; its message is shown beside the form with everything typed kept.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::vault::VaultFrame;
use super::{Chrome, encode_component};
use crate::api::ApiError;
use crate::console::{Console, Fields};

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    Some(match (&console.request.method, segments) {
        (&Method::GET, ["vaults", name, "services"]) => list(console, name).await,
        (&Method::GET, ["vaults", name, "services", "new"]) => {
            let form = ServiceForm::default();
            editor(console, name, form, Editing::New, None).await
        }
        (&Method::GET, ["vaults", name, "services", service, "edit"]) => {
            edit(console, name, service).await
        }
        (&Method::POST, ["vaults", name, "services"]) => save(console, name).await,
        (&Method::POST, ["vaults", name, "services", service, "enabled"]) => {
            switch(console, name, service).await
        }
        (&Method::POST, ["vaults", name, "services", service, "delete"]) => {
            remove(console, name, service).await
        }
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Services {
    services: Vec<Value>,
}

/// The auth types the form offers, with what each does: the API's `auth.type`s.
const AUTH_TYPES: [(&str, &str); 6] = [
    ("bearer", "Bearer token (Authorization: Bearer …)"),
    ("basic", "Basic auth (user name and password)"),
    ("api-key", "API key in a header"),
    ("custom", "Custom headers from templates"),
    (
        "passthrough",
        "Passthrough (no credential; placeholders only)",
    ),
    ("plugin", "A plugin"),
];

/// A service on the list.
struct Row {
    name: String,
    segment: String,
    host: String,
    enabled: bool,
    /// How the credential is attached, in words: "bearer STRIPE_KEY", "plugin hmac".
    auth: String,
    /// Allow rules, one line each; empty: everything.
    allow: Vec<String>,
    badges: Vec<(&'static str, String)>,
}

impl Row {
    fn from_json(service: &Value) -> Row {
        let name = text(service, "name");
        let form = ServiceForm::from_service(service);
        let auth = match form.auth_type.as_str() {
            "bearer" => format!("bearer · {}", form.bearer_token),
            "basic" if form.basic_password.is_empty() => format!("basic · {}", form.basic_username),
            "basic" => format!("basic · {} / {}", form.basic_username, form.basic_password),
            "api-key" => format!("api-key · {}", form.api_key),
            "custom" => format!(
                "custom headers · {}",
                lines(&form.custom_headers).join(", ")
            ),
            "plugin" => format!("plugin · {}", form.plugin),
            other => other.to_owned(),
        };
        let mut badges = Vec::new();
        if !form.enabled {
            badges.push(("warn", "off".to_owned()));
        }
        if !form.substitutions.trim().is_empty() {
            badges.push(("info", "placeholders".to_owned()));
        }
        if !form.redact_echo {
            badges.push(("warn", "echoes not redacted".to_owned()));
        }
        if form.compressed_pass {
            badges.push(("info", "compressed answers pass".to_owned()));
        }
        if form.allow_plaintext {
            badges.push(("danger", "plain HTTP allowed".to_owned()));
        }
        Row {
            segment: encode_component(&name),
            name,
            host: text(service, "host"),
            enabled: form.enabled,
            auth,
            allow: lines(&form.allow),
            badges,
        }
    }
}

/// A string field of a JSON object, or empty.
fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_owned()
}

/// The non-empty lines of a textarea, trimmed.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(askama::Template)]
#[template(path = "console/services.html")]
struct ListPage {
    chrome: Chrome,
    vault: VaultFrame,
    rows: Vec<Row>,
    can_write: bool,
}

async fn list(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/services").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let services = match console
        .get::<Services>(&format!("/v1/vaults/{}/services", vault.segment))
        .await
    {
        Ok(services) => services.services,
        Err(error) => return console.refused(error),
    };
    console.page(&ListPage {
        chrome: console.chrome(format!("Services · {}", vault.name), "vaults"),
        can_write: can_write(&vault),
        rows: services.iter().map(Row::from_json).collect(),
        vault,
    })
}

/// Whether the person's role may change services (admins; an owner who has not joined is
/// left to the API): only hides buttons, the API checks every post.
fn can_write(vault: &VaultFrame) -> bool {
    matches!(vault.role.as_deref(), Some("admin") | None)
}

/// The service form's fields, as text: what the page shows and what a post carries.
#[derive(Debug, Clone)]
struct ServiceForm {
    name: String,
    host: String,
    enabled: bool,
    auth_type: String,
    bearer_token: String,
    basic_username: String,
    basic_password: String,
    api_key: String,
    api_key_header: String,
    api_key_prefix: String,
    /// `Name: template` a line.
    custom_headers: String,
    plugin: String,
    plugin_sha256: String,
    /// `key=value` a line.
    plugin_config: String,
    /// `slot=CREDENTIAL_KEY` a line.
    plugin_slots: String,
    /// `METHODS /paths…` a line: methods (comma or space separated, `*` any) and path globs.
    allow: String,
    /// `KEY placeholder [surfaces]` a line.
    substitutions: String,
    redact_echo: bool,
    compressed_pass: bool,
    allow_plaintext: bool,
}

impl Default for ServiceForm {
    fn default() -> Self {
        ServiceForm {
            name: String::new(),
            host: String::new(),
            enabled: true,
            auth_type: "bearer".to_owned(),
            bearer_token: String::new(),
            basic_username: String::new(),
            basic_password: String::new(),
            api_key: String::new(),
            api_key_header: String::new(),
            api_key_prefix: String::new(),
            custom_headers: String::new(),
            plugin: String::new(),
            plugin_sha256: String::new(),
            plugin_config: String::new(),
            plugin_slots: String::new(),
            allow: String::new(),
            substitutions: String::new(),
            redact_echo: true,
            compressed_pass: false,
            allow_plaintext: false,
        }
    }
}

/// `key=value` lines from a JSON object of strings.
fn pairs_to_lines(value: &Value, separator: &str) -> String {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(key, value)| {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    format!("{key}{separator}{value}")
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

impl ServiceForm {
    /// A stored service (the API's JSON) in the form's terms.
    fn from_service(service: &Value) -> ServiceForm {
        let auth = &service["auth"];
        let mut form = ServiceForm {
            name: text(service, "name"),
            host: text(service, "host"),
            enabled: service["enabled"].as_bool().unwrap_or(true),
            auth_type: text(auth, "type"),
            redact_echo: service["redact_echo"].as_bool().unwrap_or(true),
            compressed_pass: service["compressed_responses"] == "pass",
            allow_plaintext: service["allow_plaintext"].as_bool().unwrap_or(false),
            ..ServiceForm::default()
        };
        match form.auth_type.as_str() {
            "bearer" => form.bearer_token = text(auth, "token"),
            "basic" => {
                form.basic_username = text(auth, "username");
                form.basic_password = text(auth, "password");
            }
            "api-key" => {
                form.api_key = text(auth, "key");
                form.api_key_header = text(auth, "header");
                form.api_key_prefix = text(auth, "prefix");
            }
            "custom" => form.custom_headers = pairs_to_lines(&auth["headers"], ": "),
            "plugin" => {
                form.plugin = text(auth, "plugin");
                form.plugin_sha256 = text(auth, "sha256");
                form.plugin_config = pairs_to_lines(&auth["config"], "=");
                form.plugin_slots = pairs_to_lines(&auth["credentials"], "=");
            }
            _ => {}
        }
        if let Some(rules) = service["allow"].as_array() {
            let rules: Vec<String> = rules
                .iter()
                .map(|rule| {
                    let words = |field: &str| -> Vec<String> {
                        rule[field]
                            .as_array()
                            .map(|list| {
                                list.iter()
                                    .filter_map(|word| word.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    let methods = words("methods").join(",");
                    let paths = words("paths").join(" ");
                    [methods, paths]
                        .into_iter()
                        .filter(|part| !part.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            form.allow = rules.join("\n");
        }
        if let Some(substitutions) = service["substitutions"].as_array() {
            let entries: Vec<String> = substitutions
                .iter()
                .map(|entry| {
                    let surfaces: Vec<&str> = entry["in"]
                        .as_array()
                        .map(|list| list.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    format!(
                        "{} {} {}",
                        text(entry, "key"),
                        text(entry, "placeholder"),
                        surfaces.join(",")
                    )
                    .trim_end()
                    .to_owned()
                })
                .collect();
            form.substitutions = entries.join("\n");
        }
        form
    }

    /// What a posted form says.
    fn from_fields(fields: &Fields) -> ServiceForm {
        let get = |name: &str| {
            fields
                .get(name)
                .map(|value| value.trim().to_owned())
                .unwrap_or_default()
        };
        // Textareas as typed: a line's trailing space can be part of a value.
        let raw = |name: &str| {
            fields
                .get(name)
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default()
        };
        let checked = |name: &str| fields.contains_key(name);
        ServiceForm {
            name: get("name"),
            host: get("host"),
            enabled: checked("enabled"),
            auth_type: get("auth_type"),
            bearer_token: get("bearer_token"),
            basic_username: get("basic_username"),
            basic_password: get("basic_password"),
            api_key: get("api_key"),
            api_key_header: get("api_key_header"),
            // A prefix's trailing space is part of it (`Token `).
            api_key_prefix: fields
                .get("api_key_prefix")
                .map(|value| value.trim_start().to_owned())
                .unwrap_or_default(),
            custom_headers: raw("custom_headers"),
            plugin: get("plugin"),
            plugin_sha256: get("plugin_sha256"),
            plugin_config: raw("plugin_config"),
            plugin_slots: raw("plugin_slots"),
            allow: raw("allow"),
            substitutions: raw("substitutions"),
            redact_echo: checked("redact_echo"),
            compressed_pass: checked("compressed_pass"),
            allow_plaintext: checked("allow_plaintext"),
        }
    }

    /// The service as the API takes it, or what to fix in a list field. The API checks
    /// everything else (names, hosts, keys, the plugin and its slots).
    fn to_spec(&self) -> Result<Value, String> {
        let optional = |text: &str| -> Value {
            if text.is_empty() {
                Value::Null
            } else {
                Value::String(text.to_owned())
            }
        };
        let mut auth = Map::new();
        auth.insert("type".into(), Value::String(self.auth_type.clone()));
        match self.auth_type.as_str() {
            "bearer" => {
                auth.insert("token".into(), optional(&self.bearer_token));
            }
            "basic" => {
                auth.insert("username".into(), optional(&self.basic_username));
                auth.insert("password".into(), optional(&self.basic_password));
            }
            "api-key" => {
                auth.insert("key".into(), optional(&self.api_key));
                auth.insert("header".into(), optional(&self.api_key_header));
                auth.insert("prefix".into(), optional(&self.api_key_prefix));
            }
            "custom" => {
                let headers = pairs("Custom headers", &self.custom_headers, ':')?;
                auth.insert("headers".into(), Value::Object(headers));
            }
            "plugin" => {
                auth.insert("plugin".into(), optional(&self.plugin));
                auth.insert("sha256".into(), optional(&self.plugin_sha256));
                let config = pairs("Plugin configuration", &self.plugin_config, '=')?;
                auth.insert("config".into(), Value::Object(config));
                let slots = pairs("Credential slots", &self.plugin_slots, '=')?;
                auth.insert("credentials".into(), Value::Object(slots));
            }
            _ => {}
        }
        auth.retain(|_, value| !value.is_null());
        let mut allow = Vec::new();
        for line in lines(&self.allow) {
            let (mut methods, mut paths) = (Vec::new(), Vec::new());
            for word in line.split([' ', ',', '\t']).filter(|word| !word.is_empty()) {
                if word.starts_with('/') {
                    paths.push(word.to_owned());
                } else {
                    methods.push(word.to_ascii_uppercase());
                }
            }
            allow.push(json!({ "methods": methods, "paths": paths }));
        }
        let mut substitutions = Vec::new();
        for line in lines(&self.substitutions) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (key, placeholder, surfaces) = match words.as_slice() {
                [key, placeholder] => (*key, *placeholder, None),
                [key, placeholder, surfaces] => (*key, *placeholder, Some(*surfaces)),
                _ => {
                    return Err(format!(
                        "Placeholders: {line:?} should be KEY, the placeholder and optionally \
                         where (e.g. TELEGRAM_TOKEN __telegram_token__ path)"
                    ));
                }
            };
            let mut entry = json!({ "key": key, "placeholder": placeholder });
            if let Some(surfaces) = surfaces {
                let list: Vec<&str> = surfaces.split(',').filter(|s| !s.is_empty()).collect();
                entry["in"] = json!(list);
            }
            substitutions.push(entry);
        }
        let mut spec = json!({
            "name": self.name,
            "host": self.host,
            "enabled": self.enabled,
            "auth": auth,
            "redact_echo": self.redact_echo,
            "compressed_responses": if self.compressed_pass { "pass" } else { "refuse" },
            "allow_plaintext": self.allow_plaintext,
        });
        if !allow.is_empty() {
            spec["allow"] = Value::Array(allow);
        }
        if !substitutions.is_empty() {
            spec["substitutions"] = Value::Array(substitutions);
        }
        Ok(spec)
    }
}

/// `name<separator>value` lines as a JSON object of strings.
fn pairs(what: &str, text: &str, separator: char) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    // A value keeps its trailing spaces (a plugin's `signature-prefix=Token `); the name
    // and the space after the separator are trimmed.
    let entries = text
        .lines()
        .map(|line| line.trim_start().trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty());
    for line in entries {
        let Some((name, value)) = line.split_once(separator) else {
            return Err(format!(
                "{what}: {line:?} should be a name, {separator:?} and a value"
            ));
        };
        let name = name.trim().to_owned();
        if map.contains_key(&name) {
            return Err(format!("{what}: {name:?} is given twice"));
        }
        map.insert(name, Value::String(value.trim_start().to_owned()));
    }
    Ok(map)
}

/// A plugin the server has loaded, as `GET /v1/plugins` describes it.
#[derive(Deserialize)]
struct Plugin {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: Vec<Parameter>,
    #[serde(default)]
    slots: Vec<Parameter>,
}

#[derive(Deserialize)]
struct Parameter {
    name: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct Plugins {
    plugins: Vec<Plugin>,
}

/// Whether the form adds a service or edits one (whose name then stays).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Editing {
    New,
    Existing,
}

#[derive(askama::Template)]
#[template(path = "console/service_form.html")]
struct EditorPage {
    chrome: Chrome,
    vault: VaultFrame,
    form: ServiceForm,
    editing: bool,
    auth_types: &'static [(&'static str, &'static str)],
    /// The loaded plugins and what each takes; empty when the server does not describe
    /// them, and the plugin name is then typed.
    plugins: Vec<Plugin>,
    /// The service's plugin is not among `plugins` (say its file was removed): it is
    /// offered anyway, so that saving the form does not drop it.
    unlisted_plugin: bool,
    error: Option<String>,
}

async fn editor(
    console: &Console<'_>,
    name: &str,
    form: ServiceForm,
    editing: Editing,
    error: Option<String>,
) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/services").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let plugins = console
        .get::<Plugins>("/v1/plugins")
        .await
        .map(|list| list.plugins)
        .unwrap_or_default();
    let title = match editing {
        Editing::New => format!("New service · {}", vault.name),
        Editing::Existing => format!("{} · {}", form.name, vault.name),
    };
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let unlisted_plugin = !plugins.is_empty()
        && !form.plugin.is_empty()
        && !plugins.iter().any(|plugin| plugin.name == form.plugin);
    console.page_with_status(
        status,
        &EditorPage {
            chrome: console.chrome(title, "vaults"),
            unlisted_plugin,
            vault,
            form,
            editing: editing == Editing::Existing,
            auth_types: &AUTH_TYPES,
            plugins,
            error,
        },
    )
}

async fn edit(console: &Console<'_>, name: &str, service: &str) -> Response<Full<Bytes>> {
    let path = format!("/v1/vaults/{}/services", encode_component(name));
    let services = match console.get::<Services>(&path).await {
        Ok(services) => services.services,
        Err(error) => return console.refused(error),
    };
    match services.iter().find(|found| found["name"] == service) {
        Some(found) => {
            let form = ServiceForm::from_service(found);
            editor(console, name, form, Editing::Existing, None).await
        }
        None => console.problem(
            StatusCode::NOT_FOUND,
            &format!("Service not found: {service}"),
        ),
    }
}

fn services_path(name: &str) -> String {
    format!("/vaults/{}/services", encode_component(name))
}

/// `POST /vaults/{name}/services`: add or replace the service the form describes.
async fn save(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let form = ServiceForm::from_fields(&fields);
    let editing = match fields.get("editing") {
        Some(_) => Editing::Existing,
        None => Editing::New,
    };
    let spec = match form.to_spec() {
        Ok(spec) => spec,
        Err(message) => return editor(console, name, form, editing, Some(message)).await,
    };
    let path = format!("/v1/vaults/{}/services", encode_component(name));
    match console
        .send(Method::POST, &path, &json!({ "services": [spec] }))
        .await
    {
        Ok(_) => {
            let did = match editing {
                Editing::New => "added",
                Editing::Existing => "saved",
            };
            console.done(
                &services_path(name),
                &format!("Service {} {did}.", form.name),
            )
        }
        Err(error) => refused_form(console, name, form, editing, error).await,
    }
}

/// The API's refusal of a form: a 400 (the service does not validate) beside the form with
/// what was typed; anything else (not allowed, no vault) as the error page.
async fn refused_form(
    console: &Console<'_>,
    name: &str,
    form: ServiceForm,
    editing: Editing,
    error: ApiError,
) -> Response<Full<Bytes>> {
    if error.status == StatusCode::BAD_REQUEST {
        editor(console, name, form, editing, Some(error.message)).await
    } else {
        console.refused(error)
    }
}

/// `POST /vaults/{name}/services/{service}/enabled`: switch it on or off.
async fn switch(console: &Console<'_>, name: &str, service: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let enabled = fields.get("enabled").map(|v| v.as_str()) == Some("true");
    let path = format!(
        "/v1/vaults/{}/services/{}",
        encode_component(name),
        encode_component(service)
    );
    match console
        .send(Method::PATCH, &path, &json!({ "enabled": enabled }))
        .await
    {
        Ok(_) => {
            let now = if enabled { "on" } else { "off" };
            console.done(
                &services_path(name),
                &format!("Service {service} is {now}."),
            )
        }
        Err(error) => console.refused(error),
    }
}

/// `POST /vaults/{name}/services/{service}/delete`.
async fn remove(console: &Console<'_>, name: &str, service: &str) -> Response<Full<Bytes>> {
    if let Err(refused) = console.form() {
        return refused;
    }
    let path = format!(
        "/v1/vaults/{}/services/{}",
        encode_component(name),
        encode_component(service)
    );
    match console.send(Method::DELETE, &path, &json!({})).await {
        Ok(_) => console.done(&services_path(name), &format!("Service {service} removed.")),
        Err(error) => console.refused(error),
    }
}
