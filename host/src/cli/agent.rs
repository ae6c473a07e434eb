//! `agent-vault agent create | invite | list | rotate | revoke | delete`: named agents with
//! long-lived `av_agt_` tokens.
//!
//! A token is printed once, on standard output, when the agent is created and when its
//! token is rotated (so `TOKEN=$(agent-vault agent create bot)` works); everything else goes
//! to standard error. The server never shows it again. `agent invite NAME` is for agents that
//! connect themselves: it prints, on standard output, a prompt to paste into the agent's chat
//! with a one-time link the agent redeems for its own token; `agent invite list` and
//! `agent invite revoke ID` manage the links.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Value, json};

use super::client::{self, Client, ClientArgs, segment};
use super::{confirm_or_yes, table};
use crate::store::VaultRole;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// Create an agent and print its token (once).
    Create {
        name: String,
        /// The agent's instance role.
        #[arg(long, default_value = "no-access", value_parser = ["owner", "member", "no-access"])]
        role: String,
        /// A vault the agent may use, with its role there (admin, member, proxy; default
        /// proxy). Repeatable.
        #[arg(long = "vault", value_name = "NAME[:ROLE]")]
        vaults: Vec<String>,
    },
    /// Invite an agent to connect itself: prints a prompt to paste into its chat.
    Invite(InviteArgs),
    /// List the agents you can see (and pending invites, as agents to come).
    List,
    /// Give an agent a new token (printed once); the old one stops working.
    Rotate { name: String },
    /// Revoke an agent: its token and the sessions it minted stop working.
    Revoke { name: String },
    /// Give an agent a new name; its token and vaults stay.
    Rename { name: String, new_name: String },
    /// Change an agent's instance role (owners only).
    Role {
        name: String,
        #[arg(value_parser = ["owner", "member", "no-access"])]
        role: String,
    },
    /// Delete an agent.
    Delete {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `agent invite NAME [options]`, or `agent invite list | revoke`. An agent cannot be invited
/// under the name `list` or `revoke`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct InviteArgs {
    #[command(subcommand)]
    command: Option<InviteCommand>,
    /// The name the agent will have.
    #[arg(required = true)]
    name: Option<String>,
    /// The agent's instance role.
    #[arg(long, default_value = "no-access", value_parser = ["owner", "member", "no-access"])]
    role: String,
    /// A vault the agent may use, with its role there (admin, member, proxy; default proxy).
    /// Repeatable.
    #[arg(long = "vault", value_name = "NAME[:ROLE]")]
    vaults: Vec<String>,
    /// How long the link works: 5m to 7d.
    #[arg(long, default_value = "24h")]
    ttl: String,
}

#[derive(Debug, clap::Subcommand)]
enum InviteCommand {
    /// List the agent invites you made (owners: all of them).
    List {
        /// Only invites in this state.
        #[arg(long, value_parser = ["pending", "redeemed", "revoked", "expired"])]
        status: Option<String>,
    },
    /// Revoke a pending invite by the id `invite list` shows (or by its token).
    Revoke { id: String },
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let client = Client::logged_in(&args.client)?;
    let agent_path = |name: &str| format!("/v1/agents/{}", segment(name));
    match args.command {
        AgentCommand::Create { name, role, vaults } => {
            let vaults = vaults
                .iter()
                .map(|entry| vault_grant(entry, VaultRole::Proxy))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let created = client.post(
                "/v1/agents",
                &json!({ "name": name, "role": role, "vaults": vaults }),
            )?;
            println!("{}", client::field(&created, "av_agent_token")?);
            eprintln!(
                "Created agent {name} ({role}; vaults: {}). This is its token; it will not be shown again.",
                grants(created.get("vaults"))
            );
        }
        AgentCommand::Invite(invite) => run_invite(&client, invite)?,
        AgentCommand::List => {
            let listed = client.get("/v1/agents")?;
            let rows: Vec<Vec<String>> = listed
                .get("agents")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|agent| {
                    let text = |field: &str| {
                        agent
                            .get(field)
                            .and_then(Value::as_str)
                            .unwrap_or("-")
                            .to_owned()
                    };
                    vec![
                        text("name"),
                        text("role"),
                        text("status"),
                        grants(agent.get("vaults")),
                        text("created_at"),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NAME", "ROLE", "STATUS", "VAULTS", "CREATED"], &rows)
            );
        }
        AgentCommand::Rotate { name } => {
            let rotated = client.post(&format!("{}/rotate", agent_path(&name)), &json!({}))?;
            println!("{}", client::field(&rotated, "av_agent_token")?);
            eprintln!(
                "Rotated the token of agent {name}: the old one no longer works, and this one will not be shown again."
            );
        }
        AgentCommand::Revoke { name } => {
            client.delete(&agent_path(&name), None)?;
            println!("Revoked agent {name}: its token and the sessions it minted no longer work.");
        }
        AgentCommand::Rename { name, new_name } => {
            client.post(
                &format!("{}/rename", agent_path(&name)),
                &json!({ "name": new_name }),
            )?;
            println!("Renamed agent {name} to {new_name}.");
        }
        AgentCommand::Role { name, role } => {
            let changed = client.post(
                &format!("{}/role", agent_path(&name)),
                &json!({ "role": role }),
            )?;
            println!(
                "Agent {name} is now {} (was {}).",
                client::field(&changed, "new_role")?,
                client::field(&changed, "old_role")?
            );
        }
        AgentCommand::Delete { name, yes } => {
            confirm_or_yes(
                yes,
                &format!("Delete agent {name}?"),
                &format!("deleting agent {name}"),
            )?;
            client.post(&format!("{}/delete", agent_path(&name)), &json!({}))?;
            println!("Deleted agent {name}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_invite(client: &Client, args: InviteArgs) -> anyhow::Result<()> {
    match (args.command, args.name) {
        (Some(InviteCommand::List { status }), _) => {
            let path = match status {
                Some(status) => {
                    format!("/v1/agents/invites?status={}", client::query_value(&status))
                }
                None => "/v1/agents/invites".to_owned(),
            };
            let listed = client.get(&path)?;
            let rows: Vec<Vec<String>> = listed
                .get("invites")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|invite| {
                    let text = |field: &str| {
                        invite
                            .get(field)
                            .and_then(Value::as_str)
                            .unwrap_or("-")
                            .to_owned()
                    };
                    vec![
                        text("id"),
                        text("name"),
                        text("role"),
                        text("status"),
                        grants(invite.get("vaults")),
                        text("expires_at"),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["ID", "NAME", "ROLE", "STATUS", "VAULTS", "EXPIRES"],
                    &rows
                )
            );
        }
        (Some(InviteCommand::Revoke { id }), _) => {
            let revoked = client.delete(&format!("/v1/agents/invites/{}", segment(&id)), None)?;
            println!("{}", client::field(&revoked, "message")?);
        }
        (None, Some(name)) => {
            let vaults = args
                .vaults
                .iter()
                .map(|entry| vault_grant(entry, VaultRole::Proxy))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let ttl = super::vault_select::parse_duration(&args.ttl)?;
            let created = client.post(
                "/v1/agents/invites",
                &json!({ "name": name, "role": args.role, "vaults": vaults, "ttl_seconds": ttl }),
            )?;
            print!("{}", client::field(&created, "prompt")?);
            eprintln!(
                "Invited agent {name} ({}; vaults: {}). Paste the prompt above into the agent's chat: \
                 the link works once, until {}. Revoke it with: agent-vault agent invite revoke {}",
                args.role,
                grants(created.get("vaults")),
                client::field(&created, "expires_at")?,
                client::field(&created, "id")?,
            );
        }
        (None, None) => bail!("agent invite needs the agent's NAME (or list, revoke)"),
    }
    Ok(())
}

/// `NAME[:ROLE]` as `{vault_name, vault_role}`.
pub fn vault_grant(entry: &str, default: VaultRole) -> anyhow::Result<Value> {
    let (name, role) = match entry.split_once(':') {
        Some((name, role)) => {
            let role: VaultRole = role
                .parse()
                .map_err(|error| anyhow::anyhow!("--vault {entry}: the role {error}"))?;
            (name, role)
        }
        None => (entry, default),
    };
    if name.is_empty() {
        bail!("--vault {entry:?} must be NAME or NAME:ROLE");
    }
    Ok(json!({ "vault_name": name, "vault_role": role.as_str() }))
}

/// `[{vault_name, vault_role}]` as `team:proxy,default:member`, or `-`.
pub fn grants(vaults: Option<&Value>) -> String {
    let listed: Vec<String> = vaults
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|grant| {
            let text = |field: &str| grant.get(field).and_then(Value::as_str).unwrap_or("?");
            format!("{}:{}", text("vault_name"), text("vault_role"))
        })
        .collect();
    if listed.is_empty() {
        "-".to_owned()
    } else {
        listed.join(",")
    }
}
