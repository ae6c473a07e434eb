//! Where plugins come from: the standard plugins embedded in the binary, the `*.wasm` files
//! of the plugin directory, and the compile cache.
//!
//! A plugin's name is its file name without `.wasm`, and must be the name its `describe`
//! gives. A file named like a standard plugin replaces it. Next to `NAME.wasm` an optional
//! `NAME.toml` sets the plugin's limits (`memory-limit-mib`, `timeout-ms`, `isolation`,
//! `max-slow-calls`). A `timeout-ms` above the instance's ceiling ([`DEFAULT_TIMEOUT_CEILING`]
//! unless the operator raises it with `--plugin-timeout-ceiling-ms`) loads with the ceiling
//! and a warning: a plugin file alone cannot buy itself seconds of a server's time.
//!
//! Hot reload: [`Registry::rescan`] compares each file's size and modification time with
//! the last scan, loads what changed, and swaps it in atomically (requests in flight keep the
//! version they started with). A file that fails to load leaves the previous version
//! serving and says why. [`Registry::watch`] rescans on a background thread.
//!
//! Compiled components are cached as `<cache-dir>/<sha256>-<engine key>.cwasm`. Only the
//! host writes there; `.cwasm` files are never read from the plugin directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::wasm::{CompiledPlugin, Isolation, LoadError, PluginEngine, PluginLimits};
use super::{Plugin, Source, builtin};

/// The largest `.wasm` file the registry reads.
const MAX_PLUGIN_FILE: u64 = 64 * 1024 * 1024;

/// The longest deadline a `NAME.toml` may give its plugin unless the operator raises it.
pub const DEFAULT_TIMEOUT_CEILING: Duration = Duration::from_secs(1);

/// The longest `timeout-ms` (and ceiling) there is, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 10_000;

/// The setting that raises the ceiling, as the warning names it.
const CEILING_SETTING: &str = "--plugin-timeout-ceiling-ms (AGENT_VAULT_PLUGIN_TIMEOUT_CEILING_MS)";

#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Directory of `*.wasm` plugins; `None` for the standard plugins only.
    pub plugin_dir: Option<PathBuf>,
    /// Directory for compiled artifacts; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Limits for plugins without a `NAME.toml`.
    pub default_limits: PluginLimits,
    /// The longest deadline a `NAME.toml` gets; more is cut to this, with a warning.
    pub timeout_ceiling: Duration,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            plugin_dir: None,
            cache_dir: None,
            default_limits: PluginLimits::default(),
            timeout_ceiling: DEFAULT_TIMEOUT_CEILING,
        }
    }
}

/// Why a plugin file could not be loaded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FileLoadError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is larger than {MAX_PLUGIN_FILE} bytes")]
    TooLarge { path: String },
    #[error(
        "{path}: the file name must be a plugin name (a lower-case letter, then lower-case \
         letters, digits or hyphens, at most 64) followed by .wasm"
    )]
    BadFileName { path: String },
    #[error("{path}: {error}")]
    Load { path: String, error: LoadError },
    #[error(
        "{path}: the plugin calls itself {described:?}, but the file is named {file:?}; rename one"
    )]
    NameMismatch {
        path: String,
        described: String,
        file: String,
    },
    #[error("{path}: {reason}")]
    Options { path: String, reason: String },
}

/// Why a lookup found no usable plugin.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("no plugin named {0:?} is loaded")]
    NotFound(String),
    #[error("plugin {name} is at sha256 {actual}, but the service pins {pinned}")]
    PinMismatch {
        name: String,
        actual: String,
        pinned: String,
    },
}

/// How one plugin shows in `plugin list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub name: String,
    pub version: Option<String>,
    pub sha256: Option<String>,
    pub source: Source,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Loaded and serving.
    Active,
    /// A standard plugin replaced by a file of the same name.
    Overridden,
    /// The current file failed to load; the previous version still serves.
    ServingPrevious(String),
    /// The file failed to load and nothing of that name from it serves.
    Failed(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Active => f.write_str("active"),
            Status::Overridden => f.write_str("overridden by the plugin directory"),
            Status::ServingPrevious(error) => {
                write!(f, "error (previous version serving): {error}")
            }
            Status::Failed(error) => write!(f, "error: {error}"),
        }
    }
}

/// What a rescan changed, for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadEvent {
    Loaded {
        name: String,
        sha256: String,
    },
    Removed {
        name: String,
    },
    Failed {
        path: PathBuf,
        error: FileLoadError,
        serving_previous: bool,
    },
}

/// Every plugin the server can use, by name.
pub struct Registry {
    engine: PluginEngine,
    settings: RegistrySettings,
    standard: BTreeMap<String, Arc<Plugin>>,
    files: RwLock<BTreeMap<PathBuf, FileEntry>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct FileEntry {
    fingerprint: Fingerprint,
    name: String,
    loaded: Option<Arc<Plugin>>,
    error: Option<FileLoadError>,
}

/// What tells a changed file from an unchanged one without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    wasm: (u64, Option<SystemTime>),
    options: Option<(u64, Option<SystemTime>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("standard plugin {name} failed to load: {error}")]
    Standard { name: String, error: LoadError },
    #[error("cannot read the plugin directory {path}: {reason}")]
    PluginDir { path: String, reason: String },
}

impl Registry {
    /// Load the standard plugins and scan the plugin directory once.
    pub fn new(engine: PluginEngine, settings: RegistrySettings) -> Result<Self, RegistryError> {
        let mut registry = Registry {
            engine,
            settings,
            standard: BTreeMap::new(),
            files: RwLock::new(BTreeMap::new()),
        };
        for (name, wasm) in builtin::STANDARD_PLUGINS {
            let plugin = registry
                .load_bytes(wasm, Source::Builtin, registry.settings.default_limits)
                .map_err(|error| RegistryError::Standard {
                    name: (*name).to_owned(),
                    error,
                })?;
            registry
                .standard
                .insert((*name).to_owned(), Arc::new(plugin));
        }
        if let Some(dir) = &registry.settings.plugin_dir {
            std::fs::read_dir(dir).map_err(|error| RegistryError::PluginDir {
                path: dir.display().to_string(),
                reason: error.to_string(),
            })?;
        }
        for event in registry.rescan() {
            log_event(&event);
        }
        Ok(registry)
    }

    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The plugin serving `name`: the plugin directory's, else the standard one.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        let files = self
            .files
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        files
            .values()
            .find(|entry| entry.name == name && entry.loaded.is_some())
            .and_then(|entry| entry.loaded.clone())
            .or_else(|| self.standard.get(name).cloned())
    }

    /// `get`, refusing a plugin whose sha256 is not the one a service pins.
    pub fn get_pinned(
        &self,
        name: &str,
        pinned_sha256: Option<&str>,
    ) -> Result<Arc<Plugin>, LookupError> {
        let plugin = self
            .get(name)
            .ok_or_else(|| LookupError::NotFound(name.to_owned()))?;
        match pinned_sha256 {
            Some(pinned) if !pinned.eq_ignore_ascii_case(plugin.sha256()) => {
                Err(LookupError::PinMismatch {
                    name: name.to_owned(),
                    actual: plugin.sha256().to_owned(),
                    pinned: pinned.to_owned(),
                })
            }
            _ => Ok(plugin),
        }
    }

    /// Every plugin, standard and from the directory, with its status.
    pub fn list(&self) -> Vec<Listing> {
        let files = self
            .files
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        let overridden = |name: &str| {
            files
                .values()
                .any(|entry| entry.name == name && entry.loaded.is_some())
        };
        let mut listings: Vec<Listing> = self
            .standard
            .iter()
            .map(|(name, plugin)| Listing {
                status: if overridden(name) {
                    Status::Overridden
                } else {
                    Status::Active
                },
                ..listing(plugin)
            })
            .collect();
        for (path, entry) in files.iter() {
            let error = entry.error.as_ref().map(ToString::to_string);
            listings.push(match (&entry.loaded, error) {
                (Some(plugin), None) => listing(plugin),
                (Some(plugin), Some(error)) => Listing {
                    status: Status::ServingPrevious(error),
                    ..listing(plugin)
                },
                (None, error) => Listing {
                    name: entry.name.clone(),
                    version: None,
                    sha256: None,
                    source: Source::File(path.clone()),
                    status: Status::Failed(error.unwrap_or_default()),
                },
            });
        }
        listings
    }

    /// Look at the plugin directory once and load what was added or changed.
    pub fn rescan(&self) -> Vec<ReloadEvent> {
        let Some(dir) = &self.settings.plugin_dir else {
            return Vec::new();
        };
        let mut events = Vec::new();
        let present = wasm_files(dir);
        let mut files = self
            .files
            .write()
            .unwrap_or_else(|poison| poison.into_inner());

        files.retain(|path, entry| {
            let keep = present.contains(path);
            if !keep && entry.loaded.is_some() {
                events.push(ReloadEvent::Removed {
                    name: entry.name.clone(),
                });
            }
            keep
        });

        for path in present {
            let fingerprint = fingerprint(&path);
            if files
                .get(&path)
                .is_some_and(|entry| entry.fingerprint == fingerprint)
            {
                continue;
            }
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            let previous = files.get(&path).and_then(|entry| entry.loaded.clone());
            // Compiling while holding the lock stalls lookups for tens of milliseconds, and
            // only when a file changed; simpler than reconciling concurrent rescans.
            let entry = match self.load_file_cached(&path, previous.as_ref()) {
                Ok(plugin) => {
                    if !previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, &plugin)) {
                        events.push(ReloadEvent::Loaded {
                            name: name.clone(),
                            sha256: plugin.sha256().to_owned(),
                        });
                    }
                    FileEntry {
                        fingerprint,
                        name,
                        loaded: Some(plugin),
                        error: None,
                    }
                }
                Err(error) => {
                    events.push(ReloadEvent::Failed {
                        path: path.clone(),
                        error: error.clone(),
                        serving_previous: previous.is_some(),
                    });
                    FileEntry {
                        fingerprint,
                        name,
                        loaded: previous,
                        error: Some(error),
                    }
                }
            };
            files.insert(path, entry);
        }
        events
    }

    /// Rescan every `interval` on a background thread until the returned handle is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let registry = Arc::clone(self);
        std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    for event in registry.rescan() {
                        log_event(&event);
                    }
                }
            })
            .expect("spawning the plugin watcher thread");
        Watcher { stop }
    }

    fn load_file_cached(
        &self,
        path: &Path,
        previous: Option<&Arc<Plugin>>,
    ) -> Result<Arc<Plugin>, FileLoadError> {
        let display = path.display().to_string();
        let name = plugin_name_of(path).ok_or_else(|| FileLoadError::BadFileName {
            path: display.clone(),
        })?;
        let limits = read_options(
            path,
            self.settings.default_limits,
            self.settings.timeout_ceiling,
        )?;
        let wasm = read_wasm(path)?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        if let Some(previous) = previous
            && previous.sha256() == sha256
            && previous.limits() == limits
        {
            // Touched but unchanged: keep the plugin and its warm instances.
            return Ok(Arc::clone(previous));
        }
        let source = Source::File(path.to_owned());
        self.load_bytes_as(&wasm, sha256, source, limits, &name, &display)
            .map(Arc::new)
    }

    fn load_bytes_as(
        &self,
        wasm: &[u8],
        sha256: String,
        source: Source,
        limits: PluginLimits,
        name: &str,
        display: &str,
    ) -> Result<Plugin, FileLoadError> {
        let compiled = self
            .compile_cached(wasm, &sha256)
            .map_err(|error| FileLoadError::Load {
                path: display.to_owned(),
                error,
            })?;
        let (wasm_plugin, info) =
            self.engine
                .instantiate_pre(&compiled, limits)
                .map_err(|error| FileLoadError::Load {
                    path: display.to_owned(),
                    error,
                })?;
        if info.name != name {
            return Err(FileLoadError::NameMismatch {
                path: display.to_owned(),
                described: info.name,
                file: name.to_owned(),
            });
        }
        Ok(Plugin::new(info, sha256, source, wasm_plugin))
    }

    fn load_bytes(
        &self,
        wasm: &[u8],
        source: Source,
        limits: PluginLimits,
    ) -> Result<Plugin, LoadError> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        let compiled = self.compile_cached(wasm, &sha256)?;
        let (wasm_plugin, info) = self.engine.instantiate_pre(&compiled, limits)?;
        Ok(Plugin::new(info, sha256, source, wasm_plugin))
    }

    fn compile_cached(&self, wasm: &[u8], sha256: &str) -> Result<CompiledPlugin, LoadError> {
        let Some(cache_dir) = &self.settings.cache_dir else {
            return self.engine.compile(wasm).map(|(compiled, _)| compiled);
        };
        let artifact_path =
            cache_dir.join(format!("{sha256}-{}.cwasm", self.engine.artifact_key()));
        if artifact_path.exists() {
            match self.engine.load_artifact(&artifact_path) {
                Ok(compiled) => return Ok(compiled),
                Err(error) => {
                    tracing::warn!(path = %artifact_path.display(), "discarding cached plugin artifact: {error}");
                    let _ = std::fs::remove_file(&artifact_path);
                }
            }
        }
        let (compiled, artifact) = self.engine.compile(wasm)?;
        if let Err(error) = write_private(cache_dir, &artifact_path, &artifact) {
            tracing::warn!(path = %artifact_path.display(), "cannot cache the compiled plugin: {error}");
        }
        Ok(compiled)
    }
}

/// Load one `.wasm` file outside any registry (for `plugin check` and `plugin test FILE`).
/// The name rule does not apply: the plugin is what it describes itself as.
pub fn load_file(
    engine: &PluginEngine,
    path: &Path,
    limits: PluginLimits,
) -> Result<Plugin, FileLoadError> {
    let display = path.display().to_string();
    let wasm = read_wasm(path)?;
    let sha256 = hex::encode(Sha256::digest(&wasm));
    let load = |error| FileLoadError::Load {
        path: display.clone(),
        error,
    };
    let (compiled, _) = engine.compile(&wasm).map_err(load)?;
    let (wasm_plugin, info) = engine.instantiate_pre(&compiled, limits).map_err(load)?;
    Ok(Plugin::new(
        info,
        sha256,
        Source::File(path.to_owned()),
        wasm_plugin,
    ))
}

/// Stops the watcher thread when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn listing(plugin: &Plugin) -> Listing {
    Listing {
        name: plugin.name().to_owned(),
        version: Some(plugin.info().version.clone()),
        sha256: Some(plugin.sha256().to_owned()),
        source: plugin.source().clone(),
        status: Status::Active,
    }
}

fn log_event(event: &ReloadEvent) {
    match event {
        ReloadEvent::Loaded { name, sha256 } => {
            tracing::info!(plugin = %name, %sha256, "plugin loaded")
        }
        ReloadEvent::Removed { name } => tracing::info!(plugin = %name, "plugin removed"),
        ReloadEvent::Failed {
            error,
            serving_previous,
            ..
        } => {
            if *serving_previous {
                tracing::error!("plugin failed to load, previous version keeps serving: {error}");
            } else {
                tracing::error!("plugin failed to load: {error}");
            }
        }
    }
}

/// `*.wasm` regular files of `dir`, hidden files excluded, sorted.
fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "wasm")
                && !path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'))
                && path.is_file()
        })
        .collect();
    files.sort();
    files
}

fn fingerprint(path: &Path) -> Fingerprint {
    let stat = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|meta| (meta.len(), meta.modified().ok()))
    };
    Fingerprint {
        wasm: stat(path).unwrap_or((0, None)),
        options: stat(&path.with_extension("toml")),
    }
}

fn plugin_name_of(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let valid = (1..=64).contains(&stem.len())
        && stem.starts_with(|c: char| c.is_ascii_lowercase())
        && stem
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| stem.to_owned())
}

fn read_wasm(path: &Path) -> Result<Vec<u8>, FileLoadError> {
    let display = path.display().to_string();
    let read_error = |error: std::io::Error| FileLoadError::Read {
        path: display.clone(),
        reason: error.to_string(),
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_PLUGIN_FILE {
        return Err(FileLoadError::TooLarge { path: display });
    }
    std::fs::read(path).map_err(read_error)
}

/// Limits from `NAME.toml` next to `NAME.wasm`, over the defaults; a timeout above
/// `ceiling` becomes the ceiling.
fn read_options(
    wasm_path: &Path,
    defaults: PluginLimits,
    ceiling: Duration,
) -> Result<PluginLimits, FileLoadError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Options {
        memory_limit_mib: Option<u32>,
        timeout_ms: Option<u64>,
        isolation: Option<Isolation>,
        max_slow_calls: Option<usize>,
    }
    let path = wasm_path.with_extension("toml");
    let display = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(defaults),
        Err(error) => {
            return Err(FileLoadError::Read {
                path: display,
                reason: error.to_string(),
            });
        }
    };
    let options: Options = toml::from_str(&text).map_err(|error| FileLoadError::Options {
        path: display.clone(),
        reason: error.message().to_owned(),
    })?;
    let mut limits = defaults;
    if let Some(mib) = options.memory_limit_mib {
        if !(1..=64).contains(&mib) {
            return Err(FileLoadError::Options {
                path: display,
                reason: "memory-limit-mib must be 1 to 64".into(),
            });
        }
        limits.memory_bytes = mib as usize * 1024 * 1024;
    }
    if let Some(ms) = options.timeout_ms {
        if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
            return Err(FileLoadError::Options {
                path: display,
                reason: format!("timeout-ms must be 1 to {MAX_TIMEOUT_MS}"),
            });
        }
        limits.timeout = Duration::from_millis(ms);
        if limits.timeout > ceiling {
            let (file, ceiling_ms) = (&display, ceiling.as_millis());
            tracing::warn!(
                "{file}: timeout-ms = {ms} is above this server's ceiling of {ceiling_ms} ms; \
                 the plugin gets {ceiling_ms} ms (an operator can raise the ceiling with \
                 {CEILING_SETTING})"
            );
            limits.timeout = ceiling;
        }
    }
    if let Some(isolation) = options.isolation {
        limits.isolation = isolation;
    }
    if let Some(calls) = options.max_slow_calls {
        if !(1..=64).contains(&calls) {
            return Err(FileLoadError::Options {
                path: display,
                reason: "max-slow-calls must be 1 to 64".into(),
            });
        }
        limits.max_slow_calls = calls;
    }
    Ok(limits)
}

/// Write `bytes` to `path` atomically, readable by this user only.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    create_private_dir(dir)?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
