//! Service documents (`services::validate`), as a client sends them: a JSON body to the API,
//! or a YAML, TOML or JSON file to `service set -f`.
//!
//! Input: a first line naming the format, `json`, `yaml` or `toml`, and `dev` for
//! development mode (`yaml dev`); then the document.
//!
//! For any document: parsing and validation never panic, and whatever validation accepts
//! - is accepted in development mode too;
//! - round-trips through the store: `from_document(to_document(services))` gives the same
//!   services (a vault whose stored services no longer read back is a vault nobody can use);
//! - round-trips through the API: each service's JSON form, sent back, validates to itself;
//! - round-trips through the CLI: the `services:` document `service list` prints, in YAML
//!   and in TOML, reads back to the same JSON;
//! - has a plugin binding, and credential keys that are valid keys.
#![no_main]

use agent_vault::services::{
    Rules, Service, ServiceSpec, check_credential_key, from_document, to_document, validate,
};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Yaml,
    Toml,
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(data) = std::str::from_utf8(data) else {
        return;
    };
    let (first_line, text) = data.split_once('\n').unwrap_or((data, ""));
    let mut flags = first_line.split(' ');
    let format = match flags.next() {
        Some("json") => Format::Json,
        Some("yaml") => Format::Yaml,
        Some("toml") => Format::Toml,
        _ => return,
    };
    let dev_mode = flags.next() == Some("dev");
    let Some(document) = parse(format, text) else {
        return;
    };
    let Some(list) = services_in(document) else {
        return;
    };
    let Ok(specs) = serde_json::from_value::<Vec<ServiceSpec>>(Value::Array(list)) else {
        return;
    };
    let rules = Rules {
        dev_mode,
        plugins: None,
    };
    let Ok(services) = validate(&specs, rules) else {
        return;
    };
    if !dev_mode {
        let lenient = Rules {
            dev_mode: true,
            plugins: None,
        };
        assert_eq!(
            validate(&specs, lenient).as_ref(),
            Ok(&services),
            "development mode differs"
        );
    }
    check_round_trips(&services, rules);
    for service in &services {
        let binding = service.binding();
        assert!(!binding.plugin.is_empty());
        for key in service.credential_keys_with(&binding) {
            assert_eq!(
                check_credential_key(&key),
                Ok(()),
                "service {}",
                service.name
            );
        }
    }
});

fn parse(format: Format, text: &str) -> Option<Value> {
    match format {
        Format::Json => serde_json::from_str(text).ok(),
        Format::Yaml => serde_norway::from_str(text).ok(),
        Format::Toml => toml::from_str(text).ok(),
    }
}

/// The services of a document as `service set -f` reads it (`host/src/cli/service.rs`): a
/// bare list, or a `services:` key alone.
fn services_in(document: Value) -> Option<Vec<Value>> {
    match document {
        Value::Array(services) => Some(services),
        Value::Object(mut map) => {
            let services = map.remove("services")?;
            if !map.is_empty() {
                return None;
            }
            match services {
                Value::Array(services) => Some(services),
                Value::Null => Some(Vec::new()),
                _ => None,
            }
        }
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

fn check_round_trips(services: &[Service], rules: Rules<'_>) {
    let stored = to_document(services);
    assert_eq!(
        from_document(&stored).as_ref(),
        Ok(&services.to_vec()),
        "store round trip of {stored}"
    );

    let sent: Vec<Value> = services.iter().map(Service::to_json).collect();
    let specs: Vec<ServiceSpec> =
        serde_json::from_value(Value::Array(sent.clone())).expect("a service's JSON is a spec");
    assert_eq!(
        validate(&specs, rules).as_ref(),
        Ok(&services.to_vec()),
        "API round trip"
    );

    let document = json!({ "services": sent });
    let yaml = serde_norway::to_string(&document).expect("writing YAML");
    let read: Value = serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    assert_eq!(read, document, "YAML round trip of {yaml}");
    let toml = toml::to_string(&document).expect("writing TOML");
    let read: Value = toml::from_str(&toml).unwrap_or_else(|e| panic!("{e}: {toml}"));
    assert_eq!(read, document, "TOML round trip of {toml}");
}
