//! Fill: the stage that writes credentials into the outgoing request once its plugin has
//! decided. It applies the checked decision (`plan.rs`: edits in order, each credential
//! reference rendered by the vault), then the service's placeholders in the path, query and
//! headers (the vault's `placeholders.rs`), then the protocol signer (`sigv4.rs`) last, so
//! that a signature covers exactly what leaves (`apply.rs`).
//!
//! Nothing here sees the plugin contract's WebAssembly types: `crate::plugin` checks the
//! plugin's answer and hands over a [`Plan`]. The vault renders values and computes keyed
//! hashes; this module decides where the results go.

mod apply;
mod context;
pub mod plan;
pub mod sigv4;

pub use apply::{ApplyError, MAX_APPLY_TIME, apply};
pub use context::{ApplyContext, Masks};
pub use plan::Plan;
