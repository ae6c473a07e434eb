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
//!
//! Files: `registry/reload.rs` (rescans and the watcher), `registry/load.rs` (one plugin
//! file), `registry/options.rs` (`NAME.toml`), `registry/cache.rs` (the compile cache).

mod cache;
mod load;
mod options;
mod reload;

pub use load::load_file;
pub use reload::{ReloadEvent, Watcher};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::wasm::{LoadError, PluginEngine, PluginLimits};
use super::{Plugin, Source, builtin};
use reload::{Fingerprint, log_event};

/// The largest `.wasm` file the registry reads.
const MAX_PLUGIN_FILE: u64 = 64 * 1024 * 1024;

/// The longest deadline a `NAME.toml` may give its plugin unless the operator raises it.
pub const DEFAULT_TIMEOUT_CEILING: Duration = Duration::from_secs(1);

/// The longest `timeout-ms` (and ceiling) there is, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 10_000;

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
