//! Loading one plugin file: its name from the file name, its bytes (at most
//! `MAX_PLUGIN_FILE`), its options, compiling (through the cache) and linking, and the check
//! that the plugin calls itself what its file is named. [`load_file`] loads a file outside
//! any registry, for `plugin check` and `plugin test FILE`.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::options::read_options;
use super::{FileLoadError, MAX_PLUGIN_FILE, Registry};
use crate::plugin::wasm::{LoadError, PluginEngine, PluginLimits};
use crate::plugin::{Plugin, Source};

impl Registry {
    pub(super) fn load_file_cached(
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

    pub(super) fn load_bytes(
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
