//! `agent-vault vault ...`: create, list, choose and delete vaults; mint vault-scoped tokens.
//! Credentials (`vault credential`, alias `creds`), services (`vault service`), the
//! request log (`vault logs`) and proposals (`vault proposal`) have files of their own.
//!
//! Commands that act in one vault take `--vault`; without it the vault is
//! `AGENT_VAULT_VAULT`, else the one `vault use` wrote to `<data-dir>/context`, else
//! `default`. In agent mode (`AGENT_VAULT_TOKEN` set) the context file is not read.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::client::{self, Client, ClientArgs, segment};
use super::{confirm_or_yes, credential, logs, proposal, service, table};

/// The vault to act in, for agents and scripts.
pub const VAULT_ENV: &str = "AGENT_VAULT_VAULT";
const CONTEXT_FILE: &str = "context";
const DEFAULT_VAULT: &str = crate::store::DEFAULT_VAULT;

#[derive(Debug, clap::Args)]
pub struct VaultArgs {
    #[command(subcommand)]
    command: VaultCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum VaultCommand {
    /// Create a vault; you become its admin.
    Create { name: String },
    /// List the vaults you can see; `*` marks the current one.
    List,
    /// Make NAME the current vault of later commands.
    Use { name: String },
    /// Print the current vault.
    Current,
    /// Give a vault a new name (agents naming it in X-Vault must follow).
    Rename { name: String, new_name: String },
    /// Become an admin of a vault (owners, who see every vault).
    Join { name: String },
    /// Give up your own access to a vault.
    Leave { name: String },
    /// Delete a vault with its credentials and services.
    Delete {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Set, list and delete the vault's credentials.
    #[command(alias = "creds")]
    Credential(credential::CredentialArgs),
    /// The vault's services: which hosts its credentials are for, and how they attach.
    Service(service::ServiceArgs),
    /// Mint a token scoped to the vault (proxy role) for a sandbox or an agent; prints only
    /// the token.
    Token(TokenArgs),
    /// The vault's request log, one line per proxied request, oldest first; --follow for
    /// new ones as they come.
    Logs(logs::LogsArgs),
    /// Proposals agents make: list, show, approve, reject, review; create (for agents).
    Proposal(proposal::ProposalArgs),
    /// Run a command behind the transparent proxy (HTTPS_PROXY and CA trust set), with a
    /// token for the vault.
    Run(super::run::RunArgs),
}

/// `--vault`, accepted anywhere after the command that takes it.
#[derive(Debug, Clone, clap::Args)]
pub struct VaultSelect {
    /// The vault [default: $AGENT_VAULT_VAULT, else the one chosen with `vault use`, else
    /// default].
    #[arg(long, global = true, value_name = "NAME", help_heading = super::client::COMMON)]
    pub vault: Option<String>,
}

impl VaultSelect {
    /// `--vault`, else `AGENT_VAULT_VAULT`, else (not in agent mode) the context file, else
    /// `default`.
    pub fn resolve(&self, data_dir: &Path) -> anyhow::Result<String> {
        if let Some(vault) = self.vault.clone().or_else(|| client::env_value(VAULT_ENV)) {
            return Ok(vault);
        }
        if client::agent_mode() {
            return Ok(DEFAULT_VAULT.to_owned());
        }
        Ok(read_context(data_dir)?.unwrap_or_else(|| DEFAULT_VAULT.to_owned()))
    }
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// How long the token works: seconds, or a duration like 30m, 24h, 7d (5m to 7d).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    ttl: String,
    /// A label shown when listing the vault's sessions.
    #[arg(long)]
    label: Option<String>,
    #[command(flatten)]
    vault: VaultSelect,
}

pub fn run(args: VaultArgs) -> anyhow::Result<ExitCode> {
    let client_args = &args.client;
    match args.command {
        VaultCommand::Create { name } => create(client_args, &name),
        VaultCommand::List => list(client_args),
        VaultCommand::Use { name } => use_vault(client_args, &name),
        VaultCommand::Current => current(client_args),
        VaultCommand::Rename { name, new_name } => rename(client_args, &name, &new_name),
        VaultCommand::Join { name } => {
            let client = Client::logged_in(client_args)?;
            client.post(&format!("/v1/vaults/{}/join", segment(&name)), &json!({}))?;
            println!("Joined vault {name} as an admin.");
            Ok(())
        }
        VaultCommand::Leave { name } => {
            let client = Client::logged_in(client_args)?;
            let left = client.post(&format!("/v1/vaults/{}/leave", segment(&name)), &json!({}))?;
            println!("{}.", client::field(&left, "message")?);
            Ok(())
        }
        VaultCommand::Delete { name, yes } => delete(client_args, &name, yes),
        VaultCommand::Credential(command) => credential::run(client_args, command),
        VaultCommand::Service(command) => service::run(client_args, command),
        VaultCommand::Token(token_args) => token(client_args, &token_args),
        VaultCommand::Logs(logs_args) => logs::run(client_args, &logs_args),
        VaultCommand::Proposal(proposal_args) => proposal::run(client_args, proposal_args),
        VaultCommand::Run(run_args) => return super::run::run(client_args, run_args),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn create(args: &ClientArgs, name: &str) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    let created = client.post("/v1/vaults", &json!({ "name": name }))?;
    println!(
        "Created vault {}; you are its admin.",
        client::field(&created, "name")?
    );
    Ok(())
}

/// The vaults the caller can see, as the API lists them.
fn vaults(client: &Client) -> anyhow::Result<Vec<Value>> {
    let listed = client.get("/v1/vaults")?;
    Ok(listed
        .get("vaults")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn list(args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    let current = VaultSelect { vault: None }.resolve(&args.data_dir()?)?;
    let text = |vault: &Value, field: &str| {
        vault
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    let listed = vaults(&client)?;
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|vault| {
            vec![
                text(vault, "name"),
                text(vault, "role"),
                text(vault, "membership"),
            ]
        })
        .collect();
    // `*` marks the current vault, as `git branch` marks the current branch.
    let rendered = table(&["NAME", "ROLE", "MEMBERSHIP"], &rows);
    let mut lines = rendered.lines();
    println!("  {}", lines.next().unwrap_or_default());
    for (line, row) in lines.zip(&rows) {
        let marker = if row[0] == current { '*' } else { ' ' };
        println!("{marker} {line}");
    }
    Ok(())
}

fn use_vault(args: &ClientArgs, name: &str) -> anyhow::Result<()> {
    if client::agent_mode() {
        bail!(
            "in agent mode (AGENT_VAULT_TOKEN is set) the vault comes from --vault or {VAULT_ENV}, not `vault use`"
        );
    }
    let client = Client::logged_in(args)?;
    let exists = vaults(&client)?
        .iter()
        .any(|vault| vault.get("name").and_then(Value::as_str) == Some(name));
    if !exists {
        bail!("no vault named {name} that you can see (run `agent-vault vault list`)");
    }
    write_context(&args.data_dir()?, name)?;
    println!("Now using vault {name}.");
    Ok(())
}

fn current(args: &ClientArgs) -> anyhow::Result<()> {
    println!(
        "{}",
        VaultSelect { vault: None }.resolve(&args.data_dir()?)?
    );
    Ok(())
}

fn rename(args: &ClientArgs, name: &str, new_name: &str) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    client.post(
        &format!("/v1/vaults/{}/rename", segment(name)),
        &json!({ "name": new_name }),
    )?;
    let data_dir = args.data_dir()?;
    if read_context(&data_dir)?.as_deref() == Some(name) {
        write_context(&data_dir, new_name)?;
    }
    println!("Renamed vault {name} to {new_name}.");
    Ok(())
}

fn delete(args: &ClientArgs, name: &str, yes: bool) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    confirm_or_yes(
        yes,
        &format!("Delete vault {name} with all its credentials, services and logs?"),
        &format!("deleting vault {name}"),
    )?;
    client.delete(&format!("/v1/vaults/{}", segment(name)), None)?;
    let data_dir = args.data_dir()?;
    if read_context(&data_dir)?.as_deref() == Some(name) {
        std::fs::remove_file(data_dir.join(CONTEXT_FILE))
            .context("forgetting the current vault")?;
    }
    println!("Deleted vault {name}.");
    Ok(())
}

fn token(args: &ClientArgs, token_args: &TokenArgs) -> anyhow::Result<()> {
    let ttl = parse_duration(&token_args.ttl)?;
    let client = Client::logged_in(args)?;
    let vault = token_args.vault.resolve(&args.data_dir()?)?;
    let mut body = json!({ "vault": vault, "ttl_seconds": ttl });
    if let Some(label) = &token_args.label {
        body["label"] = json!(label);
    }
    let minted = client.post("/v1/sessions", &body)?;
    println!("{}", client::field(&minted, "token")?);
    eprintln!(
        "A proxy token for vault {vault}; it expires at {}.",
        client::field(&minted, "expires_at")?
    );
    Ok(())
}

/// The vault of `<data-dir>/context`, if one was chosen.
/// Make `name` the current vault of later commands.
fn write_context(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    client::write_private(data_dir, CONTEXT_FILE, format!("{name}\n").as_bytes())
}

fn read_context(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = data_dir.join(CONTEXT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|name| !name.is_empty())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Seconds from `3600`, `90s`, `30m`, `24h`, `7d` or a sum like `1h30m`.
pub(super) fn parse_duration(text: &str) -> anyhow::Result<i64> {
    let invalid = || {
        anyhow::anyhow!(
            "--ttl {text:?} is not a duration: use seconds or a number with s, m, h or d (e.g. 30m, 24h, 7d)"
        )
    };
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let amount: i64 = digits.parse().map_err(|_| invalid())?;
        total = amount
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("3600").unwrap(), 3600);
        assert_eq!(parse_duration("24h").unwrap(), 86_400);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        for bad in ["", "h", "1.5h", "10w", "5m3", "-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
