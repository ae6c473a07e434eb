//! The WebAssembly runtime: the only module that names wasmtime (with `host.rs`, the store's
//! side of a call).
//!
//! It owns the engine (pooling allocator, async calls, epoch interruption driven by a ticker
//! thread), the one `bindgen!` of `wit/plugin.wit`, compiling and deserialising components,
//! the import check, per-call limits (memory, time, what a call may hand the host), and the
//! warm instances that make a call cost microseconds.
//!
//! Calls. `authorize`, and `validate-config` on the request path, are first made as blocking
//! calls on the connection worker that stop at the end of their first slice (one to two
//! epoch ticks; the epoch callback, `host::on_epoch`, ends them with `SliceOver`). Nearly
//! every call is done by then, at the cost of a plain function call. One that is not is made
//! again from the start as an async call on the plugin threads (`offload`): the guest runs on
//! a fiber and yields at every tick until its deadline, so those threads take turns among
//! the slow calls. A plugin call has no effect outside its instance (which a stopped attempt
//! discards), so making it twice is safe. `describe`, and `validate-config` when a service is
//! written or tested, are blocking calls that run on until the deadline. Either way, what a call hands the host (its
//! result, or a crypto import's input) is bounded before it is copied: the store's hostcall
//! fuel caps the bytes wasmtime lifts out of guest memory ([`MAX_LIFTED_BYTES`]), so a
//! decision whose atoms all point at one large buffer cannot make the host copy it over and
//! over. The decision's own limits (edits, parts, atoms, text) are checked in `decision.rs`.
//!
//! Instances: by default a plugin keeps warm instances, one idle list per vault so that
//! nothing a plugin remembers from one vault's requests can reach another's. Any error (trap,
//! timeout, memory limit) discards the instance; the next call gets a fresh one. A plugin
//! can instead ask for a fresh instance per request (`Isolation::PerRequest`).
//!
//! Errors reach the agent as fixed descriptions chosen by the error's type; wasmtime's own
//! message (which may carry a guest backtrace) goes to the server log at debug level only.
//!
//! The rest of the host sees [`PluginEngine`], [`WasmPlugin`], [`CallError`] and the
//! contract types generated from the WIT (re-exported as `plugin::contract`).

mod host;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{
    Component, ComponentExportIndex, HasSelf, Instance, Linker, TypedFunc, types::ComponentItem,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig,
    Store, Trap,
};

use super::offload::{Gate, PluginThreads, Ran};
use crate::vault::Credentials;
pub use host::MAX_CRYPTO_INPUT;
use host::{Budget, CallState, CryptoInputTooLarge, Pace, SliceOver};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "auth-plugin",
        imports: { default: trappable },
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::agent_vault::plugin::types as contract;
use bindings::{AuthPlugin, AuthPluginPre};
use contract::{AuthError, Decision, Field, PluginInfo, Request, Requirements};

/// The world every plugin implements.
pub const WORLD: &str = "agent-vault:plugin/auth-plugin@0.1.0";

/// The interfaces a plugin may import. Anything else is refused at load.
pub const ALLOWED_IMPORTS: [&str; 2] = [
    "agent-vault:plugin/types@0.1.0",
    "agent-vault:plugin/crypto@0.1.0",
];

/// The most one call may make the host lift out of guest memory at once: its result (a
/// decision, requirements, a description) or one crypto import's arguments. Counted by
/// wasmtime before it copies each string or list (a list as its length times the size of the
/// host's type), so a result that refers to the same buffer many times is refused after at
/// most this much copying. A crypto input of [`MAX_CRYPTO_INPUT`] bytes fits.
pub const MAX_LIFTED_BYTES: usize = MAX_CRYPTO_INPUT + 64 * 1024;

/// How often the epoch ticker advances: the granularity of deadlines and of the slices a
/// slow call runs in.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Ticks before a call's first epoch callback: its first slice lasts one to two ticks, so a
/// call of a few microseconds never meets the callback.
const FIRST_SLICE_TICKS: u64 = 2;

/// The fiber stack of an async call: the guest's stack (`max_wasm_stack`) and host frames.
const ASYNC_STACK_BYTES: usize = 1024 * 1024;

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

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Config(String),
    #[error("cannot start the plugin threads: {0}")]
    Threads(std::io::Error),
}

/// Why a component cannot be loaded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error(
        "imports `{0}`, which agent-vault does not provide: plugins may import only {imports} \
         (build with the agent-vault-plugin SDK as a #![no_std] crate)",
        imports = ALLOWED_IMPORTS.join(" and ")
    )]
    ForbiddenImport(String),
    #[error("does not implement the agent-vault:plugin@0.1.0 auth-plugin world: {0}")]
    WrongWorld(String),
    #[error("the cached compiled artifact is unusable: {0}")]
    Artifact(String),
    #[error("describe failed: {0}")]
    Describe(CallError),
}

/// Why a call into a plugin did not return a value. The instance is discarded. Each message
/// is fixed by the variant: nothing the guest wrote reaches it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    #[error("exceeded its time limit of {0:?}")]
    Timeout(Duration),
    #[error("exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    #[error("overflowed its call stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    #[error(
        "returned more than the host reads ({limit} bytes of strings and lists in all) or a \
         result the contract does not allow"
    )]
    Unreadable { limit: usize },
    #[error("passed more than {limit} bytes to a crypto import")]
    CryptoInputTooLarge { limit: usize },
    #[error("is slow and already runs its limit of {limit} calls at once; retry shortly")]
    Busy { limit: usize },
    #[error("was stopped before it finished (the server is shutting down)")]
    Stopped,
}

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

/// `error` and its causes on one line.
fn error_chain(error: &wasmtime::Error) -> String {
    format!("{error:#}")
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

/// A plugin ready to be called: linked, with its limits, its share of the plugin threads and
/// its warm instances.
pub struct WasmPlugin {
    linked: Arc<Linked>,
    imports: Vec<String>,
    warm: Mutex<HashMap<String, Vec<WarmInstance>>>,
    idle: Arc<IdleBudget>,
    gate: Gate,
    threads: Arc<PluginThreads>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("limits", &self.linked.limits)
            .finish_non_exhaustive()
    }
}

/// What every call of one plugin shares: the linked component, where its exports are, the
/// engine and the limits. A call that moves to the plugin threads takes a reference along.
struct Linked {
    pre: AuthPluginPre<CallState>,
    exports: ExportIndices,
    engine: Engine,
    limits: PluginLimits,
}

struct ExportIndices {
    describe: ComponentExportIndex,
    validate_config: ComponentExportIndex,
    authorize: ComponentExportIndex,
}

type DescribeFunc = TypedFunc<(), (PluginInfo,)>;
type ValidateConfigFunc = TypedFunc<(Arc<[Field]>,), (Result<Requirements, String>,)>;
type AuthorizeFunc = TypedFunc<(Request, Arc<[Field]>), (Result<Decision, AuthError>,)>;
type AuthorizeByRefFunc<'a> = TypedFunc<(&'a Request, &'a [Field]), (Result<Decision, AuthError>,)>;

/// The exports of one instance, typed.
struct Exports {
    describe: DescribeFunc,
    validate_config: ValidateConfigFunc,
    authorize: AuthorizeFunc,
}

impl Exports {
    /// `authorize` taking its arguments by reference: a first attempt that may have to be
    /// made again keeps them without a copy.
    fn authorize_by_ref<'a>(&self) -> AuthorizeByRefFunc<'a> {
        // SAFETY: `new_unchecked` trusts us that the function has this type. It was checked
        // as `(Request, Arc<[Field]>)` when the instance's exports were looked up, and
        // wasmtime gives `&T` the component type of `T`, and `[T]` and `Arc<[T]>` both the
        // type `list<T>`, so the two signatures are the same component type.
        #[allow(unsafe_code)]
        unsafe {
            TypedFunc::new_unchecked(*self.authorize.func())
        }
    }
}

struct WarmInstance {
    store: Store<CallState>,
    exports: Exports,
}

/// What one authorize call returns, with the instance to keep warm if it succeeded.
type AuthorizeOutput = (
    Result<Result<Decision, AuthError>, CallError>,
    Option<WarmInstance>,
);

impl WasmPlugin {
    pub fn limits(&self) -> PluginLimits {
        self.linked.limits
    }

    /// The interfaces the component imports (all of them from our WIT).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Check a service's configuration, blocking this thread for at most the deadline
    /// (loading, the API, the CLI). The request path uses [`Self::requirements`].
    pub fn validate_config(
        &self,
        config: &[Field],
    ) -> Result<Result<Requirements, String>, CallError> {
        let config: Arc<[Field]> = config.into();
        self.linked.call_blocking(
            Credentials::default(),
            self.linked.limits.timeout,
            |exports, store| {
                exports
                    .validate_config
                    .call(store, (config,))
                    .map(|(requirements,)| requirements)
            },
        )
    }

    /// `validate-config` on the request path: like `authorize`, it leaves the connection's
    /// worker if it is slow.
    pub async fn requirements(
        &self,
        config: Arc<[Field]>,
    ) -> Result<Result<Requirements, String>, CallError> {
        let linked = self.linked.clone();
        let ran = self
            .gate
            .run(
                &self.threads,
                config,
                |config| self.linked.validate_config_inline(config.clone()),
                move |config| async move { linked.validate_config_async(config).await },
            )
            .await;
        match ran {
            Ran::Done(result) => result,
            Ran::Busy => Err(CallError::Busy {
                limit: self.gate.limit(),
            }),
            Ran::Lost => Err(CallError::Stopped),
        }
    }

    /// Ask the plugin how to attach the credential to `request`. `credentials` back the
    /// crypto imports during the call; the caller renders the decision with them after.
    /// The call runs on this thread if it is done within its first slice, and is made again
    /// on the plugin threads if not (`offload`).
    pub async fn authorize(
        &self,
        vault: &str,
        request: Request,
        config: Arc<[Field]>,
        credentials: &Credentials,
    ) -> Result<Result<Decision, AuthError>, CallError> {
        let reuse = self.linked.limits.isolation == Isolation::Reuse;
        let linked = self.linked.clone();
        let ran = self
            .gate
            .run(
                &self.threads,
                (request, config),
                |(request, config)| {
                    let warm = if reuse { self.take_warm(vault) } else { None };
                    self.linked
                        .authorize_inline(warm, request, config, credentials.clone())
                },
                |(request, config)| {
                    let warm = if reuse { self.take_warm(vault) } else { None };
                    linked.authorize_async(warm, request, config, credentials.clone())
                },
            )
            .await;
        match ran {
            Ran::Done((result, instance)) => {
                if let Some(instance) = instance.filter(|_| reuse) {
                    self.return_warm(vault, instance);
                }
                result
            }
            Ran::Busy => Err(CallError::Busy {
                limit: self.gate.limit(),
            }),
            Ran::Lost => Err(CallError::Stopped),
        }
    }

    fn take_warm(&self, vault: &str) -> Option<WarmInstance> {
        let mut warm = self
            .warm
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let instance = warm.get_mut(vault)?.pop()?;
        self.idle.release();
        Some(instance)
    }

    fn return_warm(&self, vault: &str, instance: WarmInstance) {
        if !self.idle.try_acquire() {
            return;
        }
        let mut warm = self
            .warm
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let list = match warm.get_mut(vault) {
            Some(list) => list,
            None => warm.entry(vault.to_owned()).or_default(),
        };
        if list.len() < self.idle.per_vault {
            list.push(instance);
        } else {
            self.idle.release();
        }
    }
}

impl Linked {
    /// A first attempt at an authorize call, on this thread, in `warm` or a fresh instance:
    /// `None` if it was not done within its first slice (the instance is dropped, and the
    /// caller makes the call again on the plugin threads).
    fn authorize_inline(
        &self,
        warm: Option<WarmInstance>,
        request: &Request,
        config: &[Field],
        credentials: Credentials,
    ) -> Option<AuthorizeOutput> {
        let mut instance = match warm {
            Some(instance) => instance,
            None => match self.instantiate_blocking(Pace::FirstSliceOnly, self.limits.timeout)? {
                Ok(instance) => instance,
                Err(error) => return Some((Err(error), None)),
            },
        };
        self.arm(
            &mut instance.store,
            credentials,
            Pace::FirstSliceOnly,
            self.limits.timeout,
        );
        let result = instance
            .exports
            .authorize_by_ref()
            .call(&mut instance.store, (request, config));
        match result {
            Ok((decision,)) => {
                instance.store.data_mut().end();
                Some((Ok(decision), Some(instance)))
            }
            Err(error) if error.downcast_ref::<SliceOver>().is_some() => None,
            Err(error) => Some((Err(self.classify(&error, instance.store.data())), None)),
        }
    }

    /// A first attempt at `validate-config`, on this thread, in a fresh instance: `None` if
    /// it was not done within its first slice.
    fn validate_config_inline(
        &self,
        config: Arc<[Field]>,
    ) -> Option<Result<Result<Requirements, String>, CallError>> {
        let mut instance =
            match self.instantiate_blocking(Pace::FirstSliceOnly, self.limits.timeout)? {
                Ok(instance) => instance,
                Err(error) => return Some(Err(error)),
            };
        self.arm(
            &mut instance.store,
            Credentials::default(),
            Pace::FirstSliceOnly,
            self.limits.timeout,
        );
        match instance
            .exports
            .validate_config
            .call(&mut instance.store, (config,))
        {
            Ok((requirements,)) => Some(Ok(requirements)),
            Err(error) if error.downcast_ref::<SliceOver>().is_some() => None,
            Err(error) => Some(Err(self.classify(&error, instance.store.data()))),
        }
    }

    /// A fresh instance made on this thread: `None` if `pace` stops at the first slice and
    /// that was not enough (a component whose start-up computes).
    fn instantiate_blocking(
        &self,
        pace: Pace,
        timeout: Duration,
    ) -> Option<Result<WarmInstance, CallError>> {
        let mut store = self.new_store(pace, timeout);
        let instance = match self.pre.instance_pre().instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) if error.downcast_ref::<SliceOver>().is_some() => return None,
            Err(error) => return Some(Err(self.instantiate_error(&error, store.data()))),
        };
        Some(match self.exports(&mut store, &instance) {
            Ok(exports) => Ok(WarmInstance { store, exports }),
            Err(error) => Err(self.instantiate_error(&error, store.data())),
        })
    }

    /// One authorize call in `warm`, or in a fresh instance made within the call's budget.
    async fn authorize_async(
        self: Arc<Self>,
        warm: Option<WarmInstance>,
        request: Request,
        config: Arc<[Field]>,
        credentials: Credentials,
    ) -> AuthorizeOutput {
        let mut instance = match warm {
            Some(instance) => instance,
            None => match self.instantiate_async().await {
                Ok(instance) => instance,
                Err(error) => return (Err(error), None),
            },
        };
        self.arm(
            &mut instance.store,
            credentials,
            Pace::Yield,
            self.limits.timeout,
        );
        let result = instance
            .exports
            .authorize
            .call_async(&mut instance.store, (request, config))
            .await;
        match result {
            Ok((decision,)) => {
                instance.store.data_mut().end();
                (Ok(decision), Some(instance))
            }
            Err(error) => (Err(self.classify(&error, instance.store.data())), None),
        }
    }

    async fn validate_config_async(
        self: Arc<Self>,
        config: Arc<[Field]>,
    ) -> Result<Result<Requirements, String>, CallError> {
        let mut instance = self.instantiate_async().await?;
        self.arm(
            &mut instance.store,
            Credentials::default(),
            Pace::Yield,
            self.limits.timeout,
        );
        instance
            .exports
            .validate_config
            .call_async(&mut instance.store, (config,))
            .await
            .map(|(requirements,)| requirements)
            .map_err(|error| self.classify(&error, instance.store.data()))
    }

    /// A call in a fresh instance, on this thread.
    fn call_blocking<R>(
        &self,
        credentials: Credentials,
        timeout: Duration,
        call: impl FnOnce(&Exports, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let WarmInstance { mut store, exports } =
            self.instantiate_blocking(Pace::RunOn, timeout)
                .expect("a call that runs on is never stopped at its first slice")?;
        // The call gets its whole budget, whatever instantiation took.
        self.arm(&mut store, credentials, Pace::RunOn, timeout);
        call(&exports, &mut store).map_err(|error| self.classify(&error, store.data()))
    }

    async fn instantiate_async(&self) -> Result<WarmInstance, CallError> {
        let mut store = self.new_store(Pace::Yield, self.limits.timeout);
        let instance = match self.pre.instance_pre().instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(error) => return Err(self.instantiate_error(&error, store.data())),
        };
        let exports = self
            .exports(&mut store, &instance)
            .map_err(|error| self.instantiate_error(&error, store.data()))?;
        Ok(WarmInstance { store, exports })
    }

    fn new_store(&self, pace: Pace, timeout: Duration) -> Store<CallState> {
        let mut store = Store::new(
            &self.engine,
            CallState::new(
                Credentials::default(),
                self.limits.memory_bytes,
                Budget::new(timeout, pace),
            ),
        );
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_callback(host::on_epoch);
        store.set_epoch_deadline(FIRST_SLICE_TICKS);
        store.set_hostcall_fuel(MAX_LIFTED_BYTES);
        store
    }

    /// Give the store this call's keys, a full budget and a first slice.
    fn arm(
        &self,
        store: &mut Store<CallState>,
        credentials: Credentials,
        pace: Pace,
        timeout: Duration,
    ) {
        store.data_mut().begin(
            credentials,
            self.limits.memory_bytes,
            Budget::new(timeout, pace),
        );
        store.set_epoch_deadline(FIRST_SLICE_TICKS);
    }

    fn exports(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
    ) -> wasmtime::Result<Exports> {
        Ok(Exports {
            describe: instance.get_typed_func(&mut *store, self.exports.describe)?,
            validate_config: instance.get_typed_func(&mut *store, self.exports.validate_config)?,
            authorize: instance.get_typed_func(&mut *store, self.exports.authorize)?,
        })
    }

    fn instantiate_error(&self, error: &wasmtime::Error, state: &CallState) -> CallError {
        if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return CallError::Instantiate(
                "every instance of the plugin pool is in use (too many plugin calls at once)"
                    .into(),
            );
        }
        match self.classify(error, state) {
            CallError::Unreadable { .. } => {
                CallError::Instantiate("the component could not be set up".into())
            }
            other => other,
        }
    }

    /// Name the cause of a failed call by its type, never by its message.
    fn classify(&self, error: &wasmtime::Error, state: &CallState) -> CallError {
        if state.memory.limit_hit {
            return CallError::MemoryLimit(self.limits.memory_bytes);
        }
        if error.downcast_ref::<CryptoInputTooLarge>().is_some() {
            return CallError::CryptoInputTooLarge {
                limit: MAX_CRYPTO_INPUT,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout(self.limits.timeout),
            Some(Trap::StackOverflow) => CallError::StackOverflow,
            Some(Trap::UnreachableCodeReached) => {
                CallError::Trap("executed `unreachable` (a panic or abort in the plugin)".into())
            }
            Some(Trap::MemoryOutOfBounds) => CallError::Trap(
                "accessed memory out of bounds (a stack overflow, if the plugin recurses)".into(),
            ),
            // A trap's own description is a fixed text (the error around it may carry a
            // guest backtrace, which is not repeated).
            Some(trap) => CallError::Trap(trap.to_string()),
            None => {
                // Not a trap: wasmtime refused to lift what the guest handed over (more than
                // the hostcall fuel, or not valid for the contract's types).
                tracing::debug!("plugin call failed: {}", error_chain(error));
                CallError::Unreadable {
                    limit: MAX_LIFTED_BYTES,
                }
            }
        }
    }
}

/// Caps on idle warm instances: globally, so they never exhaust the instance pool, and per
/// vault of one plugin (two per core: enough for every worker to find one).
#[derive(Debug)]
struct IdleBudget {
    available: AtomicUsize,
    per_vault: usize,
}

impl IdleBudget {
    fn new(capacity: usize) -> Self {
        // Asked once: on Linux the answer comes from reading cgroup files.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        IdleBudget {
            available: AtomicUsize::new(capacity),
            per_vault: cores * 2,
        }
    }

    fn try_acquire(&self) -> bool {
        self.available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn release(&self) {
        self.available.fetch_add(1, Ordering::AcqRel);
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` until the last plugin using it is gone.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> Arc<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        Arc::new(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
