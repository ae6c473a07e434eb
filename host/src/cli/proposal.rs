//! `agent-vault vault proposal ...`: the proposals agents make, reviewed from the terminal.
//!
//! `list`, `show`, `approve`, `reject` and the interactive `review` are for the people who
//! decide (vault members and admins); with an agent's token or a vault session, `list` and
//! `show` read the agent's side, so an agent can poll. `create` is for agents driven from
//! scripts. Credential values for `approve` come as `KEY=VALUE`, or are typed at a prompt
//! without echo (or read from standard input, one line per key).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::client::{self, Client, ClientArgs, query_value};
use super::vault_select::VaultSelect;
use super::{input, table};

#[derive(Debug, clap::Args)]
pub struct ProposalArgs {
    #[command(subcommand)]
    command: ProposalCommand,
    #[command(flatten)]
    vault: VaultSelect,
}

#[derive(Debug, clap::Subcommand)]
enum ProposalCommand {
    /// List the vault's proposals, newest first.
    List {
        /// Only proposals in this state.
        #[arg(long, value_parser = ["pending", "applied", "rejected", "expired"])]
        status: Option<String>,
    },
    /// Show a proposal: who asks, why, what it changes and the credentials it needs.
    Show { id: u64 },
    /// Approve a proposal: its services and credentials go into the vault. Give values as
    /// KEY=VALUE, or type them when asked.
    Approve {
        id: u64,
        #[arg(value_name = "KEY=VALUE")]
        values: Vec<String>,
    },
    /// Reject a proposal.
    Reject {
        id: u64,
        /// Why; the agent can read it.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Go through the pending proposals: approve, reject, skip or quit.
    Review,
    /// Make a proposal (agents driven from scripts): from a JSON file (`-` for standard
    /// input) with `services`, `credentials`, `message` and `user_message`, or from flags
    /// for one service.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// The whole proposal as JSON; `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["name", "host"])]
    file: Option<PathBuf>,
    /// The service's name.
    #[arg(long, requires = "host")]
    name: Option<String>,
    /// The service's host, `host[:port][/path]`.
    #[arg(long, requires = "auth_type")]
    host: Option<String>,
    /// How the credential attaches.
    #[arg(long, value_parser = ["bearer", "api-key", "passthrough"])]
    auth_type: Option<String>,
    /// The credential key of a bearer or api-key service.
    #[arg(long, value_name = "KEY")]
    token_key: Option<String>,
    /// The header of an api-key service.
    #[arg(long)]
    api_key_header: Option<String>,
    /// A credential the approver fills in, with an optional description. Repeatable.
    #[arg(long = "credential", value_name = "KEY[=DESCRIPTION]")]
    credentials: Vec<String>,
    /// Why the agent needs it.
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// A message for the person who approves.
    #[arg(long)]
    user_message: Option<String>,
}

pub fn run(args: &ClientArgs, proposal_args: ProposalArgs) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    let vault = proposal_args.vault.resolve(&args.data_dir()?)?;
    match proposal_args.command {
        ProposalCommand::List { status } => list(&client, &vault, status.as_deref()),
        ProposalCommand::Show { id } => {
            print!("{}", describe(&fetch(&client, &vault, id)?));
            Ok(())
        }
        ProposalCommand::Approve { id, values } => approve(&client, &vault, id, &values),
        ProposalCommand::Reject { id, reason } => reject(&client, &vault, id, reason),
        ProposalCommand::Review => review(&client, &vault),
        ProposalCommand::Create(create_args) => create(&client, &vault, create_args),
    }
}

/// People read the reviewers' side of the API; agents and vault sessions their own side.
fn base_path(client: &Client, vault: &str) -> anyhow::Result<(String, String)> {
    let me = client.get("/v1/auth/me")?;
    Ok(if me.get("type").and_then(Value::as_str) != Some("user") {
        (
            "/v1/proposals".to_owned(),
            format!("vault={}", query_value(vault)),
        )
    } else {
        (
            "/v1/admin/proposals".to_owned(),
            format!("vault={}", query_value(vault)),
        )
    })
}

fn fetch(client: &Client, vault: &str, id: u64) -> anyhow::Result<Value> {
    let (base, query) = base_path(client, vault)?;
    Ok(client.get(&format!("{base}/{id}?{query}"))?)
}

fn list(client: &Client, vault: &str, status: Option<&str>) -> anyhow::Result<()> {
    let (base, mut query) = base_path(client, vault)?;
    if let Some(status) = status {
        query.push_str(&format!("&status={}", query_value(status)));
    }
    let answer = client.get(&format!("{base}?{query}"))?;
    let rows: Vec<Vec<String>> = answer
        .get("proposals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|proposal| {
            let text = |field: &str| match proposal.get(field) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Number(number)) => number.to_string(),
                _ => "-".to_owned(),
            };
            let mut message = text("message").replace('\n', " ");
            if message.chars().count() > 60 {
                message = message.chars().take(57).collect::<String>() + "...";
            }
            vec![text("id"), text("status"), text("created_at"), message]
        })
        .collect();
    print!("{}", table(&["ID", "STATUS", "CREATED", "MESSAGE"], &rows));
    Ok(())
}

/// A proposal as text for a person.
fn describe(proposal: &Value) -> String {
    let text = |field: &str| proposal.get(field).and_then(Value::as_str).unwrap_or("");
    let mut out = format!(
        "Proposal {} ({}), made {}\n",
        proposal.get("id").map(Value::to_string).unwrap_or_default(),
        text("status"),
        text("created_at"),
    );
    if !text("proposed_by").is_empty() {
        out.push_str(&format!("Proposed by {}\n", text("proposed_by")));
    }
    if !text("user_message").is_empty() {
        out.push_str(&format!("Message to you: {}\n", text("user_message")));
    }
    if !text("message").is_empty() {
        out.push_str(&format!("Why: {}\n", text("message")));
    }
    if let Some(changes) = proposal.get("changes").and_then(Value::as_array) {
        for change in changes.iter().filter_map(Value::as_str) {
            out.push_str(&format!("  - {change}\n"));
        }
    } else if let Some(services) = proposal.get("services").and_then(Value::as_array) {
        for service in services {
            out.push_str(&format!("  - {service}\n"));
        }
    }
    for slot in slots(proposal) {
        let description = slot
            .get("description")
            .and_then(Value::as_str)
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let verb = match slot.get("action").and_then(Value::as_str) {
            Some("delete") => "Deletes credential",
            _ => "Needs credential",
        };
        out.push_str(&format!(
            "  {verb} {}{description}\n",
            slot.get("key").and_then(Value::as_str).unwrap_or("?")
        ));
        if let Some(obtain) = slot.get("obtain").and_then(Value::as_str) {
            out.push_str(&format!("    get it at {obtain}\n"));
        }
    }
    if let Some(note) = proposal.get("review_note").and_then(Value::as_str) {
        out.push_str(&format!("Review note: {note}\n"));
    }
    out
}

fn slots(proposal: &Value) -> Vec<&Value> {
    proposal
        .get("credentials")
        .and_then(Value::as_array)
        .map(|slots| slots.iter().collect())
        .unwrap_or_default()
}

/// The keys approving `proposal` needs values for.
fn needed_keys(proposal: &Value) -> Vec<String> {
    slots(proposal)
        .into_iter()
        .filter(|slot| slot.get("action").and_then(Value::as_str) != Some("delete"))
        .filter_map(|slot| slot.get("key").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn approve(client: &Client, vault: &str, id: u64, given: &[String]) -> anyhow::Result<()> {
    let proposal = fetch(client, vault, id)?;
    let mut values: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
    for entry in given {
        let Some((key, value)) = entry.split_once('=') else {
            bail!("{entry:?}: give values as KEY=VALUE (or leave a key out to type it)");
        };
        values.insert(key.to_owned(), Zeroizing::new(value.to_owned()));
    }
    for key in needed_keys(&proposal) {
        if values.contains_key(&key) {
            continue;
        }
        let value = if input::interactive() {
            input::prompt_secret(&format!("Value for {key}: "))?
        } else {
            input::stdin_line()?
        };
        if value.is_empty() {
            bail!("no value for {key}");
        }
        values.insert(key, value);
    }
    send_approval(client, vault, id, &values)?;
    println!("Approved proposal {id} in vault {vault}: its services and credentials are live.");
    Ok(())
}

fn send_approval(
    client: &Client,
    vault: &str,
    id: u64,
    values: &BTreeMap<String, Zeroizing<String>>,
) -> anyhow::Result<()> {
    let credentials: serde_json::Map<String, Value> = values
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.to_string())))
        .collect();
    client.post(
        &format!("/v1/admin/proposals/{id}/approve"),
        &json!({ "vault": vault, "credentials": credentials }),
    )?;
    Ok(())
}

fn reject(client: &Client, vault: &str, id: u64, reason: Option<String>) -> anyhow::Result<()> {
    client.post(
        &format!("/v1/admin/proposals/{id}/reject"),
        &json!({ "vault": vault, "reason": reason }),
    )?;
    println!("Rejected proposal {id} in vault {vault}.");
    Ok(())
}

fn review(client: &Client, vault: &str) -> anyhow::Result<()> {
    let answer = client.get(&format!(
        "/v1/admin/proposals?vault={}&status=pending",
        query_value(vault)
    ))?;
    let pending: Vec<u64> = answer
        .get("proposals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("id").and_then(Value::as_u64))
        .collect();
    if pending.is_empty() {
        println!("No pending proposals in vault {vault}.");
        return Ok(());
    }
    // Oldest first: the order they were asked in.
    for id in pending.into_iter().rev() {
        let proposal = fetch(client, vault, id)?;
        print!("\n{}", describe(&proposal));
        eprint!("[a]pprove, [r]eject, [s]kip or [q]uit? ");
        let choice = input::stdin_line()?;
        match choice.trim().to_ascii_lowercase().as_str() {
            "a" | "approve" => approve(client, vault, id, &[])?,
            "r" | "reject" => {
                eprint!("Reason (optional): ");
                let reason = input::stdin_line()?.trim().to_owned();
                reject(client, vault, id, Some(reason).filter(|r| !r.is_empty()))?;
            }
            "q" | "quit" => break,
            _ => println!("Skipped proposal {id}."),
        }
    }
    Ok(())
}

fn create(client: &Client, vault: &str, args: CreateArgs) -> anyhow::Result<()> {
    let mut body: Value = match &args.file {
        Some(path) => {
            let mut text = String::new();
            if path.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the proposal from standard input")?;
            } else {
                text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
            }
            serde_json::from_str(&text).context("the proposal is not valid JSON")?
        }
        None => json!({}),
    };
    if let (Some(name), Some(host), Some(auth_type)) = (&args.name, &args.host, &args.auth_type) {
        let mut auth = json!({ "type": auth_type });
        match (auth_type.as_str(), &args.token_key) {
            ("bearer", Some(key)) => auth["token"] = json!(key),
            ("api-key", Some(key)) => {
                auth["key"] = json!(key);
                if let Some(header) = &args.api_key_header {
                    auth["header"] = json!(header);
                }
            }
            ("passthrough", _) => {}
            (kind, None) => bail!("--auth-type {kind} needs --token-key"),
            _ => {}
        }
        body["services"] = json!([{ "name": name, "host": host, "auth": auth }]);
    }
    if !args.credentials.is_empty() {
        let slots: Vec<Value> = args
            .credentials
            .iter()
            .map(|entry| match entry.split_once('=') {
                Some((key, description)) => json!({ "key": key, "description": description }),
                None => json!({ "key": entry }),
            })
            .collect();
        body["credentials"] = json!(slots);
    }
    if let Some(message) = args.message {
        body["message"] = json!(message);
    }
    if let Some(user_message) = args.user_message {
        body["user_message"] = json!(user_message);
    }
    let created = client.post(
        &format!("/v1/proposals?vault={}", query_value(vault)),
        &body,
    )?;
    println!(
        "Proposal {} is pending in vault {vault}. Approve it at: {}",
        created.get("id").map(Value::to_string).unwrap_or_default(),
        client::field(&created, "approval_url")?
    );
    Ok(())
}
