//! `agent-vault owner config get | set`: the instance's settings, for owners
//! (`/v1/admin/settings`). Agent Vault's CLI has the same command for its own settings.
//!
//! One setting so far: `--agents-can-approve-proposals true|false` lets agents with the member
//! or admin role in a vault approve and reject other agents' proposals there (off by default;
//! no one ever decides on a proposal they made). Changing it takes an owner signed in as a
//! person.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Map, Value};

use super::client::{Client, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct OwnerArgs {
    #[command(subcommand)]
    command: OwnerCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum OwnerCommand {
    /// The instance's settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Show the instance's settings.
    Get,
    /// Change settings; those not given stay as they are.
    Set {
        /// Whether agents with the member or admin role in a vault may approve and reject
        /// other agents' proposals there.
        #[arg(long, value_name = "true|false")]
        agents_can_approve_proposals: Option<bool>,
    },
}

pub fn run(args: OwnerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::logged_in(&args.client)?;
    let OwnerCommand::Config(command) = args.command;
    let settings = match command {
        ConfigCommand::Get => client.get("/v1/admin/settings")?,
        ConfigCommand::Set {
            agents_can_approve_proposals,
        } => {
            let mut changes = Map::new();
            if let Some(allowed) = agents_can_approve_proposals {
                changes.insert("agents_can_approve_proposals".into(), allowed.into());
            }
            if changes.is_empty() {
                bail!("nothing to set: give --agents-can-approve-proposals true|false");
            }
            client.put("/v1/admin/settings", &Value::Object(changes))?
        }
    };
    print!("{}", settings_lines(&settings));
    Ok(ExitCode::SUCCESS)
}

/// `name: value` lines, one per setting, in the order the server gives them; the rate
/// limits by their profile (the console's instance page shows each tier).
fn settings_lines(settings: &Value) -> String {
    settings
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| match value["profile"].as_str() {
            Some(profile) => format!("{name}: {profile} profile (set when the server starts)\n"),
            None => format!("{name}: {value}\n"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::settings_lines;

    #[test]
    fn each_setting_is_one_line() {
        let settings = serde_json::json!({
            "agents_can_approve_proposals": false,
            "rate_limit": { "profile": "strict", "tiers": {}, "locked": true },
        });
        assert_eq!(
            settings_lines(&settings),
            "agents_can_approve_proposals: false\n\
             rate_limit: strict profile (set when the server starts)\n"
        );
    }
}
