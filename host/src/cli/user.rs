//! `agent-vault user list | invite`: the people of an instance. After the first owner,
//! people join by invite: `user invite` prints a one-time link, and the person redeems it
//! with `agent-vault auth accept-invite LINK`, choosing a password.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::agent::{grants, vault_grant};
use super::client::{self, Client, ClientArgs};
use super::table;
use crate::store::VaultRole;

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum UserCommand {
    /// List the instance's users (owners also see their vaults).
    List,
    /// Invite someone by email; prints the link they join with.
    Invite {
        email: String,
        /// Their instance role.
        #[arg(long, default_value = "member", value_parser = ["owner", "member", "no-access"])]
        role: String,
        /// A vault they join, with their role there (admin or member; default member).
        /// Repeatable.
        #[arg(long = "vault", value_name = "NAME[:ROLE]")]
        vaults: Vec<String>,
    },
}

pub fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let client = Client::logged_in(&args.client)?;
    match args.command {
        UserCommand::List => {
            let listed = client.get("/v1/users")?;
            let users: Vec<&Value> = listed
                .get("users")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            // Only owners are told each user's vaults.
            let with_vaults = users.iter().any(|user| user.get("vaults").is_some());
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|user| {
                    let text = |field: &str| {
                        user.get(field)
                            .and_then(Value::as_str)
                            .unwrap_or("-")
                            .to_owned()
                    };
                    let mut row = vec![text("email"), text("role")];
                    if with_vaults {
                        row.push(grants(user.get("vaults")));
                    }
                    row.push(text("created_at"));
                    row
                })
                .collect();
            let headers: &[&str] = if with_vaults {
                &["EMAIL", "ROLE", "VAULTS", "CREATED"]
            } else {
                &["EMAIL", "ROLE", "CREATED"]
            };
            print!("{}", table(headers, &rows));
        }
        UserCommand::Invite {
            email,
            role,
            vaults,
        } => {
            let vaults = vaults
                .iter()
                .map(|entry| vault_grant(entry, VaultRole::Member))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let invited = client.post(
                "/v1/users/invites",
                &json!({ "email": email, "role": role, "vaults": vaults }),
            )?;
            let link = client::field(&invited, "invite_link")?;
            println!("{link}");
            eprintln!(
                "Invited {} as {role} (vaults: {}); the link works once, until {}. They join with:\n  agent-vault auth accept-invite {link}",
                client::field(&invited, "email")?,
                grants(invited.get("vaults")),
                client::field(&invited, "expires_at")?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
