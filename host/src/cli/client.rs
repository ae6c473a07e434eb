//! The CLI's side of the control plane: which server, which token, and a small JSON-over-HTTP
//! client for the `/v1` API.
//!
//! The token comes from `AGENT_VAULT_TOKEN` (agent mode, with `AGENT_VAULT_ADDR` as the
//! address), else from the session file `<data-dir>/session.json` that `auth register`,
//! `auth login` and `auth accept-invite` write. The same file keeps the device token each
//! sign-in was given, per server and account, and outlives the session (`auth logout`
//! keeps it): `auth login` sends it, so that other clients' failed sign-ins at the account
//! do not hold this one back. The address is `--address`, else
//! `AGENT_VAULT_ADDR`, else the session file's, else `http://127.0.0.1:14321`. Every
//! answer other than 2xx becomes a [`ClientError`] carrying the server's own message; the
//! commands print it once through `main.rs`. Start with [`Client::logged_in`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::{Zeroize as _, Zeroizing};

use super::data_dir_or_home;

/// The token of agent mode.
pub const TOKEN_ENV: &str = "AGENT_VAULT_TOKEN";
/// The server's address, for agents and for anyone not using the session's.
pub const ADDRESS_ENV: &str = "AGENT_VAULT_ADDR";
/// Where a server listens unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:14321";

const SESSION_FILE: &str = "session.json";
/// Device tokens kept at most, one per server and account; past it, the oldest go.
const MAX_DEVICE_TOKENS: usize = 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read from the server.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Bytes escaped in a path segment. `:`, `@` and `*` stay (service hosts use them); `/`
/// must not split the segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Bytes escaped in a query value.
const QUERY_VALUE: &AsciiSet = &SEGMENT.add(b'&').add(b'=').add(b'+');

/// The help heading of the options every command of a group takes.
pub const COMMON: &str = "Common options";

/// `--address` and `--data-dir`, accepted anywhere after the command group.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server [default: $AGENT_VAULT_ADDR, else the server you logged in to, else
    /// http://127.0.0.1:14321].
    #[arg(long, global = true, value_name = "URL", help_heading = COMMON)]
    pub address: Option<String>,
    /// Directory for the CLI's state: the session and the current vault.
    #[arg(
        long,
        global = true,
        env = "AGENT_VAULT_HOME",
        value_name = "DIR",
        help_heading = COMMON
    )]
    pub data_dir: Option<PathBuf>,
}

impl ClientArgs {
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        data_dir_or_home(self.data_dir.as_deref())
    }
}

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not logged in (run `agent-vault auth login`, or set AGENT_VAULT_TOKEN)")]
    NoSession,
    #[error("not logged in or session expired (run `agent-vault auth login`): {0}")]
    SessionRefused(String),
    #[error("the token in AGENT_VAULT_TOKEN was refused: {0}")]
    TokenRefused(String),
    #[error(
        "the server is not reachable at {address} ({reason}); start it with `agent-vault server`, \
         or point the CLI at it with --address or AGENT_VAULT_ADDR"
    )]
    Unreachable { address: String, reason: String },
    #[error("the server at {address} did not answer within {} seconds", REQUEST_TIMEOUT.as_secs())]
    Timeout { address: String },
    #[error("talking to {address}: {reason}")]
    Transport { address: String, reason: String },
    /// The server's `{"error": ...}` message, as it words it.
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    #[error("the server at {address} answered {status} with something other than JSON")]
    NotJson { address: String, status: StatusCode },
}

/// The login session `<data-dir>/session.json` holds: a session on one server.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionFile {
    pub token: String,
    pub address: String,
    pub email: String,
}

impl std::fmt::Debug for SessionFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFile")
            .field("address", &self.address)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Drop for SessionFile {
    fn drop(&mut self) {
        self.token.zeroize();
    }
}

/// A device token a sign-in gave this CLI, for one account on one server.
#[derive(Clone, Serialize, Deserialize)]
struct DeviceToken {
    address: String,
    /// Lower case, as the server keeps emails.
    email: String,
    token: String,
}

impl DeviceToken {
    fn is_for(&self, address: &str, email: &str) -> bool {
        self.address == address && self.email.eq_ignore_ascii_case(email.trim())
    }
}

impl Drop for DeviceToken {
    fn drop(&mut self) {
        self.token.zeroize();
    }
}

/// Everything `<data-dir>/session.json` holds: the login session, while there is one, and
/// the device tokens, which outlive it.
#[derive(Default, Serialize, Deserialize)]
struct Contents {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    device_tokens: Vec<DeviceToken>,
}

impl Drop for Contents {
    fn drop(&mut self) {
        if let Some(token) = &mut self.token {
            token.zeroize();
        }
    }
}

impl Contents {
    fn read(data_dir: &Path) -> anyhow::Result<Contents> {
        let path = data_dir.join(SESSION_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => Zeroizing::new(text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Contents::default());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", path.display()));
            }
        };
        serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is damaged; delete it and run `agent-vault auth login`",
                path.display()
            )
        })
    }

    /// Write the file (0600, in a 0700 directory), or remove it when it would hold nothing.
    fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        if self.token.is_none() && self.device_tokens.is_empty() {
            let path = data_dir.join(SESSION_FILE);
            return match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(error).with_context(|| format!("removing {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let json = Zeroizing::new(serde_json::to_vec_pretty(self).expect("plain data"));
        write_private(data_dir, SESSION_FILE, &json)
    }

    fn session(&self) -> Option<SessionFile> {
        Some(SessionFile {
            token: self.token.clone()?,
            address: self.address.clone()?,
            email: self.email.clone()?,
        })
    }
}

impl SessionFile {
    /// The session in `data_dir`, if any.
    pub fn load(data_dir: &Path) -> anyhow::Result<Option<SessionFile>> {
        Ok(Contents::read(data_dir)?.session())
    }

    /// Write the session (0600, in a 0700 directory), replacing any other, with the device
    /// token the sign-in gave, if it gave one; other device tokens stay.
    pub fn save(&self, data_dir: &Path, device_token: Option<&str>) -> anyhow::Result<()> {
        let mut contents = Contents::read(data_dir)?;
        contents.token = Some(self.token.clone());
        contents.address = Some(self.address.clone());
        contents.email = Some(self.email.clone());
        if let Some(token) = device_token {
            contents
                .device_tokens
                .retain(|device| !device.is_for(&self.address, &self.email));
            contents.device_tokens.push(DeviceToken {
                address: self.address.clone(),
                email: self.email.to_ascii_lowercase(),
                token: token.to_owned(),
            });
            let excess = contents
                .device_tokens
                .len()
                .saturating_sub(MAX_DEVICE_TOKENS);
            contents.device_tokens.drain(..excess);
        }
        contents.write(data_dir)
    }

    /// Forget the session, keeping the device tokens; whether there was one.
    pub fn remove(data_dir: &Path) -> anyhow::Result<bool> {
        let mut contents = Contents::read(data_dir)?;
        let had = contents.token.is_some();
        contents.token = None;
        contents.address = None;
        contents.email = None;
        contents.write(data_dir)?;
        Ok(had)
    }

    /// The device token kept for the account `email` on the server at `address`.
    pub fn device_token(
        data_dir: &Path,
        address: &str,
        email: &str,
    ) -> anyhow::Result<Option<Zeroizing<String>>> {
        Ok(Contents::read(data_dir)?
            .device_tokens
            .iter()
            .find(|device| device.is_for(address, email))
            .map(|device| Zeroizing::new(device.token.clone())))
    }
}

/// Write `name` in `data_dir` (created 0700) with mode 0600, atomically.
pub fn write_private(data_dir: &Path, name: &str, contents: &[u8]) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(name);
    // One temporary file per process: two commands writing the same file at once each
    // rename a whole one into place.
    let temporary = data_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&temporary);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Whether the CLI runs as an agent: `AGENT_VAULT_TOKEN` is set.
pub fn agent_mode() -> bool {
    env_value(TOKEN_ENV).is_some()
}

/// A non-empty environment variable.
pub fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The server to talk to: `flag`, else `AGENT_VAULT_ADDR`, else the session's, else the
/// default.
pub fn resolve_address(
    flag: Option<&str>,
    session: Option<&SessionFile>,
) -> anyhow::Result<String> {
    let chosen = flag
        .map(str::to_owned)
        .or_else(|| env_value(ADDRESS_ENV))
        .or_else(|| session.map(|session| session.address.clone()))
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
    normalize_address(&chosen)
}

/// `http://host:port[/base-path]` from what a person typed (`host:port`, a trailing `/`).
/// A path is the server's base path (`--base-path`), behind a reverse proxy: every call
/// goes below it.
pub fn normalize_address(address: &str) -> anyhow::Result<String> {
    let trimmed = address.trim().trim_end_matches('/');
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let uri: http::Uri = with_scheme.parse().map_err(|_| {
        anyhow::anyhow!("{address:?} is not a server address like http://127.0.0.1:14321")
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => anyhow::bail!(
            "{address}: the CLI talks plain HTTP to the server; use an http:// address (or a local TLS terminator)"
        ),
        _ => anyhow::bail!("{address:?} is not a server address like http://127.0.0.1:14321"),
    }
    if uri.authority().is_none() || uri.query().is_some() || with_scheme.contains('#') {
        anyhow::bail!("{address:?} is not a server address like http://127.0.0.1:14321");
    }
    if let Err(error) = crate::public_url::BasePath::parse(uri.path()) {
        anyhow::bail!(
            "{address:?}: the path after the server's address is its base path, and {error}"
        );
    }
    Ok(with_scheme)
}

/// `text` as one path segment.
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// `text` as a query value.
pub fn query_value(text: &str) -> String {
    utf8_percent_encode(text, QUERY_VALUE).to_string()
}

/// A JSON client for one server, with or without a token.
pub struct Client {
    address: String,
    token: Option<Zeroizing<String>>,
    /// The token came from `AGENT_VAULT_TOKEN`.
    agent_mode: bool,
    runtime: tokio::runtime::Runtime,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("agent_mode", &self.agent_mode)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `address` without a token (registering, logging in, accepting invites).
    pub fn anonymous(address: &str) -> anyhow::Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http = HttpClient::builder(TokioExecutor::new()).build(connector);
        Ok(Client {
            address: normalize_address(address)?,
            token: None,
            agent_mode: false,
            runtime,
            http,
        })
    }

    /// A client with the caller's token: `AGENT_VAULT_TOKEN`, else the session file.
    pub fn logged_in(args: &ClientArgs) -> anyhow::Result<Client> {
        if let Some(token) = env_value(TOKEN_ENV) {
            let address = resolve_address(args.address.as_deref(), None)?;
            let mut client = Client::anonymous(&address)?.with_token(Zeroizing::new(token));
            client.agent_mode = true;
            return Ok(client);
        }
        let session = SessionFile::load(&args.data_dir()?)?.ok_or(ClientError::NoSession)?;
        let address = resolve_address(args.address.as_deref(), Some(&session))?;
        Ok(Client::anonymous(&address)?.with_token(Zeroizing::new(session.token.clone())))
    }

    /// The same server, with `token`.
    pub fn with_token(mut self, token: Zeroizing<String>) -> Client {
        self.token = Some(token);
        self
    }

    /// `http://host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::POST, path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::PUT, path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::PATCH, path, Some(body))
    }

    pub fn delete(&self, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        self.send(Method::DELETE, path, body)
    }

    /// A GET whose answer is not JSON: the headers and the body of a 2xx answer.
    pub fn get_raw(&self, path: &str) -> Result<(http::HeaderMap, Bytes), ClientError> {
        let (status, headers, body) = self.exchange(Method::GET, path, None)?;
        if status.is_success() {
            return Ok((headers, body));
        }
        Err(self.refusal(status, &body))
    }

    /// One request; the JSON of a 2xx answer, else the server's message as an error.
    fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let (status, _, body) = self.exchange(method, path, body)?;
        if status.is_success() {
            if body.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body).map_err(|_| ClientError::NotJson {
                address: self.address.clone(),
                status,
            });
        }
        Err(self.refusal(status, &body))
    }

    /// The error for a non-2xx answer, with the server's own message.
    fn refusal(&self, status: StatusCode, body: &[u8]) -> ClientError {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let message = json
            .as_ref()
            .map(describe_error)
            .unwrap_or_else(|| format!("the server answered {status}"));
        match (status, &self.token, self.agent_mode) {
            (StatusCode::UNAUTHORIZED, Some(_), true) => ClientError::TokenRefused(message),
            (StatusCode::UNAUTHORIZED, Some(_), false) => ClientError::SessionRefused(message),
            _ => ClientError::Api { status, message },
        }
    }

    /// One request; the status, headers and body.
    fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), ClientError> {
        let transport = |reason: String| ClientError::Transport {
            address: self.address.clone(),
            reason,
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.address))
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("agent-vault-cli/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.as_str())).map_err(|_| {
                    transport("the token contains characters a header cannot carry".into())
                })?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        let bytes = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(body).expect("JSON values serialize"))
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|error| transport(error.to_string()))?;
        self.runtime.block_on(async {
            let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
                .await
                .map_err(|_| ClientError::Timeout {
                    address: self.address.clone(),
                })?
                .map_err(|error| self.request_failed(&error))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = tokio::time::timeout(
                REQUEST_TIMEOUT,
                Limited::new(response.into_body(), MAX_RESPONSE).collect(),
            )
            .await
            .map_err(|_| ClientError::Timeout {
                address: self.address.clone(),
            })?
            .map_err(|error| transport(format!("reading the answer: {error}")))?
            .to_bytes();
            Ok::<_, ClientError>((status, headers, body))
        })
    }

    fn request_failed(&self, error: &hyper_util::client::legacy::Error) -> ClientError {
        let reason = innermost(error);
        if error.is_connect() {
            ClientError::Unreachable {
                address: self.address.clone(),
                reason,
            }
        } else {
            ClientError::Transport {
                address: self.address.clone(),
                reason,
            }
        }
    }
}

/// The server's message, with the candidates it lists when a name is ambiguous.
fn describe_error(body: &Value) -> String {
    let mut message = match body.get("error").and_then(Value::as_str) {
        Some(error) => error.to_owned(),
        None => body.to_string(),
    };
    if let Some(candidates) = body.get("candidates").and_then(Value::as_array) {
        let listed: Vec<String> = candidates
            .iter()
            .map(|candidate| {
                let text =
                    |field: &str| candidate.get(field).and_then(Value::as_str).unwrap_or("?");
                format!("{} ({})", text("name"), text("host"))
            })
            .collect();
        message.push_str(&format!(" (candidates: {})", listed.join(", ")));
    }
    message
}

/// The deepest cause of an error: "connection refused" rather than "client error (Connect)".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    if let Some(io) = cause.downcast_ref::<std::io::Error>()
        && io.kind() == std::io::ErrorKind::ConnectionRefused
    {
        return "connection refused".to_owned();
    }
    cause.to_string()
}

/// A string field of an answer, or an error naming what the server left out.
pub fn field<'a>(answer: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    answer.get(name).and_then(Value::as_str).ok_or_else(|| {
        anyhow::anyhow!(
            "the server's answer has no {name:?}; is it an agent-vault server of the same version?"
        )
    })
}

#[cfg(test)]
mod tests;
