//! `agent-vault vault ...`: create, list, choose and delete vaults; mint vault-scoped tokens.
//! Credentials (`vault credential`, alias `creds`), services (`vault service`), the
//! request log (`vault logs`) and proposals (`vault proposal`) have files of their own.
//!
//! Commands that act in one vault take `--vault`; without it the vault is
//! `AGENT_VAULT_VAULT`, else the one `vault use` wrote to `<data-dir>/context`, else
//! `default`. In agent mode (`AGENT_VAULT_TOKEN` set) the context file is not read.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::client::{self, Client, ClientArgs, segment};
use super::vault_select::{
    CONTEXT_FILE, VAULT_ENV, VaultSelect, parse_duration, read_context, write_context,
};
use super::{confirm_or_yes, credential, logs, proposal, service, table};

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
