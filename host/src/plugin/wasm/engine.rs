//! The engine every plugin runs on: wasmtime's configuration (pooling allocator, async
//! stacks, epoch interruption, driven by the ticker of `ticker.rs`), compiling components
//! and loading cached artifacts, the import check, and linking a component into a
//! [`WasmPlugin`] that has described itself.
//!
//! What one call does is in `calls.rs`; a loaded plugin's calls and warm instances in
//! `instances.rs`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{AuthPlugin, AuthPluginPre};
use super::calls::{ExportIndices, Linked, error_chain};
use super::contract::PluginInfo;
use super::host::CallState;
use super::instances::{IdleBudget, WasmPlugin};
use super::ticker::Ticker;
use super::{ALLOWED_IMPORTS, EngineError, EngineSettings, LoadError, PluginLimits};
use crate::plugin::offload::{Gate, PluginThreads};
use crate::vault::Credentials;

/// The fiber stack of an async call: the guest's stack (`max_wasm_stack`) and host frames.
const ASYNC_STACK_BYTES: usize = 1024 * 1024;

/// The engine every plugin runs on. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    ticker: Arc<Ticker>,
    idle: Arc<IdleBudget>,
    threads: Arc<PluginThreads>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine").finish_non_exhaustive()
    }
}

impl PluginEngine {
    pub fn new(settings: &EngineSettings) -> Result<Self, EngineError> {
        let engine = match Engine::new(&engine_config(settings, true)) {
            Ok(engine) => engine,
            Err(error) => {
                tracing::warn!(
                    "pooling allocator unavailable ({error}); plugins use on-demand allocation"
                );
                Engine::new(&engine_config(settings, false))
                    .map_err(|error| EngineError::Config(error.to_string()))?
            }
        };
        let mut linker = Linker::new(&engine);
        AuthPlugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(|error| EngineError::Config(error.to_string()))?;
        Ok(PluginEngine {
            ticker: Ticker::start(engine.clone()),
            engine,
            linker: Arc::new(linker),
            idle: Arc::new(IdleBudget::new(settings.pool_instances as usize / 2)),
            threads: PluginThreads::start(settings.plugin_threads).map_err(EngineError::Threads)?,
        })
    }

    /// A key that changes whenever compiled artifacts of this engine would not load in
    /// another (wasmtime version, settings, CPU features).
    pub fn artifact_key(&self) -> String {
        let mut hasher = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Compile a `.wasm` component; returns it with its serialised artifact for the cache.
    pub fn compile(&self, wasm: &[u8]) -> Result<(CompiledPlugin, Vec<u8>), LoadError> {
        if !wasmparser_is_component(wasm) {
            return Err(LoadError::Invalid(
                "this is a core WebAssembly module or not WebAssembly at all; plugins must be \
                 components (build for wasm32-wasip2)"
                    .into(),
            ));
        }
        let component = Component::from_binary(&self.engine, wasm)
            .map_err(|error| LoadError::Invalid(error_chain(&error)))?;
        let imports = check_imports(&self.engine, &component)?;
        let artifact = component
            .serialize()
            .map_err(|error| LoadError::Invalid(error_chain(&error)))?;
        Ok((CompiledPlugin { component, imports }, artifact))
    }

    /// Load an artifact that `compile` produced earlier and the host cached itself.
    pub fn load_artifact(&self, path: &Path) -> Result<CompiledPlugin, LoadError> {
        // SAFETY: artifacts are only ever read from the host's own cache directory (mode
        // 0700 under the data directory), written there by `compile` with this engine
        // configuration; never from the plugin directory or anywhere a user drops files.
        // Wasmtime still checks the engine compatibility header and refuses a mismatch.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(|error| LoadError::Artifact(error_chain(&error)))?;
        let imports = check_imports(&self.engine, &component)?;
        Ok(CompiledPlugin { component, imports })
    }

    /// Link a compiled component against our world and ask it to describe itself.
    pub fn instantiate_pre(
        &self,
        compiled: &CompiledPlugin,
        limits: PluginLimits,
    ) -> Result<(WasmPlugin, PluginInfo), LoadError> {
        let wrong_world = |error: wasmtime::Error| LoadError::WrongWorld(error_chain(&error));
        let instance_pre = self
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(wrong_world)?;
        // Checks that every export of the world is there, with its type.
        let pre = AuthPluginPre::new(instance_pre).map_err(wrong_world)?;
        let export = |name: &str| {
            compiled
                .component
                .get_export_index(None, name)
                .ok_or_else(|| LoadError::WrongWorld(format!("no export named `{name}`")))
        };
        let exports = ExportIndices {
            describe: export("describe")?,
            validate_config: export("validate-config")?,
            authorize: export("authorize")?,
        };
        let linked = Arc::new(Linked {
            pre,
            exports,
            engine: self.engine.clone(),
            limits,
        });
        let info = linked
            .call_blocking(
                Credentials::default(),
                limits.timeout.max(DESCRIBE_AT_LEAST),
                |exports, store| exports.describe.call(store, ()).map(|(info,)| info),
            )
            .map_err(LoadError::Describe)?;
        let plugin = WasmPlugin {
            linked,
            imports: compiled.imports.clone(),
            warm: Mutex::new(HashMap::new()),
            idle: self.idle.clone(),
            gate: Gate::new(&info.name, limits.max_slow_calls),
            threads: self.threads.clone(),
            _ticker: self.ticker.clone(),
        };
        Ok((plugin, info))
    }
}

/// The least time `describe` gets when a plugin loads: it runs once, off the request path,
/// and a machine busy enough to pause the loading thread for a plugin's whole request
/// deadline (50 ms by default) must not make a standard plugin fail to load.
const DESCRIBE_AT_LEAST: Duration = Duration::from_secs(1);

fn engine_config(settings: &EngineSettings, pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Deep recursion traps well before it could exhaust the host thread's stack.
    config.max_wasm_stack(512 * 1024);
    config.async_stack_size(ASYNC_STACK_BYTES);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(settings.pool_instances)
            .total_core_instances(settings.pool_instances * 2)
            .total_memories(settings.pool_instances)
            .total_tables(settings.pool_instances * 2)
            .total_stacks(settings.pool_instances)
            .max_memory_size(settings.max_memory_bytes)
            // Plugins built with the SDK use ~200 KiB; keeping 1 MiB resident turns the
            // first-touch page faults of a fresh instance into a memset.
            .linear_memory_keep_resident(1024 * 1024)
            .table_keep_resident(64 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Whether the bytes are a component (layer 1) rather than a core module.
fn wasmparser_is_component(wasm: &[u8]) -> bool {
    // The preamble: "\0asm", a 16-bit version and a 16-bit layer; components are layer 1.
    wasm.len() >= 8 && wasm[0..4] == *b"\0asm" && wasm[6..8] == [1, 0]
}

/// Refuse any import outside our WIT; return the imports' names.
fn check_imports(engine: &Engine, component: &Component) -> Result<Vec<String>, LoadError> {
    let component_type = component.component_type();
    let mut names = Vec::new();
    for (name, item) in component_type.imports(engine) {
        let allowed = ALLOWED_IMPORTS.contains(&name)
            && matches!(item.ty, ComponentItem::ComponentInstance(_));
        if !allowed {
            return Err(LoadError::ForbiddenImport(name.to_owned()));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// A compiled component, not yet linked.
pub struct CompiledPlugin {
    component: Component,
    imports: Vec<String>,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin").finish_non_exhaustive()
    }
}
