//! `agent-vault server`: open the store, unlock (or on first start set up) the master key,
//! and run the server.
//!
//! The master password comes from `AGENT_VAULT_MASTER_PASSWORD` (the server starts itself
//! again without it in its environment), the file `--master-password-file` names,
//! `--password-stdin`, or a prompt. A new instance can instead run `--passwordless`, which
//! stores the data key unencrypted and says so. Before any of that the process is made
//! undumpable (`process.rs`).
//!
//! One server runs per data directory (`pidfile.rs`); `-d` runs it in the background and
//! `server stop` stops it (`background.rs`). The store is SQLite in the data directory, or
//! the PostgreSQL database `--database-url` (`DATABASE_URL`) names, which replicas share.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use zeroize::Zeroizing;

use super::background;
use super::input;
use super::logging::{self, LogFormat};
use super::pidfile::PidFile;
use super::process::{self, MASTER_PASSWORD_ENV, MASTER_PASSWORD_FILE_ENV};
use super::{DataDirArgs, data_dir_or_home};
use crate::accept::ConnectionLimits;
use crate::master_key::{self, MasterKeyError, PASSWORDLESS_WARNING};
use crate::metrics::endpoint::MetricsSettings;
use crate::proxy::ProxySettings;
use crate::public_url::BasePath;
use crate::ratelimit::RateLimits;
use crate::server::{self, LogRetention, ServerConfig};
use crate::store::Store;
use crate::store::postgres::{PostgresStore, redact_url};
use crate::store::sqlite::SqliteStore;
use crate::upstream::{EgressProxy, NoProxy, ResolvePin, UpstreamSettings, load_ca_file};
use crate::vault::crypto::{DataKey, KdfParams};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    action: Option<ServerAction>,
    /// Run in the background: return once the server answers, its output appended to
    /// `<data-dir>/server.log` (stop it with `agent-vault server stop`).
    #[arg(long, short = 'd')]
    detach: bool,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of the control plane (0 picks a free one).
    #[arg(long, short = 'p', default_value_t = 14321, env = "PORT")]
    port: u16,
    /// Port of the transparent proxy (HTTPS_PROXY): a number, 0 to turn it off, or `auto`
    /// for a free one.
    #[arg(
        long,
        default_value = "14322",
        env = "AGENT_VAULT_MITM_PORT",
        value_name = "PORT"
    )]
    mitm_port: MitmPort,
    /// The database: a `postgres://` URL for PostgreSQL, which replicas share (TLS as its
    /// `sslmode` says, verified); without it, SQLite in the data directory. Prefer the
    /// environment variable: other users can read a command line.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    database_url: Option<String>,
    /// Read the master password from this file (one trailing line break is removed): a
    /// systemd credential (`${CREDENTIALS_DIRECTORY}/master-password`), a mounted Secret.
    /// Without it, the file `AGENT_VAULT_MASTER_PASSWORD_FILE` names, if set and not empty.
    #[arg(long, value_name = "FILE")]
    master_password_file: Option<std::path::PathBuf>,
    /// Read the master password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Set up a new instance without a master password (the data key is stored unencrypted).
    #[arg(long)]
    passwordless: bool,
    /// Allow services for localhost, IP addresses and other internal hosts.
    #[arg(long, env = "AGENT_VAULT_DEV_MODE")]
    dev_mode: bool,
    /// Delete request-log entries older than this many hours.
    #[arg(long, default_value_t = 168, env = "AGENT_VAULT_LOGS_MAX_AGE_HOURS")]
    logs_max_age_hours: u64,
    /// Keep at most this many request-log entries per vault (0: no cap).
    #[arg(
        long,
        default_value_t = 10_000,
        env = "AGENT_VAULT_LOGS_MAX_ROWS_PER_VAULT"
    )]
    logs_max_rows_per_vault: u32,
    /// Trust this CA (PEM) for upstreams too, on top of the public roots (repeatable).
    #[arg(long = "upstream-ca", value_name = "FILE")]
    upstream_ca: Vec<std::path::PathBuf>,
    /// Connect to ADDR for HOST:PORT without DNS, like curl (repeatable).
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    resolve: Vec<ResolvePin>,
    /// Upstream addresses allowed although private, loopback or otherwise internal: comma-
    /// separated CIDRs or addresses. Cloud metadata addresses stay refused.
    #[arg(
        long,
        env = "AGENT_VAULT_NETWORK_ALLOWLIST",
        value_name = "CIDRS",
        default_value = ""
    )]
    network_allowlist: String,
    /// Allow upstreams on private networks, loopback, link-local and shared (CGNAT) addresses,
    /// as if those ranges were in the network allowlist. Cloud metadata stays refused.
    #[arg(long, env = "AGENT_VAULT_ALLOW_PRIVATE_RANGES")]
    allow_private_ranges: bool,
    /// Send every upstream connection through this outbound HTTP proxy, as a CONNECT tunnel:
    /// `http://HOST:PORT`, or `http://USER:PASSWORD@HOST:PORT` for basic auth. Credentials
    /// only in the environment variable or --egress-proxy-file: other users can read a
    /// command line.
    #[arg(
        long,
        env = "AGENT_VAULT_EGRESS_PROXY",
        hide_env_values = true,
        value_name = "URL",
        conflicts_with = "egress_proxy_file"
    )]
    egress_proxy: Option<String>,
    /// Read the --egress-proxy URL from the first line of this file.
    #[arg(long, env = "AGENT_VAULT_EGRESS_PROXY_FILE", value_name = "FILE")]
    egress_proxy_file: Option<std::path::PathBuf>,
    /// Hosts reached without the egress proxy, in NO_PROXY syntax: comma-separated host
    /// names (with their subdomains), .suffixes, IP addresses, CIDRs, or * for all.
    #[arg(
        long,
        env = "AGENT_VAULT_NO_EGRESS_PROXY",
        value_name = "LIST",
        default_value = ""
    )]
    no_egress_proxy: String,
    /// Seconds to wait for an upstream's response headers once it has the whole request.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    upstream_timeout: u64,
    /// The largest request body the proxy forwards (413 beyond).
    #[arg(long, default_value_t = 1024 * 1024 * 1024, env = "AGENT_VAULT_MAX_REQUEST_BYTES")]
    max_request_bytes: u64,
    /// The largest response body the proxy relays (0: no limit).
    #[arg(long, default_value_t = 0, env = "AGENT_VAULT_MAX_RESPONSE_BYTES")]
    max_response_bytes: u64,
    /// Proxy rate limits: default, strict, loose or off.
    #[arg(long, default_value = "default", env = "AGENT_VAULT_RATELIMIT_PROFILE")]
    rate_limit_profile: String,
    /// Seconds to let requests in flight finish on SIGTERM or SIGINT (a long streamed answer
    /// may need more) before stopping anyway.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECONDS",
        env = "AGENT_VAULT_SHUTDOWN_GRACE"
    )]
    shutdown_grace: u64,
    /// The longest deadline, in milliseconds, a plugin's `NAME.toml` may give it (`timeout-ms`;
    /// more is cut to this, with a warning). At most 10000.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "MS",
        env = "AGENT_VAULT_PLUGIN_TIMEOUT_CEILING_MS",
        value_parser = clap::value_parser!(u64).range(1..=10_000)
    )]
    plugin_timeout_ceiling_ms: u64,
    /// Seconds a client may take to send a request head (and, inside a tunnel, its TLS
    /// handshake); also how long a kept-alive connection may wait for its next request.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECONDS",
        env = "AGENT_VAULT_HEADER_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    header_timeout: u64,
    /// Open connections per listener; past it a new connection gets 503 [default: 4096, or
    /// fewer if the file-descriptor limit cannot hold that many].
    #[arg(
        long,
        value_name = "N",
        env = "AGENT_VAULT_MAX_CONNECTIONS",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    max_connections: Option<usize>,
    /// Open connections per client address on each listener, 0 for no cap; past it a new
    /// connection gets 429. Proxies in --trusted-proxies are not capped.
    #[arg(
        long,
        default_value_t = crate::accept::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        value_name = "N",
        env = "AGENT_VAULT_MAX_CONNECTIONS_PER_ADDRESS"
    )]
    max_connections_per_address: usize,
    /// Reverse proxies in front of the server whose `X-Forwarded-For` names the client, for
    /// the per-address attempt limits: comma-separated CIDRs or addresses. Trust only
    /// proxies that append to the header.
    #[arg(
        long,
        env = "AGENT_VAULT_TRUSTED_PROXIES",
        value_name = "CIDRS",
        default_value = ""
    )]
    trusted_proxies: String,
    /// Serve everything under this path (`/agent-vault`: the API, the approval page,
    /// `/proxy`, `/discover`), for a reverse proxy that forwards that path unchanged;
    /// anything outside it is 404. Links carry it.
    #[arg(
        long,
        env = "AGENT_VAULT_BASE_PATH",
        value_name = "PATH",
        default_value = ""
    )]
    base_path: String,
    /// How much the server logs: error, warn, info or debug (debug adds a `proxy_request`
    /// line per proxied request, with the request log's metadata). `AGENT_VAULT_LOG`, a full
    /// tracing filter, overrides it.
    #[arg(
        long,
        env = "AGENT_VAULT_LOG_LEVEL",
        default_value = "info",
        value_parser = ["error", "warn", "info", "debug"]
    )]
    log_level: String,
    /// How each log line is written: `text` for people, or `json`, one object per line with
    /// stable keys (`docs/deploy.md`).
    #[arg(
        long,
        env = "AGENT_VAULT_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    /// Serve `/metrics` on this address, a listener of its own, rather than on the control
    /// plane.
    #[arg(long, env = "AGENT_VAULT_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// A file holding the bearer token `/metrics` requires (without one, only loopback
    /// clients may scrape). `AGENT_VAULT_METRICS_TOKEN` gives the token itself.
    #[arg(long, value_name = "PATH")]
    metrics_token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    dirs: DataDirArgs,
}

/// The environment variable holding the metrics token itself.
const METRICS_TOKEN_ENV: &str = "AGENT_VAULT_METRICS_TOKEN";

#[derive(Debug, clap::Subcommand)]
enum ServerAction {
    /// Stop the server running with this data directory (SIGTERM: requests in flight
    /// finish), and wait until it has exited.
    Stop(StopArgs),
}

#[derive(Debug, clap::Args)]
struct StopArgs {
    /// Directory of the server's state.
    #[arg(long, env = "AGENT_VAULT_HOME", value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// Seconds to wait for the server to exit.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    timeout: u64,
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    if let Some(ServerAction::Stop(stop)) = &args.action {
        let data_dir = data_dir_or_home(stop.data_dir.as_deref())?;
        return background::stop(&data_dir, Duration::from_secs(stop.timeout));
    }
    // First, before anything reads the environment or starts a thread: a password in the
    // environment is handed to this server started again without it.
    process::restart_without_password_env()?;
    logging::init(&args.log_level, args.log_format);
    process::forbid_dumps();
    process::raise_fd_limit();
    // The variable is read here rather than by clap, which would refuse it set but empty
    // (the same as unset, as for the password variable).
    let password_file = args
        .master_password_file
        .clone()
        .or_else(|| std::env::var_os(MASTER_PASSWORD_FILE_ENV).map(Into::into));
    let env_password = process::given_password(password_file.as_deref())?;
    // Flags first: a mistyped one must not set up a new instance on its way to failing.
    let mut allowlist = parse_allowlist(&args.network_allowlist)?;
    if args.allow_private_ranges {
        allowlist.extend(crate::upstream::netguard::private_ranges());
    }
    let trusted_proxies = crate::client_addr::parse(&args.trusted_proxies)
        .map_err(|message| anyhow::anyhow!("--trusted-proxies: {message}"))?;
    let base_path = BasePath::parse(&args.base_path).context("--base-path")?;
    let rate_limits = RateLimits::profile(&args.rate_limit_profile)
        .map_err(|message| anyhow::anyhow!("--rate-limit-profile: {message}"))?;
    let rate_limits = with_rate_limit_overrides(rate_limits)?;
    let egress_proxy = egress_proxy(&args)?;
    let metrics_token = metrics_token(args.metrics_token_file.as_deref())?;
    let mut upstream = UpstreamSettings {
        resolve: args.resolve.clone(),
        allowlist,
        egress_proxy,
        response_header_timeout: Duration::from_secs(args.upstream_timeout.max(1)),
        ..UpstreamSettings::default()
    };
    for file in &args.upstream_ca {
        upstream.extra_roots.extend(load_ca_file(file)?);
    }
    let data_dir = args.dirs.data_dir()?;
    let detach = args.detach && !background::is_detached_child();
    // Held while the server runs. Taken here, before the password is asked for, so that a
    // second start on a data directory in use stops at once with the pid of the first.
    let pid_file = PidFile::acquire(&data_dir)?;
    let (store, database): (Arc<dyn Store>, String) = match &args.database_url {
        Some(url) => (
            Arc::new(PostgresStore::open(url).context("opening the database")?),
            redact_url(url),
        ),
        None => {
            let path = server::database_path(&data_dir);
            let store = SqliteStore::open(&path)
                .with_context(|| format!("opening the database in {}", data_dir.display()))?;
            (Arc::new(store), path.display().to_string())
        }
    };
    let (data_key, password) = unlock_or_set_up(store.as_ref(), &database, &args, env_password)?;
    if detach {
        // The background server takes the data directory over.
        drop((data_key, store, pid_file));
        return background::start(&data_dir, password);
    }
    drop(password);
    let config = ServerConfig {
        listen: SocketAddr::new(args.host, args.port),
        transparent_listen: match args.mitm_port {
            MitmPort::Off => None,
            MitmPort::Port(port) => Some(SocketAddr::new(args.host, port)),
            MitmPort::Auto => Some(SocketAddr::new(args.host, 0)),
        },
        plugin_dir: args.dirs.plugin_dir()?,
        cache_dir: args.dirs.cache_dir()?,
        data_dir,
        base_url: base_url(
            std::env::var("AGENT_VAULT_ADDR").ok(),
            std::env::var("FLY_APP_NAME").ok(),
        ),
        base_path,
        dev_mode: args.dev_mode,
        log_retention: LogRetention {
            max_age: Duration::from_secs(args.logs_max_age_hours * 3600),
            max_rows_per_vault: args.logs_max_rows_per_vault,
        },
        upstream,
        proxy: ProxySettings {
            max_request_bytes: args.max_request_bytes,
            max_response_bytes: (args.max_response_bytes > 0).then_some(args.max_response_bytes),
            ..ProxySettings::default()
        },
        rate_limits,
        rate_limit_profile: args.rate_limit_profile.clone(),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        trusted_proxies,
        plugin_timeout_ceiling: Duration::from_millis(args.plugin_timeout_ceiling_ms),
        connections: ConnectionLimits {
            header_timeout: Duration::from_secs(args.header_timeout),
            max_connections: args.max_connections,
            max_connections_per_address: Some(args.max_connections_per_address)
                .filter(|cap| *cap > 0),
        },
        metrics: MetricsSettings {
            listen: args.metrics_addr,
            token: metrics_token,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = server::shutdown_signal().context("installing the signal handlers")?;
        server::run(config, store, data_key, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The token `/metrics` requires: the first line of `file`, or `AGENT_VAULT_METRICS_TOKEN`;
/// not both, and not empty.
fn metrics_token(file: Option<&std::path::Path>) -> anyhow::Result<Option<Zeroizing<String>>> {
    let from_env = std::env::var_os(METRICS_TOKEN_ENV);
    let token = match (file, from_env) {
        (Some(_), Some(_)) => {
            bail!("give the metrics token once: --metrics-token-file or {METRICS_TOKEN_ENV}")
        }
        (Some(file), None) => {
            let text = Zeroizing::new(std::fs::read_to_string(file).with_context(|| {
                format!("--metrics-token-file: cannot read {}", file.display())
            })?);
            Zeroizing::new(text.lines().next().unwrap_or("").trim().to_owned())
        }
        (None, Some(value)) => Zeroizing::new(
            value
                .into_string()
                .map_err(|_| anyhow::anyhow!("{METRICS_TOKEN_ENV} is not valid UTF-8"))?
                .trim()
                .to_owned(),
        ),
        (None, None) => return Ok(None),
    };
    if token.is_empty() {
        bail!("the metrics token is empty (--metrics-token-file or {METRICS_TOKEN_ENV})");
    }
    Ok(Some(token))
}

/// `--mitm-port`: off, a port, or a free one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MitmPort {
    Off,
    Port(u16),
    Auto,
}

impl std::str::FromStr for MitmPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(MitmPort::Auto),
            "0" => Ok(MitmPort::Off),
            port => port
                .parse::<u16>()
                .map(MitmPort::Port)
                .map_err(|_| format!("{port:?} is not a port: use 1 to 65535, 0 (off) or auto")),
        }
    }
}

/// The data key, and the master password that opened it (`None` for a passwordless
/// instance), which a background server needs too. `database` names the store in messages.
fn unlock_or_set_up(
    store: &dyn Store,
    database: &str,
    args: &ServerArgs,
    env_password: Option<Zeroizing<String>>,
) -> anyhow::Result<(DataKey, Option<Zeroizing<String>>)> {
    let given = match (env_password, args.password_stdin) {
        (Some(password), _) => Some(password),
        (None, true) => Some(input::stdin_line()?),
        (None, false) => None,
    };
    match master_key::state(store)? {
        None => set_up(store, database, args, given),
        Some(false) => {
            tracing::warn!("{PASSWORDLESS_WARNING}");
            Ok((master_key::unlock(store, None)?, None))
        }
        Some(true) => unlock(store, database, given),
    }
}

fn set_up(
    store: &dyn Store,
    database: &str,
    args: &ServerArgs,
    given: Option<Zeroizing<String>>,
) -> anyhow::Result<(DataKey, Option<Zeroizing<String>>)> {
    if args.passwordless && given.is_some() {
        bail!("--passwordless and a master password were both given; choose one");
    }
    let password = match given {
        Some(password) => Some(password),
        None if args.passwordless => None,
        None if input::interactive() => {
            eprintln!("Setting up a new agent-vault in {database}.");
            eprintln!("Choose a master password: it protects every credential stored here.");
            let chosen = input::prompt_new_secret("Master password (empty for none): ", true)?;
            if chosen.is_empty() {
                eprintln!("Without a master password, {PASSWORDLESS_WARNING}.");
                if !input::confirm("Continue without a master password?")? {
                    bail!("no master password chosen; start again");
                }
                None
            } else {
                Some(chosen)
            }
        }
        None => bail!(
            "this is a new instance and no master password was given: set {MASTER_PASSWORD_ENV} \
             or {MASTER_PASSWORD_FILE_ENV}, pass --password-stdin, or start with --passwordless \
             ({PASSWORDLESS_WARNING})"
        ),
    };
    if password.is_none() {
        tracing::warn!("{PASSWORDLESS_WARNING}");
    }
    let data_key = master_key::initialize(
        store,
        password.as_deref().map(String::as_str),
        KdfParams::default(),
    )?;
    Ok((data_key, password))
}

fn unlock(
    store: &dyn Store,
    database: &str,
    given: Option<Zeroizing<String>>,
) -> anyhow::Result<(DataKey, Option<Zeroizing<String>>)> {
    if let Some(password) = given {
        let unlocked = master_key::unlock(store, Some(&password)).map_err(|error| match error {
            MasterKeyError::WrongPassword => anyhow::anyhow!(
                "wrong master password: give the one chosen when {database} was set up \
                 ({MASTER_PASSWORD_ENV} or --password-stdin)"
            ),
            other => other.into(),
        })?;
        return Ok((unlocked, Some(password)));
    }
    if !input::interactive() {
        bail!(
            "{}: set {MASTER_PASSWORD_ENV} or {MASTER_PASSWORD_FILE_ENV}, or pass --password-stdin",
            MasterKeyError::PasswordRequired
        );
    }
    for attempt in 1..=3 {
        let password = input::prompt_secret("Master password: ")?;
        match master_key::unlock(store, Some(&password)) {
            Ok(data_key) => return Ok((data_key, Some(password))),
            Err(MasterKeyError::WrongPassword) if attempt < 3 => {
                eprintln!("Wrong master password; try again.")
            }
            Err(error) => return Err(error.into()),
        }
    }
    unreachable!("the third attempt returns")
}

/// The profile's limits with the `AGENT_VAULT_RATELIMIT_<TIER>_<KNOB>` variables of the
/// environment applied.
fn with_rate_limit_overrides(limits: Option<RateLimits>) -> anyhow::Result<Option<RateLimits>> {
    let variables: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| {
            name.starts_with(crate::ratelimit::OVERRIDE_PREFIX)
                && !name.ends_with("_PROFILE")
                && !name.ends_with("_LOCK")
        })
        .collect();
    let Some(limits) = limits else {
        if let Some((name, _)) = variables.first() {
            tracing::warn!("{name} is ignored: rate limits are off (--rate-limit-profile off)");
        }
        return Ok(None);
    };
    let (limits, warnings) = limits
        .with_overrides(
            variables
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .map_err(anyhow::Error::msg)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok(Some(limits))
}

/// The egress proxy of `--egress-proxy` (or `AGENT_VAULT_EGRESS_PROXY`) or the file
/// `--egress-proxy-file` names, bypassed for `--no-egress-proxy`. A URL with credentials on
/// the command line is refused: `ps` shows it to every user. No message repeats the URL.
fn egress_proxy(args: &ServerArgs) -> anyhow::Result<Option<EgressProxy>> {
    let url = match (&args.egress_proxy, &args.egress_proxy_file) {
        (Some(url), _) => {
            let from_environment = std::env::var(EGRESS_PROXY_ENV).is_ok_and(|value| value == *url);
            Some((Zeroizing::new(url.clone()), from_environment))
        }
        (None, Some(path)) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                format!("reading the egress proxy URL from {}", path.display())
            })?);
            let line = text.lines().next().unwrap_or_default().trim();
            Some((Zeroizing::new(line.to_owned()), true))
        }
        (None, None) => None,
    };
    let Some((url, from_environment_or_file)) = url else {
        if !args.no_egress_proxy.trim().is_empty() {
            bail!("--no-egress-proxy is set but no egress proxy is: give --egress-proxy too");
        }
        return Ok(None);
    };
    let proxy = EgressProxy::parse(&url)?;
    if proxy.has_credentials() && !from_environment_or_file {
        bail!(
            "the egress proxy URL holds a password, and on the command line every user can read \
             it (ps): give the URL in {EGRESS_PROXY_ENV} or in a file named by \
             --egress-proxy-file instead"
        );
    }
    let bypass: NoProxy = args.no_egress_proxy.parse()?;
    if bypass.is_empty() {
        tracing::info!("upstream connections go through the egress proxy {proxy}");
    } else {
        tracing::info!("upstream connections go through the egress proxy {proxy}, but to {bypass}");
    }
    Ok(Some(proxy.bypassing(bypass)))
}

const EGRESS_PROXY_ENV: &str = "AGENT_VAULT_EGRESS_PROXY";

/// `10.0.0.0/8,127.0.0.1` into networks (a bare address is its own /32 or /128).
fn parse_allowlist(text: &str) -> anyhow::Result<Vec<ipnet::IpNet>> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "network allowlist entry {entry:?} is not a CIDR or an IP address"
                    )
                })
        })
        .collect()
}

/// The address clients and links use: `AGENT_VAULT_ADDR`, else the Fly.io app's public
/// address when running there (`FLY_APP_NAME`), else (`None`) the listening address.
fn base_url(addr: Option<String>, fly_app_name: Option<String>) -> Option<String> {
    if let Some(addr) = addr.filter(|addr| !addr.is_empty()) {
        return Some(addr);
    }
    let app = fly_app_name?;
    let valid = !app.is_empty()
        && app
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    valid.then(|| format!("https://{app}.fly.dev"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_is_agent_vault_addr_else_the_fly_app_else_unset() {
        let some = |text: &str| Some(text.to_owned());
        assert_eq!(
            base_url(some("https://vault.example.com"), some("my-vault")),
            some("https://vault.example.com")
        );
        assert_eq!(
            base_url(some(""), some("my-vault")),
            some("https://my-vault.fly.dev")
        );
        assert_eq!(base_url(None, None), None);
        // Not a Fly app name: no link is built from it.
        assert_eq!(base_url(None, some("evil.example/x")), None);
    }
}
