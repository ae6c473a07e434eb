//! The WebAssembly runtime: the only module that names wasmtime.
//!
//! It owns the engine (pooling allocator, epoch interruption driven by a ticker thread), the
//! one `bindgen!` of `wit/plugin.wit`, compiling and deserialising components, the import
//! check, per-call limits (memory, time), the crypto imports (which call into the vault), and
//! the warm instances that make a call cost microseconds.
//!
//! Instances: by default a plugin keeps warm instances, one idle list per vault so that
//! nothing a plugin remembers from one vault's requests can reach another's. Any error (trap,
//! timeout, memory limit) discards the instance; the next call gets a fresh one. A plugin
//! can instead ask for a fresh instance per request (`Isolation::PerRequest`).
//!
//! The rest of the host sees [`PluginEngine`], [`WasmPlugin`], [`CallError`] and the
//! contract types generated from the WIT (re-exported as `plugin::contract`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};

use crate::vault::Credentials;
use crate::vault::keyring::{DigestAlgorithm, KeyError, KeyRef, KeyRing};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "auth-plugin",
        imports: { default: trappable },
        additional_derives: [PartialEq, Eq],
    });
}

use bindings::agent_vault::plugin::crypto;
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

/// The largest input a crypto import hashes in one call; beyond it the call traps.
const MAX_CRYPTO_INPUT: usize = 1024 * 1024;

/// How often the epoch ticker advances; deadlines are rounded up to whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Process-wide settings of the plugin engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instances the pooling allocator reserves: in-flight calls plus warm instances.
    pub pool_instances: u32,
    /// The most memory any one plugin may be given (per-plugin limits are lower).
    pub max_memory_bytes: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            pool_instances: 512,
            max_memory_bytes: 64 * 1024 * 1024,
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
#[derive(Debug, Clone, Copy)]
pub struct PluginLimits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub isolation: Isolation,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_millis(50),
            isolation: Isolation::Reuse,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Config(String),
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

/// Why a call into a plugin did not return a value. The instance is discarded.
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
}

/// The engine every plugin runs on. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    ticker: Arc<Ticker>,
    idle: Arc<IdleBudget>,
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
        let instance_pre = self
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(|error| LoadError::WrongWorld(error_chain(&error)))?;
        let pre = AuthPluginPre::new(instance_pre)
            .map_err(|error| LoadError::WrongWorld(error_chain(&error)))?;
        let plugin = WasmPlugin {
            pre,
            imports: compiled.imports.clone(),
            engine: self.engine.clone(),
            limits,
            warm: Mutex::new(HashMap::new()),
            idle: self.idle.clone(),
            _ticker: self.ticker.clone(),
        };
        let info = plugin
            .with_fresh_instance(Credentials::default(), |bindings, store| {
                bindings.call_describe(store)
            })
            .map_err(LoadError::Describe)?;
        Ok((plugin, info))
    }
}

fn engine_config(settings: &EngineSettings, pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Deep recursion traps well before it could exhaust the host thread's stack.
    config.max_wasm_stack(512 * 1024);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(settings.pool_instances)
            .total_core_instances(settings.pool_instances * 2)
            .total_memories(settings.pool_instances)
            .total_tables(settings.pool_instances * 2)
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

/// A plugin ready to be called: linked, with its limits and warm instances.
pub struct WasmPlugin {
    pre: AuthPluginPre<CallState>,
    imports: Vec<String>,
    engine: Engine,
    limits: PluginLimits,
    warm: Mutex<HashMap<String, Vec<WarmInstance>>>,
    idle: Arc<IdleBudget>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

struct WarmInstance {
    store: Store<CallState>,
    bindings: AuthPlugin,
}

impl WasmPlugin {
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// The interfaces the component imports (all of them from our WIT).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Check a service's configuration.
    pub fn validate_config(
        &self,
        config: &[Field],
    ) -> Result<Result<Requirements, String>, CallError> {
        self.with_fresh_instance(Credentials::default(), |bindings, store| {
            bindings.call_validate_config(store, config)
        })
    }

    /// Ask the plugin how to attach the credential to `request`. `credentials` back the
    /// crypto imports during the call; the caller renders the decision with them after.
    pub fn authorize(
        &self,
        vault: &str,
        request: &Request,
        config: &[Field],
        credentials: &Credentials,
    ) -> Result<Result<Decision, AuthError>, CallError> {
        if self.limits.isolation == Isolation::PerRequest {
            return self.with_fresh_instance(credentials.clone(), |bindings, store| {
                bindings.call_authorize(store, request, config)
            });
        }
        let mut instance = match self.take_warm(vault) {
            Some(instance) => instance,
            None => self.instantiate(Credentials::default())?,
        };
        instance
            .store
            .data_mut()
            .begin(credentials.clone(), self.limits.memory_bytes);
        instance
            .store
            .set_epoch_deadline(deadline_ticks(self.limits.timeout));
        let result = instance
            .bindings
            .call_authorize(&mut instance.store, request, config);
        match result {
            Ok(decision) => {
                instance.store.data_mut().end();
                self.return_warm(vault, instance);
                Ok(decision)
            }
            Err(error) => Err(self.classify(&error, instance.store.data())),
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

    fn instantiate(&self, credentials: Credentials) -> Result<WarmInstance, CallError> {
        let mut store = Store::new(
            &self.engine,
            CallState::new(credentials, self.limits.memory_bytes),
        );
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(deadline_ticks(self.limits.timeout));
        let bindings = self.pre.instantiate(&mut store).map_err(|error| {
            match self.classify(&error, store.data()) {
                CallError::Trap(message) => CallError::Instantiate(message),
                other => other,
            }
        })?;
        Ok(WarmInstance { store, bindings })
    }

    fn with_fresh_instance<R>(
        &self,
        credentials: Credentials,
        call: impl FnOnce(&AuthPlugin, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut instance = self.instantiate(credentials)?;
        // The call gets its whole budget, whatever instantiation took.
        instance
            .store
            .set_epoch_deadline(deadline_ticks(self.limits.timeout));
        call(&instance.bindings, &mut instance.store)
            .map_err(|error| self.classify(&error, instance.store.data()))
    }

    /// Name the cause of a failed call by its type, never by its message.
    fn classify(&self, error: &wasmtime::Error, state: &CallState) -> CallError {
        if state.memory.limit_hit {
            return CallError::MemoryLimit(self.limits.memory_bytes);
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
            Some(trap) => CallError::Trap(trap.to_string()),
            None => CallError::Trap(error_chain(error)),
        }
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    // +1: the current tick may be about to end.
    (timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64) + 1
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

/// What a store carries: the keys for this call and the memory limiter.
struct CallState {
    keys: KeyRing,
    memory: MemoryLimiter,
}

impl CallState {
    fn new(credentials: Credentials, memory_bytes: usize) -> Self {
        CallState {
            keys: KeyRing::new(credentials),
            memory: MemoryLimiter {
                limit_bytes: memory_bytes,
                limit_hit: false,
            },
        }
    }

    /// Arm a warm instance for one call.
    fn begin(&mut self, credentials: Credentials, memory_bytes: usize) {
        *self = CallState::new(credentials, memory_bytes);
    }

    /// Drop this call's credentials and derived keys before the instance goes idle.
    fn end(&mut self) {
        self.keys = KeyRing::default();
    }
}

/// Caps linear memory and records that the cap was hit, so the error can say so.
struct MemoryLimiter {
    limit_bytes: usize,
    limit_hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.limit_hit = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.limit_bytes);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl contract::Host for CallState {}

impl crypto::Host for CallState {
    fn hmac(
        &mut self,
        algorithm: crypto::HashAlgorithm,
        key: crypto::HmacKey,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, crypto::CryptoError>> {
        check_crypto_input(&data)?;
        Ok(self
            .keys
            .hmac(digest_algorithm(algorithm), key_ref(&key), &data)
            .map_err(crypto_error))
    }

    fn hmac_derive(
        &mut self,
        algorithm: crypto::HashAlgorithm,
        key: crypto::HmacKey,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<crypto::DerivedKey, crypto::CryptoError>> {
        check_crypto_input(&data)?;
        Ok(self
            .keys
            .derive(digest_algorithm(algorithm), key_ref(&key), &data)
            .map_err(crypto_error))
    }

    fn digest(
        &mut self,
        algorithm: crypto::HashAlgorithm,
        data: Vec<u8>,
    ) -> wasmtime::Result<Vec<u8>> {
        check_crypto_input(&data)?;
        Ok(crate::vault::keyring::digest(
            digest_algorithm(algorithm),
            &data,
        ))
    }
}

fn check_crypto_input(data: &[u8]) -> wasmtime::Result<()> {
    if data.len() > MAX_CRYPTO_INPUT {
        wasmtime::bail!(
            "crypto input of {} bytes exceeds {MAX_CRYPTO_INPUT}",
            data.len()
        );
    }
    Ok(())
}

fn digest_algorithm(algorithm: crypto::HashAlgorithm) -> DigestAlgorithm {
    match algorithm {
        crypto::HashAlgorithm::Sha1 => DigestAlgorithm::Sha1,
        crypto::HashAlgorithm::Sha256 => DigestAlgorithm::Sha256,
        crypto::HashAlgorithm::Sha512 => DigestAlgorithm::Sha512,
    }
}

fn key_ref(key: &crypto::HmacKey) -> KeyRef<'_> {
    match key {
        crypto::HmacKey::Credential(credential) => KeyRef::Credential {
            slot: &credential.slot,
            prefix: &credential.prefix,
        },
        crypto::HmacKey::Derived(handle) => KeyRef::Derived(*handle),
    }
}

fn crypto_error(error: KeyError) -> crypto::CryptoError {
    match error {
        KeyError::Unbound(slot) => crypto::CryptoError::UnknownSlot(slot.0),
        KeyError::UnknownDerivedKey(handle) => crypto::CryptoError::UnknownDerivedKey(handle),
        KeyError::LimitExceeded => crypto::CryptoError::LimitExceeded,
    }
}
