//! Checking what a client sent: each service's name, host (`host[:port][/path]`, refused
//! for agent-vault's own and the cloud metadata hosts), path glob, allow rules, credential
//! keys and plugin, with one message naming the service by index and the field; and the
//! stored JSON document of a vault's services.

use super::parse::{parse_auth, parse_substitutions};
use super::*;

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
