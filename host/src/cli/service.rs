//! `agent-vault vault service ...`: what a vault's credentials are for and how they attach.
//!
//! `list` prints the services as a document (`services: [...]`) in YAML, TOML or JSON, the
//! same shape `add -f` and `set -f` read back. `add` upserts by name (from a file, or one
//! service from flags); `set` replaces the whole list. The server validates every write and
//! its message, which names the service and the field, is printed as it comes.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use super::client::{Client, ClientArgs, segment};
use super::confirm_or_yes;
use super::vault_select::VaultSelect;

#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
    #[command(flatten)]
    vault: VaultSelect,
}

#[derive(Debug, clap::Subcommand)]
enum ServiceCommand {
    /// Print the vault's services as a `services:` document.
    List {
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
    },
    /// Add services, or replace those of the same name.
    Add(Box<AddArgs>),
    /// Replace all of the vault's services with those of a file.
    Set {
        /// YAML, TOML or JSON, by extension; `-` reads YAML from standard input.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// Let requests through a service again.
    Enable { name_or_host: String },
    /// Stop a service attaching its credential, keeping its definition.
    Disable { name_or_host: String },
    /// Remove a service.
    Remove {
        name_or_host: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// The document formats services are written and read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Yaml,
    Toml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthType {
    Bearer,
    Basic,
    ApiKey,
    Custom,
    Passthrough,
    Plugin,
}

impl AuthType {
    fn as_str(self) -> &'static str {
        match self {
            AuthType::Bearer => "bearer",
            AuthType::Basic => "basic",
            AuthType::ApiKey => "api-key",
            AuthType::Custom => "custom",
            AuthType::Passthrough => "passthrough",
            AuthType::Plugin => "plugin",
        }
    }
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// Services from a file: YAML, TOML or JSON by extension; `-` reads YAML from standard
    /// input. A `services:` list or a bare list.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = [
        "name", "host", "auth_type", "token_key", "username_key", "password_key", "api_key_key",
        "api_key_header", "api_key_prefix", "headers", "plugin", "config", "credentials", "disabled",
        "substitutions", "no_redact_echo", "compressed_responses",
    ])]
    file: Option<PathBuf>,
    /// The service's name (lower-case letters, digits and hyphens).
    #[arg(long, required_unless_present = "file")]
    name: Option<String>,
    /// The upstream: `host[:port][/path-glob]`, e.g. api.stripe.com or *.example.com.
    #[arg(long, required_unless_present = "file")]
    host: Option<String>,
    /// How the credential attaches.
    #[arg(long, value_enum, required_unless_present = "file")]
    auth_type: Option<AuthType>,
    /// bearer: the credential key holding the token.
    #[arg(long, value_name = "KEY")]
    token_key: Option<String>,
    /// basic: the credential key holding the user name.
    #[arg(long, value_name = "KEY")]
    username_key: Option<String>,
    /// basic: the credential key holding the password (optional).
    #[arg(long, value_name = "KEY")]
    password_key: Option<String>,
    /// api-key: the credential key holding the API key.
    #[arg(long, value_name = "KEY")]
    api_key_key: Option<String>,
    /// api-key: the header that carries the key [default: Authorization].
    #[arg(long, value_name = "NAME")]
    api_key_header: Option<String>,
    /// api-key: text before the key, e.g. "Bearer ".
    #[arg(long, value_name = "TEXT")]
    api_key_prefix: Option<String>,
    /// custom: a header and its template, e.g. 'X-Api-Key: {{ API_KEY }}' (repeatable).
    #[arg(long = "header", value_name = "NAME: TEMPLATE")]
    headers: Vec<String>,
    /// plugin: the plugin's name.
    #[arg(long, value_name = "NAME")]
    plugin: Option<String>,
    /// plugin: a configuration entry (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// plugin: the credential key that fills a slot (repeatable).
    #[arg(long = "credential", value_name = "SLOT=KEY")]
    credentials: Vec<String>,
    /// A placeholder the agent writes where a credential goes, replaced on the way out:
    /// `KEY=PLACEHOLDER`, optionally `@` and surfaces among path, query, header, body,
    /// websocket [default: path,query], e.g. `BOT_TOKEN=__bot_token__@path` (repeatable).
    #[arg(long = "substitute", value_name = "KEY=PLACEHOLDER[@SURFACES]")]
    substitutions: Vec<String>,
    /// Do not look for the service's credential values in its responses (on by default:
    /// an echoed value is replaced by its placeholder or `[REDACTED:KEY]`).
    #[arg(long)]
    no_redact_echo: bool,
    /// A compressed response, which redaction cannot read: refuse it with 502 (default) or
    /// pass it on unread.
    #[arg(long, value_name = "refuse|pass")]
    compressed_responses: Option<String>,
    /// Add the service disabled.
    #[arg(long)]
    disabled: bool,
}

pub fn run(args: &ClientArgs, service_args: ServiceArgs) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    let vault = service_args.vault.resolve(&args.data_dir()?)?;
    let services_path = format!("/v1/vaults/{}/services", segment(&vault));
    let one_path = |name_or_host: &str| format!("{services_path}/{}", segment(name_or_host));
    match service_args.command {
        ServiceCommand::List { format } => {
            let answer = client.get(&services_path)?;
            let services = answer.get("services").cloned().unwrap_or(json!([]));
            print!("{}", render(&json!({ "services": services }), format)?);
            for service in services.as_array().into_iter().flatten() {
                warn_if_any_port(service);
            }
        }
        ServiceCommand::Add(add) => {
            let services = match &add.file {
                Some(file) => read_services(file)?,
                None => vec![from_flags(&add)?],
            };
            let answer = client.post(&services_path, &json!({ "services": services }))?;
            let names: Vec<&str> = answer
                .get("upserted")
                .and_then(Value::as_array)
                .map(|names| names.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "Saved {} in vault {vault} ({}).",
                names.join(", "),
                count(&answer)
            );
            for service in &services {
                warn_if_any_port(service);
            }
        }
        ServiceCommand::Set { file } => {
            let services = read_services(&file)?;
            let answer = client.put(&services_path, &json!({ "services": services }))?;
            println!("Vault {vault} now has {}.", count(&answer));
        }
        ServiceCommand::Enable { name_or_host } => {
            let answer = client.patch(&one_path(&name_or_host), &json!({ "enabled": true }))?;
            println!(
                "Enabled {} in vault {vault}.",
                named(&answer, "name", "host")
            );
        }
        ServiceCommand::Disable { name_or_host } => {
            let answer = client.patch(&one_path(&name_or_host), &json!({ "enabled": false }))?;
            println!(
                "Disabled {} in vault {vault}.",
                named(&answer, "name", "host")
            );
        }
        ServiceCommand::Remove { name_or_host, yes } => {
            confirm_or_yes(
                yes,
                &format!("Remove service {name_or_host} from vault {vault}?"),
                &format!("removing service {name_or_host}"),
            )?;
            let answer = client.delete(&one_path(&name_or_host), None)?;
            println!(
                "Removed {} from vault {vault} ({} left).",
                named(&answer, "removed", "removed_host"),
                count(&answer)
            );
        }
    }
    Ok(())
}

/// A note on standard error for a service without a port: it covers every port of its host
/// (Agent Vault's rule, kept so that configurations move over unchanged), which is rarely
/// what a person writing `api.example.com` means.
fn warn_if_any_port(service: &Value) {
    let host = service
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let authority = host.split('/').next().unwrap_or_default();
    if authority.is_empty()
        || authority.contains(':')
        || service.get("port").is_some_and(|p| !p.is_null())
    {
        return;
    }
    let name = service
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(authority);
    eprintln!(
        "note: service {name} has no port, so it covers every port of {authority}; \
         write {authority}:443 to attach its credential on port 443 only"
    );
}

/// `name (host)` from two fields of an answer.
fn named(answer: &Value, name: &str, host: &str) -> String {
    let text = |field: &str| answer.get(field).and_then(Value::as_str).unwrap_or("?");
    format!("{} ({})", text(name), text(host))
}

/// "1 service", "3 services".
fn count(answer: &Value) -> String {
    match answer.get("services_count").and_then(Value::as_u64) {
        Some(1) => "1 service".to_owned(),
        Some(n) => format!("{n} services"),
        None => "? services".to_owned(),
    }
}

fn render(document: &Value, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Yaml => serde_norway::to_string(document).context("writing YAML")?,
        Format::Toml => toml::to_string(document).context("writing TOML")?,
        Format::Json => {
            serde_json::to_string_pretty(document).expect("JSON values serialize") + "\n"
        }
    })
}

/// The services of a file (or `-`, standard input as YAML): a `services:` document or a
/// bare list.
fn read_services(file: &Path) -> anyhow::Result<Vec<Value>> {
    let shown = file.display();
    let (text, format) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading services from standard input")?;
        (text, Format::Yaml)
    } else {
        let format = match file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("yaml" | "yml") => Format::Yaml,
            Some("toml") => Format::Toml,
            Some("json") => Format::Json,
            _ => bail!("{shown}: name the format by extension: .yaml, .yml, .toml or .json"),
        };
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {shown}"))?;
        (text, format)
    };
    let document: Value = match format {
        Format::Yaml => {
            serde_norway::from_str(&text).with_context(|| format!("{shown}: not valid YAML"))?
        }
        Format::Toml => {
            toml::from_str(&text).with_context(|| format!("{shown}: not valid TOML"))?
        }
        Format::Json => {
            serde_json::from_str(&text).with_context(|| format!("{shown}: not valid JSON"))?
        }
    };
    let expected =
        || anyhow::anyhow!("{shown}: expected a `services:` list, or a list of services");
    match document {
        Value::Array(services) => Ok(services),
        Value::Object(mut map) => {
            let services = map.remove("services").ok_or_else(expected)?;
            if let Some(other) = map.keys().next() {
                bail!("{shown}: unexpected top-level key {other:?} (only `services:` is read)");
            }
            match services {
                Value::Array(services) => Ok(services),
                Value::Null => Ok(Vec::new()),
                _ => Err(expected()),
            }
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(expected()),
    }
}

/// One service from `add`'s flags, refusing flags of another auth type.
fn from_flags(add: &AddArgs) -> anyhow::Result<Value> {
    let (Some(name), Some(host), Some(kind)) = (&add.name, &add.host, add.auth_type) else {
        bail!("give -f FILE, or --name, --host and --auth-type");
    };
    let belongs = [
        ("--token-key", add.token_key.is_some(), AuthType::Bearer),
        (
            "--username-key",
            add.username_key.is_some(),
            AuthType::Basic,
        ),
        (
            "--password-key",
            add.password_key.is_some(),
            AuthType::Basic,
        ),
        ("--api-key-key", add.api_key_key.is_some(), AuthType::ApiKey),
        (
            "--api-key-header",
            add.api_key_header.is_some(),
            AuthType::ApiKey,
        ),
        (
            "--api-key-prefix",
            add.api_key_prefix.is_some(),
            AuthType::ApiKey,
        ),
        ("--header", !add.headers.is_empty(), AuthType::Custom),
        ("--plugin", add.plugin.is_some(), AuthType::Plugin),
        ("--config", !add.config.is_empty(), AuthType::Plugin),
        (
            "--credential",
            !add.credentials.is_empty(),
            AuthType::Plugin,
        ),
    ];
    for (flag, given, owner) in belongs {
        if given && owner != kind {
            bail!(
                "{flag} is for {} auth, not {}",
                owner.as_str(),
                kind.as_str()
            );
        }
    }
    let needs = |value: &Option<String>, flag: &str, what: &str| {
        value
            .clone()
            .ok_or_else(|| anyhow::anyhow!("{} auth needs {flag} ({what})", kind.as_str()))
    };
    let mut auth = Map::new();
    auth.insert("type".into(), json!(kind.as_str()));
    let mut put = |field: &str, value: Option<String>| {
        if let Some(value) = value {
            auth.insert(field.into(), Value::String(value));
        }
    };
    match kind {
        AuthType::Bearer => put(
            "token",
            Some(needs(
                &add.token_key,
                "--token-key",
                "the credential key holding the token",
            )?),
        ),
        AuthType::Basic => {
            put(
                "username",
                Some(needs(
                    &add.username_key,
                    "--username-key",
                    "the credential key holding the user name",
                )?),
            );
            put("password", add.password_key.clone());
        }
        AuthType::ApiKey => {
            put(
                "key",
                Some(needs(
                    &add.api_key_key,
                    "--api-key-key",
                    "the credential key holding the API key",
                )?),
            );
            put("header", add.api_key_header.clone());
            put("prefix", add.api_key_prefix.clone());
        }
        AuthType::Custom => {
            if add.headers.is_empty() {
                bail!(
                    "custom auth needs --header 'NAME: TEMPLATE' (e.g. 'X-Api-Key: {{{{ API_KEY }}}}')"
                );
            }
            let mut headers = Map::new();
            for header in &add.headers {
                let (name, template) = header.split_once(':').ok_or_else(|| {
                    anyhow::anyhow!("--header {header:?} must be 'NAME: TEMPLATE'")
                })?;
                headers.insert(name.trim().to_owned(), json!(template.trim()));
            }
            auth.insert("headers".into(), Value::Object(headers));
        }
        AuthType::Passthrough => {}
        AuthType::Plugin => {
            put(
                "plugin",
                Some(needs(
                    &add.plugin,
                    "--plugin",
                    "the plugin's name, see `agent-vault plugin list`",
                )?),
            );
            auth.insert(
                "config".into(),
                pairs(&add.config, "--config", "KEY=VALUE")?,
            );
            auth.insert(
                "credentials".into(),
                pairs(&add.credentials, "--credential", "SLOT=KEY")?,
            );
        }
    }
    let mut service = json!({ "name": name, "host": host, "auth": auth });
    if add.disabled {
        service["enabled"] = json!(false);
    }
    if !add.substitutions.is_empty() {
        service["substitutions"] = add
            .substitutions
            .iter()
            .map(|entry| substitution(entry))
            .collect::<anyhow::Result<Vec<Value>>>()?
            .into();
    }
    if add.no_redact_echo {
        service["redact_echo"] = json!(false);
    }
    if let Some(compressed) = &add.compressed_responses {
        service["compressed_responses"] = json!(compressed);
    }
    Ok(service)
}

/// `KEY=PLACEHOLDER[@surface,...]` as a substitution entry; the server checks the parts.
fn substitution(entry: &str) -> anyhow::Result<Value> {
    let (key, rest) = entry.split_once('=').ok_or_else(|| {
        anyhow::anyhow!(
            "--substitute {entry:?} must be KEY=PLACEHOLDER[@SURFACES], e.g. BOT_TOKEN=__bot_token__@path"
        )
    })?;
    let mut value = json!({ "key": key.trim() });
    match rest.split_once('@') {
        Some((placeholder, surfaces)) => {
            value["placeholder"] = json!(placeholder);
            value["in"] = surfaces
                .split(',')
                .map(str::trim)
                .collect::<Vec<_>>()
                .into();
        }
        None => value["placeholder"] = json!(rest),
    }
    Ok(value)
}

/// `k=v` entries as a JSON object.
fn pairs(entries: &[String], flag: &str, shape: &str) -> anyhow::Result<Value> {
    let mut map = Map::new();
    for entry in entries {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{flag} {entry:?} must be {shape}"))?;
        if map.insert(key.to_owned(), json!(value)).is_some() {
            bail!("{flag} {key} is given twice");
        }
    }
    Ok(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_or_a_bare_list_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("services.yaml");
        std::fs::write(
            &yaml,
            "services:\n  - name: stripe\n    host: api.stripe.com\n",
        )
        .unwrap();
        let toml = dir.path().join("services.toml");
        std::fs::write(
            &toml,
            "[[services]]\nname = \"stripe\"\nhost = \"api.stripe.com\"\n",
        )
        .unwrap();
        let json = dir.path().join("services.json");
        std::fs::write(&json, r#"[{"name": "stripe", "host": "api.stripe.com"}]"#).unwrap();
        let expected = vec![json!({"name": "stripe", "host": "api.stripe.com"})];
        for file in [&yaml, &toml, &json] {
            assert_eq!(read_services(file).unwrap(), expected, "{}", file.display());
        }
        let other = dir.path().join("services.txt");
        std::fs::write(&other, "").unwrap();
        assert!(
            read_services(&other)
                .unwrap_err()
                .to_string()
                .ends_with("name the format by extension: .yaml, .yml, .toml or .json")
        );
        std::fs::write(&yaml, "service:\n  - name: stripe\n").unwrap();
        assert!(
            read_services(&yaml)
                .unwrap_err()
                .to_string()
                .ends_with("expected a `services:` list, or a list of services")
        );
    }
}
