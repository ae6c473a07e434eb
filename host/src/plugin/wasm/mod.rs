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
//! Files: `engine.rs` (engine, compiling, linking, the epoch ticker), `instances.rs` (a
//! plugin's calls and warm instances), `calls.rs` (one call inside wasmtime and its
//! errors), `limits.rs` (settings and limits), `host.rs` (the store's side of a call).
//!
//! The rest of the host sees [`PluginEngine`], [`WasmPlugin`], [`CallError`] and the
//! contract types generated from the WIT (re-exported as `plugin::contract`).

mod calls;
mod engine;
mod host;
mod instances;
mod limits;
mod ticker;

use std::time::Duration;

pub use engine::{CompiledPlugin, PluginEngine};
pub use host::MAX_CRYPTO_INPUT;
pub use instances::WasmPlugin;
pub use limits::{EngineSettings, Isolation, MAX_LIFTED_BYTES, PluginLimits};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "auth-plugin",
        imports: { default: trappable },
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::agent_vault::plugin::types as contract;

/// The world every plugin implements.
pub const WORLD: &str = "agent-vault:plugin/auth-plugin@0.1.0";

/// The interfaces a plugin may import. Anything else is refused at load.
pub const ALLOWED_IMPORTS: [&str; 2] = [
    "agent-vault:plugin/types@0.1.0",
    "agent-vault:plugin/crypto@0.1.0",
];

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
