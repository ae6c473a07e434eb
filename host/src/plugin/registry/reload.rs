//! Hot reload: [`Registry::rescan`] compares each file of the plugin directory by its
//! fingerprint (size and modification time of `NAME.wasm` and `NAME.toml`) with the last
//! scan, loads what changed and swaps it in; a file that fails to load leaves the previous
//! version serving. [`Registry::watch`] rescans on a background thread until its
//! [`Watcher`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::{FileEntry, FileLoadError, Registry};

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

/// What tells a changed file from an unchanged one without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint {
    wasm: (u64, Option<SystemTime>),
    options: Option<(u64, Option<SystemTime>)>,
}

impl Registry {
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

pub(super) fn log_event(event: &ReloadEvent) {
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
