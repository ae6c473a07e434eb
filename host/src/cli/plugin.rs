//! `agent-vault plugin list | check | test`: see what is loaded, check a `.wasm` before
//! dropping it into the plugin directory, and see exactly how a plugin shapes a request.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use super::DataDirArgs;
use crate::fill::Masks;
use crate::plugin::contract::{BodyNeed, PluginInfo};
use crate::plugin::registry::{self, Registry, RegistrySettings};
use crate::plugin::{
    Call, EngineSettings, Outcome, Plugin, PluginConfig, PluginEngine, PluginLimits, WORLD,
    config::check_bindings, needs_body_sha256,
};
use crate::request::RequestHead;
use crate::vault::{Credentials, Secret};

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// List the standard plugins and those in the plugin directory.
    List {
        #[command(flatten)]
        dirs: DataDirArgs,
    },
    /// Check a `.wasm` file: the world it implements, its imports, what it describes.
    Check {
        /// The plugin component.
        file: PathBuf,
    },
    /// Show the request a plugin would send upstream for a request you describe.
    Test(Box<TestArgs>),
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// A `.wasm` file, or the name of a loaded plugin (e.g. bearer).
    plugin: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The upstream URL, e.g. https://api.example.com/v1/items?limit=3
    #[arg(long)]
    url: String,
    /// A request header, as `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The request body (its SHA-256 goes to plugins that ask for it).
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the request body from a file.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// The clock the plugin sees, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// A plugin config entry, `key=value` (repeatable).
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A credential for a slot, `SLOT=VALUE` or `SLOT=@FILE` (repeatable).
    #[arg(long = "credential", short = 'C', value_name = "SLOT=VALUE")]
    credentials: Vec<String>,
    /// Service and vault names the plugin sees.
    #[arg(long, default_value = "test")]
    service: String,
    #[arg(long, default_value = "default")]
    vault: String,
    /// Print credential values instead of `****`.
    #[arg(long)]
    show_secrets: bool,
    #[command(flatten)]
    dirs: DataDirArgs,
}

pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::List { dirs } => list(&dirs),
        PluginCommand::Check { file } => check(&file),
        PluginCommand::Test(args) => test(&args),
    }
}

fn engine() -> anyhow::Result<PluginEngine> {
    // A CLI run needs a handful of instances, not a server's pool.
    let settings = EngineSettings {
        pool_instances: 16,
        plugin_threads: 1,
        ..EngineSettings::default()
    };
    PluginEngine::new(&settings).context("starting the WebAssembly engine")
}

fn registry(dirs: &DataDirArgs) -> anyhow::Result<Registry> {
    let plugin_dir = dirs.plugin_dir()?;
    let settings = RegistrySettings {
        plugin_dir: plugin_dir.is_dir().then_some(plugin_dir),
        cache_dir: Some(dirs.cache_dir()?),
        ..RegistrySettings::default()
    };
    Registry::new(engine()?, settings).context("loading plugins")
}

fn list(dirs: &DataDirArgs) -> anyhow::Result<ExitCode> {
    let registry = registry(dirs)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<16} {:<9} {:<64} {:<10} STATUS",
        "NAME", "VERSION", "SHA256", "SOURCE"
    )?;
    for listing in registry.list() {
        writeln!(
            out,
            "{:<16} {:<9} {:<64} {:<10} {}",
            listing.name,
            listing.version.as_deref().unwrap_or("-"),
            listing.sha256.as_deref().unwrap_or("-"),
            listing.source,
            listing.status
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let plugin = registry::load_file(&engine()?, file, PluginLimits::default())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "file: {}", file.display())?;
    writeln!(out, "sha256: {}", plugin.sha256())?;
    writeln!(out, "world: {WORLD}")?;
    writeln!(out, "imports: {}", list_or_none(plugin.imports()))?;
    describe(&mut out, plugin.info())?;
    writeln!(
        out,
        "ok: the plugin loads and imports nothing outside agent-vault:plugin"
    )?;
    Ok(ExitCode::SUCCESS)
}

fn describe(out: &mut impl std::io::Write, info: &PluginInfo) -> std::io::Result<()> {
    writeln!(out, "name: {}", info.name)?;
    writeln!(out, "version: {}", info.version)?;
    writeln!(out, "description: {}", info.description)?;
    writeln!(
        out,
        "config:{}",
        if info.config.is_empty() { " none" } else { "" }
    )?;
    for key in &info.config {
        writeln!(
            out,
            "  {} ({}): {}",
            key.name,
            required(key.required),
            key.description
        )?;
    }
    writeln!(
        out,
        "credentials:{}",
        if info.credentials.is_empty() {
            " none"
        } else {
            ""
        }
    )?;
    for slot in &info.credentials {
        writeln!(
            out,
            "  {} ({}): {}",
            slot.name,
            required(slot.required),
            slot.description
        )?;
    }
    let body = match &info.body {
        BodyNeed::None => "not read".to_owned(),
        BodyNeed::Sha256 => "sha256".to_owned(),
        BodyNeed::Sha256UnlessHeader(header) => format!("sha256 unless the request has {header}"),
    };
    writeln!(out, "body: {body}")
}

fn required(required: bool) -> &'static str {
    if required { "required" } else { "optional" }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let plugin = load_for_test(args)?;
    let method = args
        .method
        .to_ascii_uppercase()
        .parse::<http::Method>()
        .with_context(|| format!("invalid method {:?}", args.method))?;
    let mut head = RequestHead::from_url(method, &args.url)?;
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header {header:?} must look like `Name: value`"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("invalid header name in {header:?}"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .with_context(|| format!("invalid header value in {header:?}"))?;
        head.headers.append(name, value);
    }
    let config = PluginConfig::from_pairs(
        args.config
            .iter()
            .map(|entry| split_pair(entry, "--config"))
            .collect::<anyhow::Result<Vec<_>>>()?,
    )?;
    let credentials = Credentials::new(
        args.credentials
            .iter()
            .map(|entry| credential(entry))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let requirements = plugin
        .validate_config(&config)
        .context("the configuration does not work with this plugin")?;
    check_bindings(plugin.name(), &requirements, credentials.slot_names())
        .context("the credentials do not match the plugin's slots")?;

    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    let body_sha256: Option<[u8; 32]> =
        needs_body_sha256(&requirements.body, &head).then(|| Sha256::digest(&body).into());
    let now = match &args.now {
        Some(text) => parse_rfc3339(text)?,
        None => SystemTime::now(),
    };
    let call = Call {
        service: &args.service,
        vault: &args.vault,
        config: &config,
        credentials: &credentials,
        now,
        body_sha256: body_sha256.as_ref(),
        placeholders: None,
    };
    let mut masks = Masks::default();
    // The call runs here, or on the engine's plugin threads if it is slow, as in the server.
    let outcome = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting a runtime for the call")?
        .block_on(plugin.authorize_masked(&mut head, &call, Some(&mut masks)))?;
    let mut out = std::io::stdout().lock();
    match outcome {
        Outcome::Deny { status, reason } => {
            writeln!(out, "denied: {status} {reason}")?;
            Ok(ExitCode::FAILURE)
        }
        Outcome::Forward => {
            print_request(&mut out, &head, &masks, args.show_secrets)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_for_test(args: &TestArgs) -> anyhow::Result<Arc<Plugin>> {
    let as_path = Path::new(&args.plugin);
    if args.plugin.ends_with(".wasm") || as_path.is_file() {
        return Ok(Arc::new(registry::load_file(
            &engine()?,
            as_path,
            PluginLimits::default(),
        )?));
    }
    let registry = registry(&args.dirs)?;
    registry.get(&args.plugin).with_context(|| {
        let names: Vec<String> = registry.list().into_iter().map(|l| l.name).collect();
        format!(
            "no plugin named {:?} (loaded: {})",
            args.plugin,
            names.join(", ")
        )
    })
}

/// The request line and one `Name: value` line per header, credentials masked unless asked.
fn print_request(
    out: &mut impl std::io::Write,
    head: &RequestHead,
    masks: &Masks,
    show_secrets: bool,
) -> std::io::Result<()> {
    let shown = if show_secrets {
        head.clone()
    } else {
        masked_head(head, masks)
    };
    writeln!(out, "{shown}")?;
    writeln!(out, "host: {}", head.authority())?;
    for name in head.headers.keys() {
        let mut masked = masks.header_values(name);
        for value in head.headers.get_all(name) {
            let text = if show_secrets || !value.is_sensitive() {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            } else {
                masked.next().unwrap_or("****").to_owned()
            };
            writeln!(out, "{name}: {text}")?;
        }
    }
    Ok(())
}

/// `head` with credential-bearing query values and path replaced by their masked forms.
fn masked_head(head: &RequestHead, masks: &Masks) -> RequestHead {
    let mut shown = head.clone();
    shown.headers.clear();
    if let Some(path) = masks.path() {
        shown.path = path.to_owned();
    }
    if let Some(query) = &head.query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                match masks.query_value(&crate::request::decode_component(name)) {
                    Some(masked) => format!("{name}={masked}"),
                    None => pair.to_owned(),
                }
            })
            .collect();
        shown.query = Some(pairs.join("&"));
    }
    shown
}

fn split_pair(entry: &str, flag: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = entry
        .split_once('=')
        .with_context(|| format!("{flag} {entry:?} must look like KEY=VALUE"))?;
    Ok((key.to_owned(), value.to_owned()))
}

fn credential(entry: &str) -> anyhow::Result<(String, Secret)> {
    let Some((slot, value)) = entry.split_once('=') else {
        // Never echo the argument: without "=" it may be the secret itself.
        bail!("a --credential must look like SLOT=VALUE or SLOT=@FILE");
    };
    let secret = match value.strip_prefix('@') {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the credential for slot {slot:?} from {path}"))?;
            let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            Secret::new(trimmed.strip_suffix(b"\r").unwrap_or(trimmed))
        }
        None => Secret::new(value),
    };
    Ok((slot.to_owned(), secret))
}

fn parse_rfc3339(text: &str) -> anyhow::Result<SystemTime> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("--now {text:?} is not an RFC 3339 time such as 2015-08-30T12:36:00Z")
        })?;
    Ok(parsed.into())
}
