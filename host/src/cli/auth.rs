//! `agent-vault auth register | login | logout | accept-invite`: get a login session on a
//! server and keep it in `<data-dir>/session.json` (0600) for the other commands; and
//! `agent-vault account whoami | change-password` for the account behind it.
//!
//! A sign-in's answer may carry a device token; it is kept in the same file (and kept by
//! `logout`) and sent with every later login and password change to that account, so that
//! other clients failing to sign in to it, local processes included, never hold this CLI
//! back.
//!
//! Passwords are prompted without echo (new ones twice), or read as one line of standard
//! input with `--password-stdin`. They go to the server and nowhere else.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::client::{self, Client, ClientArgs, SessionFile, segment};
use super::input;

/// What an invite token starts with.
const INVITE_PREFIX: &str = crate::auth::tokens::INVITE_PREFIX;

#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum AuthCommand {
    /// Create the instance's first account, its owner, and log in.
    Register(Credentials),
    /// Log in; the session is kept in <data-dir>/session.json.
    Login(Credentials),
    /// End the session on the server and forget it here.
    Logout,
    /// Your login sessions on the server (`list`, the default), or end one (`revoke ID`).
    Sessions {
        #[command(subcommand)]
        action: Option<SessionsAction>,
    },
    /// Join with an invite link (or its av_uinv_ token), choose a password, and log in.
    AcceptInvite {
        /// The link from `agent-vault user invite`, or the token at its end.
        #[arg(value_name = "TOKEN_OR_LINK")]
        invite: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum SessionsAction {
    /// List them, the one this CLI uses marked, and the device tokens of your clients.
    List,
    /// End the session with this ID (from `list`).
    Revoke { id: String },
    /// End the device token with this ID (from `list`); its client signs in as a new one.
    RevokeDevice { id: String },
}

#[derive(Debug, clap::Args)]
pub struct AccountArgs {
    #[command(subcommand)]
    command: AccountCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum AccountCommand {
    /// Who the session (or AGENT_VAULT_TOKEN) is.
    Whoami,
    /// Choose a new password; every other session of yours ends, this one is renewed.
    ChangePassword {
        /// Read the current password, then the new one, from the first two lines of
        /// standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Credentials {
    /// Your email [default: asked on the terminal].
    #[arg(long)]
    email: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

pub fn run(args: AuthArgs) -> anyhow::Result<ExitCode> {
    let client_args = &args.client;
    match args.command {
        AuthCommand::Register(credentials) => sign_in(client_args, &credentials, true),
        AuthCommand::Login(credentials) => sign_in(client_args, &credentials, false),
        AuthCommand::Logout => logout(client_args),
        AuthCommand::Sessions { action } => sessions(client_args, action),
        AuthCommand::AcceptInvite {
            invite,
            password_stdin,
        } => accept_invite(client_args, &invite, password_stdin),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// `auth register` (a new password, asked twice) or `auth login`.
fn sign_in(args: &ClientArgs, credentials: &Credentials, register: bool) -> anyhow::Result<()> {
    let data_dir = args.data_dir()?;
    let address = client::resolve_address(
        args.address.as_deref(),
        SessionFile::load(&data_dir)?.as_ref(),
    )?;
    let client = Client::anonymous(&address)?;
    let email = email(credentials)?;
    let password = match (credentials.password_stdin, register) {
        (true, _) => input::stdin_line()?,
        (false, true) => input::prompt_new_secret("Choose a password: ", false)?,
        (false, false) => input::prompt_secret("Password: ")?,
    };
    let (path, device_token) = if register {
        ("/v1/auth/register", None)
    } else {
        (
            "/v1/auth/login",
            SessionFile::device_token(&data_dir, client.address(), &email)?,
        )
    };
    let mut body = json!({ "email": email, "password": password.as_str() });
    if let Some(device_token) = &device_token {
        body["device_token"] = json!(device_token.as_str());
    }
    let answer = client.post(path, &body)?;
    let (session, role) = keep_session(client, &answer, &data_dir)?;
    let done = if register {
        "Registered and logged in"
    } else {
        "Logged in"
    };
    println!("{done} as {} ({role}).", session.email);
    Ok(())
}

fn logout(args: &ClientArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir()?;
    let Some(session) = SessionFile::load(&data_dir)? else {
        println!("Not logged in.");
        return Ok(());
    };
    // The session's own server, unless told otherwise: the token means nothing elsewhere.
    let address = match &args.address {
        Some(address) => client::normalize_address(address)?,
        None => session.address.clone(),
    };
    let client = Client::anonymous(&address)?.with_token(Zeroizing::new(session.token.clone()));
    let ended = client.post("/v1/auth/logout", &json!({}));
    SessionFile::remove(&data_dir)?;
    match ended {
        Ok(_) => println!("Logged out of {address}."),
        Err(error) => {
            println!("Forgot the session here.");
            eprintln!(
                "warning: the server did not end the session, which stays valid until it expires: {error}"
            );
        }
    }
    Ok(())
}

fn accept_invite(args: &ClientArgs, invite: &str, password_stdin: bool) -> anyhow::Result<()> {
    let data_dir = args.data_dir()?;
    let (token, link_address) = parse_invite(invite)?;
    let address = match (&args.address, link_address) {
        (None, Some(from_link)) => from_link,
        (flag, _) => {
            client::resolve_address(flag.as_deref(), SessionFile::load(&data_dir)?.as_ref())?
        }
    };
    let client = Client::anonymous(&address)?;
    let password = if password_stdin {
        input::stdin_line()?
    } else {
        input::prompt_new_secret("Choose a password: ", false)?
    };
    let answer = client.post(
        &format!("/v1/users/invites/{}/accept", segment(&token)),
        &json!({ "password": password.as_str() }),
    )?;
    let (session, role) = keep_session(client, &answer, &data_dir)?;
    println!("Joined as {} ({role}); logged in.", session.email);
    Ok(())
}

fn sessions(args: &ClientArgs, action: Option<SessionsAction>) -> anyhow::Result<()> {
    let client = Client::logged_in(args)?;
    match action.unwrap_or(SessionsAction::List) {
        SessionsAction::List => {
            let answer = client.get("/v1/auth/sessions")?;
            let rows: Vec<Vec<String>> = answer["sessions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|session| {
                    let text = |name: &str| session[name].as_str().unwrap_or("-").to_owned();
                    let current = if session["current"] == true { "*" } else { "" };
                    vec![
                        text("id"),
                        text("created_at"),
                        text("last_used_at"),
                        text("expires_at"),
                        current.to_owned(),
                    ]
                })
                .collect();
            print!(
                "{}",
                super::table(&["ID", "CREATED", "LAST USED", "EXPIRES", "THIS"], &rows)
            );
            let devices: Vec<Vec<String>> = answer["devices"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|device| {
                    let text = |name: &str| device[name].as_str().unwrap_or("-").to_owned();
                    vec![
                        text("id"),
                        text("created_at"),
                        text("last_used_at"),
                        text("expires_at"),
                    ]
                })
                .collect();
            if !devices.is_empty() {
                println!("\nDevice tokens (clients that signed in before):");
                print!(
                    "{}",
                    super::table(&["ID", "CREATED", "LAST USED", "EXPIRES"], &devices)
                );
            }
        }
        SessionsAction::Revoke { id } => {
            let answer = client.delete(&format!("/v1/auth/sessions/{}", segment(&id)), None)?;
            if answer["current"] == true {
                SessionFile::remove(&args.data_dir()?)?;
                println!("Ended session {id}, the one this CLI used; log in again.");
            } else {
                println!("Ended session {id}.");
            }
        }
        SessionsAction::RevokeDevice { id } => {
            client.delete(&format!("/v1/auth/devices/{}", segment(&id)), None)?;
            println!("Ended device token {id}.");
        }
    }
    Ok(())
}

pub fn run_account(args: AccountArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AccountCommand::Whoami => whoami(&args.client),
        AccountCommand::ChangePassword { password_stdin } => {
            change_password(&args.client, password_stdin)
        }
    }?;
    Ok(ExitCode::SUCCESS)
}

fn whoami(args: &ClientArgs) -> anyhow::Result<()> {
    let me = Client::logged_in(args)?.get("/v1/auth/me")?;
    let role = client::field(&me, "role").unwrap_or("-");
    match me["type"].as_str() {
        Some("user") => println!("{} ({role})", client::field(&me, "email")?),
        Some("agent") => println!("agent {} ({role})", client::field(&me, "agent_name")?),
        _ => println!(
            "a vault token of {} ({})",
            me["vault"].as_str().unwrap_or("-"),
            me["vault_role"].as_str().unwrap_or("-")
        ),
    }
    Ok(())
}

fn change_password(args: &ClientArgs, password_stdin: bool) -> anyhow::Result<()> {
    let data_dir = args.data_dir()?;
    let client = Client::logged_in(args)?;
    let (current, new) = if password_stdin {
        (input::stdin_line()?, input::stdin_line()?)
    } else {
        if !input::interactive() {
            bail!("pass --password-stdin (standard input is not a terminal to ask on)");
        }
        (
            input::prompt_secret("Current password: ")?,
            input::prompt_new_secret("New password: ", false)?,
        )
    };
    let mut body = json!({ "current_password": current.as_str(), "new_password": new.as_str() });
    if let Some(session) = SessionFile::load(&data_dir)?
        && let Some(device_token) =
            SessionFile::device_token(&data_dir, client.address(), &session.email)?
    {
        body["device_token"] = json!(device_token.as_str());
    }
    let answer = client.post("/v1/auth/change-password", &body)?;
    let (session, _) = keep_session(client, &answer, &data_dir)?;
    println!(
        "Password changed for {}; your other sessions have ended.",
        session.email
    );
    Ok(())
}

/// Keep the login session an answer carries (`token`) for the client's server, with its new
/// device token if it carries one; returns the session with the user's instance role.
fn keep_session(
    client: Client,
    answer: &Value,
    data_dir: &std::path::Path,
) -> anyhow::Result<(SessionFile, String)> {
    let token = client::field(answer, "token")?.to_owned();
    let client = client.with_token(Zeroizing::new(token.clone()));
    let me = client.get("/v1/auth/me")?;
    let session = SessionFile {
        token,
        address: client.address().to_owned(),
        email: client::field(&me, "email")?.to_owned(),
    };
    let device_token = answer.get("device_token").and_then(Value::as_str);
    session
        .save(data_dir, device_token)
        .context("keeping the session (you are logged in on the server, but not here)")?;
    Ok((session, client::field(&me, "role")?.to_owned()))
}

/// `--email`, else asked on the terminal.
fn email(credentials: &Credentials) -> anyhow::Result<String> {
    if let Some(email) = &credentials.email {
        return Ok(email.clone());
    }
    if credentials.password_stdin || !input::interactive() {
        bail!("pass --email (standard input is not a terminal to ask on)");
    }
    eprint!("Email: ");
    let email = input::stdin_line()?;
    if email.trim().is_empty() {
        bail!("no email given");
    }
    Ok(email.trim().to_owned())
}

/// The token of an invite link (`http://host:port/invite/av_uinv_...`) or of a bare token,
/// and the server the link points at.
fn parse_invite(invite: &str) -> anyhow::Result<(String, Option<String>)> {
    let invite = invite.trim();
    let without_extras = invite.split(['?', '#']).next().unwrap_or_default();
    let token = without_extras
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if !token.starts_with(INVITE_PREFIX) || token.len() == INVITE_PREFIX.len() {
        bail!(
            "{invite:?} is not an invite: expected the link from `agent-vault user invite` (ending in /invite/{INVITE_PREFIX}...) or its token"
        );
    }
    let address = match without_extras.split_once("/invite/") {
        Some((origin, _)) if origin.contains("://") => Some(client::normalize_address(origin)?),
        _ => None,
    };
    Ok((token.to_owned(), address))
}

#[cfg(test)]
mod tests {
    use super::parse_invite;

    #[test]
    fn invites_are_links_or_tokens() {
        assert_eq!(
            parse_invite("http://127.0.0.1:14321/invite/av_uinv_abc123").unwrap(),
            (
                "av_uinv_abc123".to_owned(),
                Some("http://127.0.0.1:14321".to_owned())
            )
        );
        assert_eq!(
            parse_invite("av_uinv_abc123").unwrap(),
            ("av_uinv_abc123".to_owned(), None)
        );
        assert!(parse_invite("http://127.0.0.1:14321/invite/").is_err());
        assert!(parse_invite("av_sess_abc").is_err());
    }
}
