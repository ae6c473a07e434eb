//! A plugin's options file, `NAME.toml` next to `NAME.wasm`: `memory-limit-mib`,
//! `timeout-ms` (cut to the server's ceiling, with a warning), `isolation`, `max-slow-calls`.

use std::path::Path;
use std::time::Duration;

use super::{FileLoadError, MAX_TIMEOUT_MS};
use crate::plugin::wasm::{Isolation, PluginLimits};

/// The setting that raises the ceiling, as the warning names it.
const CEILING_SETTING: &str = "--plugin-timeout-ceiling-ms (AGENT_VAULT_PLUGIN_TIMEOUT_CEILING_MS)";

/// Limits from `NAME.toml` next to `NAME.wasm`, over the defaults; a timeout above
/// `ceiling` becomes the ceiling.
pub(super) fn read_options(
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
