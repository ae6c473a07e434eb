//! `agent-vault vault credential` (alias `creds`): set, list and delete a vault's credentials.
//!
//! `set KEY=VALUE` takes the value from the command line; a bare `KEY` is read without echo
//! on a terminal, or as one line of standard input in a script, so the value never reaches
//! the shell history or the process list. Values are never printed, except by
//! `list --reveal`, which exists to print them.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::client::{Client, ClientArgs, query_value};
use super::input;
use super::vault_select::VaultSelect;

#[derive(Debug, clap::Args)]
pub struct CredentialArgs {
    #[command(subcommand)]
    command: CredentialCommand,
    #[command(flatten)]
    vault: VaultSelect,
}

#[derive(Debug, clap::Subcommand)]
enum CredentialCommand {
    /// Set credentials: KEY=VALUE, or KEY alone to type the value (or pipe it, one line per
    /// KEY).
    Set {
        #[arg(required = true, value_name = "KEY[=VALUE]")]
        entries: Vec<String>,
    },
    /// List the credential keys; with --reveal, KEY=VALUE lines.
    List {
        /// Print the values too (vault members and admins).
        #[arg(long)]
        reveal: bool,
    },
    /// Delete credentials.
    Delete {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

pub fn run(args: &ClientArgs, credential_args: CredentialArgs) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    let vault = credential_args.vault.resolve(&args.data_dir()?)?;
    match credential_args.command {
        CredentialCommand::Set { entries } => set(&client, &vault, &entries),
        CredentialCommand::List { reveal } => list(&client, &vault, reveal),
        CredentialCommand::Delete { keys } => delete(&client, &vault, &keys),
    }
}

fn set(client: &Client, vault: &str, entries: &[String]) -> anyhow::Result<()> {
    let mut values: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
    for entry in entries {
        let (key, value) = match entry.split_once('=') {
            Some((key, value)) => (key.to_owned(), Zeroizing::new(value.to_owned())),
            None if input::interactive() => {
                let value = input::prompt_secret(&format!("Value for {entry}: "))?;
                (entry.clone(), value)
            }
            None => {
                let value = input::stdin_line()?;
                (entry.clone(), value)
            }
        };
        if key.is_empty() {
            bail!("{entry:?}: a credential needs a KEY (KEY=VALUE, or KEY alone to type it)");
        }
        if value.is_empty() {
            bail!("the value of {key} is empty");
        }
        values.insert(key, value);
    }
    let credentials: serde_json::Map<String, Value> = values
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.to_string())))
        .collect();
    let body = json!({ "vault": vault, "credentials": credentials });
    let answer = client.post("/v1/credentials", &body)?;
    let set: Vec<&str> = answer
        .get("set")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!("Set {} in vault {vault}.", set.join(", "));
    Ok(())
}

fn list(client: &Client, vault: &str, reveal: bool) -> anyhow::Result<()> {
    let mut path = format!("/v1/credentials?vault={}", query_value(vault));
    if reveal {
        path.push_str("&reveal=true");
    }
    let answer = client.get(&path)?;
    let keys: Vec<&str> = answer
        .get("keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        eprintln!("Vault {vault} has no credentials.");
        return Ok(());
    }
    if !reveal {
        for key in keys {
            println!("{key}");
        }
        return Ok(());
    }
    let empty = Vec::new();
    let credentials = answer
        .get("credentials")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for credential in credentials {
        let text = |field: &str| credential.get(field).and_then(Value::as_str).unwrap_or("");
        println!("{}={}", text("key"), text("value"));
    }
    Ok(())
}

fn delete(client: &Client, vault: &str, keys: &[String]) -> anyhow::Result<()> {
    let answer = client.delete(
        "/v1/credentials",
        Some(&json!({ "vault": vault, "keys": keys })),
    )?;
    let deleted: Vec<&str> = answer
        .get("deleted")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted {} from vault {vault}.", deleted.join(", "));
    }
    let missing: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|key| !deleted.contains(key))
        .collect();
    if !missing.is_empty() {
        bail!("vault {vault} has no credential {}", missing.join(", "));
    }
    Ok(())
}
