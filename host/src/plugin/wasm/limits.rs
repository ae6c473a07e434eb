//! What a plugin may use: the engine's process-wide settings, each plugin's limits (memory,
//! deadline, isolation, slow calls at once) and the most a call may make the host copy out
//! of guest memory.

use std::time::Duration;

use super::MAX_CRYPTO_INPUT;

/// The most one call may make the host lift out of guest memory at once: its result (a
/// decision, requirements, a description) or one crypto import's arguments. Counted by
/// wasmtime before it copies each string or list (a list as its length times the size of the
/// host's type), so a result that refers to the same buffer many times is refused after at
/// most this much copying. A crypto input of [`MAX_CRYPTO_INPUT`] bytes fits.
pub const MAX_LIFTED_BYTES: usize = MAX_CRYPTO_INPUT + 64 * 1024;

/// Process-wide settings of the plugin engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instances the pooling allocator reserves: in-flight calls plus warm instances.
    pub pool_instances: u32,
    /// The most memory any one plugin may be given (per-plugin limits are lower).
    pub max_memory_bytes: usize,
    /// Threads that run the calls too slow for a connection worker (`offload`).
    pub plugin_threads: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            pool_instances: 512,
            max_memory_bytes: 64 * 1024 * 1024,
            plugin_threads: 2,
        }
    }
}

/// Whether a plugin keeps warm instances between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Reuse instances within one vault; discard one on any error. The default.
    Reuse,
    /// A fresh instance for every request: no state survives a request.
    PerRequest,
}

/// Per-plugin limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub isolation: Isolation,
    /// The most calls of this plugin that may run on the plugin threads at once; more are
    /// refused (`CallError::Busy`).
    pub max_slow_calls: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_millis(50),
            isolation: Isolation::Reuse,
            max_slow_calls: 8,
        }
    }
}
