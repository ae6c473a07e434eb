//! `agent-vault plugin list | check | test`: see what is loaded, check a `.wasm` before
//! dropping it into the plugin directory, and see exactly how a plugin shapes a request.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use super::DataDirArgs;
use crate::plugin::contract::{BodyNeed, PluginInfo};
use crate::plugin::dry_run::{self, DryRun, DryRunOutcome};
use crate::plugin::registry::{self, Registry, RegistrySettings};
use crate::plugin::{EngineSettings, Plugin, PluginEngine, PluginLimits, WORLD};
use crate::vault::Secret;
use anyhow::{Context as _, bail};

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
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    let now = match &args.now {
        Some(text) => dry_run::parse_now(text).with_context(|| {
            format!("--now {text:?} is not an RFC 3339 time such as 2015-08-30T12:36:00Z")
        })?,
        None => SystemTime::now(),
    };
    let input = DryRun {
        method: args.method.clone(),
        url: args.url.clone(),
        headers: args.headers.clone(),
        body,
        config: args
            .config
            .iter()
            .map(|entry| split_pair(entry, "--config"))
            .collect::<anyhow::Result<Vec<_>>>()?,
        credentials: args
            .credentials
            .iter()
            .map(|entry| credential(entry))
            .collect::<anyhow::Result<Vec<_>>>()?,
        now,
        service: args.service.clone(),
        vault: args.vault.clone(),
    };
    // The call runs here, or on the engine's plugin threads if it is slow, as in the server.
    let outcome = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting a runtime for the call")?
        .block_on(dry_run::dry_run(&plugin, &input, args.show_secrets))?;
    let mut out = std::io::stdout().lock();
    match outcome {
        DryRunOutcome::Deny { status, reason } => {
            writeln!(out, "denied: {status} {reason}")?;
            Ok(ExitCode::FAILURE)
        }
        DryRunOutcome::Forward(request) => {
            writeln!(out, "{}", request.line)?;
            for (name, value) in &request.headers {
                writeln!(out, "{name}: {value}")?;
            }
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
