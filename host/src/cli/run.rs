//! `agent-vault vault run -- CMD...` and `agent-vault ca fetch`: unmodified agents behind the
//! transparent proxy.
//!
//! `vault run` gets a token for the child (a new vault session of `--ttl` for a logged-in
//! person; an agent's or a session's own token as it is), fetches the local CA, writes a
//! bundle of the system's roots, the user's own bundles and that CA (`ca_bundle.rs`, so
//! unrelated HTTPS keeps working), and then becomes CMD (`exec`), with the agent-vault
//! variables, the `HTTPS_PROXY` family and the CA-trust variables of common runtimes set.
//! Being the child rather than its parent, it passes on every signal and the exit code as
//! they are.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::ca_bundle;
use super::client::{self, Client, ClientArgs, query_value};
use super::vault_select::VaultSelect;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// How long the vault session made for the command works (people only; 5m to 7d).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    ttl: String,
    /// Print the agent guide (what the agent should know) before running the command.
    #[arg(long)]
    print_guide: bool,
    #[command(flatten)]
    vault: VaultSelect,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum CaCommand {
    /// Print the transparent proxy's CA certificate (PEM), or write it to a file.
    Fetch {
        /// Write it here instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// The local CA's PEM and the transparent proxy's port.
fn fetch_ca(client: &Client) -> anyhow::Result<(String, u16)> {
    let (headers, body) = client.get_raw("/v1/mitm/ca.pem")?;
    let pem = String::from_utf8(body.to_vec()).context("the CA is not text")?;
    if !pem.contains("BEGIN CERTIFICATE") {
        bail!("the server's answer is not a PEM certificate");
    }
    let port = headers
        .get("x-mitm-port")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .context("the server did not say its transparent proxy's port (X-MITM-Port)")?;
    Ok((pem, port))
}

pub fn run_ca(args: CaArgs) -> anyhow::Result<ExitCode> {
    let session = client::SessionFile::load(&args.client.data_dir()?)
        .ok()
        .flatten();
    let address = client::resolve_address(args.client.address.as_deref(), session.as_ref())?;
    let client = Client::anonymous(&address)?;
    match args.command {
        CaCommand::Fetch { output } => {
            let (pem, port) = fetch_ca(&client)?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &pem)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "Wrote the CA of the transparent proxy (port {port}) to {}.",
                        path.display()
                    );
                }
                None => print!("{pem}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: &ClientArgs, run_args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = Client::logged_in(args)?;
    let data_dir = args.data_dir()?;
    let vault = run_args.vault.resolve(&data_dir)?;
    let token = child_token(&client, &vault, &run_args)?;
    let address = client.address().to_owned();
    let mut env: Vec<(String, OsString)> = vec![
        ("AGENT_VAULT_ADDR".into(), address.clone().into()),
        ("AGENT_VAULT_TOKEN".into(), token.as_str().into()),
        ("AGENT_VAULT_SESSION_TOKEN".into(), token.as_str().into()),
        ("AGENT_VAULT_VAULT".into(), vault.clone().into()),
    ];
    match fetch_ca(&client) {
        Ok((pem, port)) => {
            let bundle = ca_bundle::write(&data_dir, &pem)?;
            let proxy_host = proxy_host(&address)?;
            let proxy = format!(
                "http://{}:{}@{proxy_host}:{port}",
                token.as_str(),
                query_value(&vault)
            );
            for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
                env.push((name.into(), proxy.clone().into()));
            }
            let no_proxy = no_proxy(&proxy_host);
            env.push(("NO_PROXY".into(), no_proxy.clone().into()));
            env.push(("no_proxy".into(), no_proxy.into()));
            env.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
            for name in ca_bundle::CA_VARIABLES {
                env.push((name.into(), bundle.clone().into()));
            }
        }
        Err(error) => eprintln!(
            "warning: the transparent proxy is not available ({error:#}); the command gets \
             only AGENT_VAULT_ADDR and its token, for {address}/proxy/..."
        ),
    }
    if run_args.print_guide {
        eprintln!("{}", crate::guide::agent_guide(&address));
    }
    let mut command = std::process::Command::new(&run_args.command[0]);
    command.args(&run_args.command[1..]);
    for (name, value) in env {
        command.env(name, value);
    }
    become_command(command, &run_args.command[0])
}

/// The token the child uses: a person's login makes a vault session for it; an agent's
/// token or a vault session is used as it is.
fn child_token(
    client: &Client,
    vault: &str,
    run_args: &RunArgs,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let me = client.get("/v1/auth/me")?;
    if me.get("type").and_then(Value::as_str) != Some("user") {
        let token = client::env_value(client::TOKEN_ENV)
            .context("an agent or vault token must come from AGENT_VAULT_TOKEN")?;
        return Ok(zeroize::Zeroizing::new(token));
    }
    let ttl = super::vault_select::parse_duration(&run_args.ttl)?;
    let label = format!(
        "vault run: {}",
        run_args.command[0]
            .to_string_lossy()
            .chars()
            .take(60)
            .collect::<String>()
    );
    let minted = client.post(
        "/v1/sessions",
        &json!({ "vault": vault, "ttl_seconds": ttl, "label": label }),
    )?;
    Ok(zeroize::Zeroizing::new(
        client::field(&minted, "token")?.to_owned(),
    ))
}

/// The host of the server's address, where the transparent proxy listens too.
fn proxy_host(address: &str) -> anyhow::Result<String> {
    let uri: http::Uri = address.parse().context("the server address")?;
    let host = uri.host().context("the server address has no host")?;
    Ok(host.to_owned())
}

/// The user's `NO_PROXY` entries, plus the local addresses and the proxy's own host.
fn no_proxy(proxy_host: &str) -> String {
    let existing = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    let mut entries: Vec<String> = existing
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect();
    for entry in ["localhost", "127.0.0.1", "::1", proxy_host] {
        if !entries.iter().any(|e| e == entry) {
            entries.push(entry.to_owned());
        }
    }
    entries.join(",")
}

/// Replace this process with `command` (Unix), so that signals and the exit status are the
/// command's own; elsewhere run it and pass its exit code on.
fn become_command(
    mut command: std::process::Command,
    program: &OsString,
) -> anyhow::Result<ExitCode> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let error = command.exec();
        bail!("cannot run {}: {error}", program.to_string_lossy());
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
        Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
    }
}
