//! `custom-headers`: headers from templates that name credentials, e.g.
//! `header.Authorization = "Token token={{ ZENDESK_TOKEN }}"`. Each `{{ KEY }}` is a
//! credential slot (UPPER_SNAKE_CASE), bound by default to the credential of the same name.
#![no_std]

use agent_vault_plugin::CredentialSlot;
use agent_vault_plugin::prelude::*;

struct CustomHeaders;

const HEADER_PREFIX: &str = "header.";

impl Plugin for CustomHeaders {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "custom-headers",
            env!("CARGO_PKG_VERSION"),
            "Sets each `header.<Name>` to its template; `{{ KEY }}` inserts a credential.",
        )
        .config(
            "header.*",
            "a header and its template, e.g. header.X-Api-Key = \"{{ API_KEY }}\"",
            true,
        )
    }

    fn validate_config(config: &Config) -> Result<Requirements, String> {
        let mut slots: Vec<CredentialSlot> = Vec::new();
        for (name, template) in config.with_prefix(HEADER_PREFIX) {
            check_header_name(name)?;
            for atom in parse_template(template).map_err(|e| format!("header {name}: {e}"))? {
                if let Atom::Credential(key) = atom
                    && !slots.iter().any(|slot| slot.name == key)
                {
                    slots.push(CredentialSlot {
                        description: format!("used in header {name}"),
                        name: key,
                        required: true,
                    });
                }
            }
        }
        if config.with_prefix(HEADER_PREFIX).next().is_none() {
            return Err("at least one header.<Name> is required".into());
        }
        Ok(Requirements::credentials(slots))
    }

    fn authorize(_request: &Request, config: &Config) -> Result<Decision, AuthError> {
        let mut forward = Forward::new();
        for (name, template) in config.with_prefix(HEADER_PREFIX) {
            let atoms = parse_template(template).map_err(AuthError::invalid_config)?;
            forward = forward.set_header(name, raw(atoms));
        }
        Ok(forward.into())
    }
}

fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "header name {name:?} must be letters, digits and hyphens"
        ));
    }
    Ok(())
}

/// Split a template into literal text and `{{ KEY }}` credential references.
fn parse_template(template: &str) -> Result<Vec<Atom>, String> {
    let mut atoms = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            atoms.push(lit(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or("a \"{{\" is never closed with \"}}\"")?;
        let key = after[..end].trim();
        let valid = key.starts_with(|c: char| c.is_ascii_uppercase())
            && key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(format!(
                "{key:?} must be UPPER_SNAKE_CASE (e.g. STRIPE_KEY)"
            ));
        }
        atoms.push(slot(key));
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err("a \"}}\" has no opening \"{{\"".into());
    }
    if !rest.is_empty() {
        atoms.push(lit(rest));
    }
    Ok(atoms)
}

export_plugin!(CustomHeaders);
