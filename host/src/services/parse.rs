//! Reading a service's `auth` object (every auth type Agent Vault has, and `plugin`) and its
//! `substitutions` (placeholders, the surfaces they are replaced on), with messages that name
//! the field.

use super::*;

pub(super) fn parse_auth(value: &Value) -> Result<Auth, String> {
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
pub(super) fn parse_substitutions(value: &Value) -> Result<Vec<Substitution>, String> {
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
pub(super) fn template_keys(template: &str) -> Vec<String> {
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
