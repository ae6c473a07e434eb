//! The guest SDK for agent-vault auth plugins.
//!
//! A plugin is one type implementing [`Plugin`] and one [`export_plugin!`] line. The SDK owns
//! the bindings to `wit/plugin.wit`, the builders for decisions and values, the host crypto
//! imports, and the bits a `#![no_std]` WebAssembly component needs (an allocator shared with
//! libc's `cabi_realloc`, a panic handler). It does not own any policy: that is the plugin's.
//!
//! Plugins are `#![no_std]` so that the component imports nothing but our WIT (a `std` build
//! for `wasm32-wasip2` pulls in WASI, which the host refuses). `alloc` is available. The
//! `bearer` plugin (`plugins/bearer/src/lib.rs`) in full:
//!
//! ```text
//! #![no_std]
//! use agent_vault_plugin::prelude::*;
//!
//! struct Bearer;
//!
//! impl Plugin for Bearer {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new(
//!             "bearer",
//!             env!("CARGO_PKG_VERSION"),
//!             "Sends the token as `Authorization: Bearer <token>`.",
//!         )
//!         .credential("token", "the API token", true)
//!     }
//!     fn authorize(_request: &Request, _config: &Config) -> Result<Decision, AuthError> {
//!         Ok(Forward::new()
//!             .set_header("authorization", [lit("Bearer "), slot("token")])
//!             .into())
//!     }
//! }
//!
//! export_plugin!(Bearer);
//! ```
#![no_std]

extern crate alloc;

mod builders;
mod config;
mod crypto;
mod encode;
#[cfg(target_arch = "wasm32")]
mod runtime;

/// Bindings generated from `wit/plugin.wit`. Plugins rarely need this module directly: the
/// [`prelude`] re-exports what they use.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "auth-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_auth_plugin",
        default_bindings_module: "agent_vault_plugin::bindings",
    });
}

pub use builders::{IntoValue, base64, base64url, hex, lit, percent, raw, slot};
pub use config::Config;
pub use crypto::{HmacKey, digest, hmac, hmac_derive};
pub use encode::{base64_encode, hex_encode};

pub use bindings::agent_vault::plugin::crypto::{CryptoError, DerivedKey, HashAlgorithm};
pub use bindings::agent_vault::plugin::types::{
    Atom, AuthError, AwsSigv4, BodyNeed, ConfigKey, CredentialSlot, Decision, Denial, Edit,
    Encoding, Field, Forward, NamedValue, Part, PluginInfo, Request, Requirements, Signer,
    Sigv4Payload, Sigv4Placement, Timestamp, Value,
};

/// Everything a plugin usually needs, plus `String`, `Vec`, `format!` and `ToString` from
/// `alloc`.
pub mod prelude {
    pub use crate::{
        Atom, AuthError, AwsSigv4, BodyNeed, Config, CryptoError, Decision, Denial, Edit, Encoding,
        Field, Forward, HashAlgorithm, HmacKey, IntoValue, Part, Plugin, PluginInfo, Request,
        Requirements, Signer, Sigv4Payload, Sigv4Placement, Timestamp, Value, base64,
        base64_encode, base64url, digest, export_plugin, hex, hex_encode, hmac, hmac_derive, lit,
        percent, raw, slot,
    };
    pub use alloc::borrow::ToOwned;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

/// An auth plugin. Implement it on a unit struct and pass that struct to [`export_plugin!`].
pub trait Plugin {
    /// What this plugin is and what it needs; called once when the host loads it.
    fn describe() -> PluginInfo;

    /// Check one service's configuration and say what it needs. The default accepts any
    /// configuration that has every required key of `describe` and asks for the slots and
    /// body access that `describe` lists.
    fn validate_config(config: &Config) -> Result<Requirements, String> {
        let info = Self::describe();
        config.check_required(&info.config)?;
        Ok(Requirements {
            credentials: info.credentials,
            body: info.body,
        })
    }

    /// Decide how to attach the credential to this request, or refuse it.
    fn authorize(request: &Request, config: &Config) -> Result<Decision, AuthError>;
}

use alloc::string::String;
use alloc::vec::Vec;

/// Connects a [`Plugin`] to the generated bindings; used by [`export_plugin!`].
#[doc(hidden)]
pub struct Adapter<P>(core::marker::PhantomData<P>);

impl<P: Plugin> bindings::Guest for Adapter<P> {
    fn describe() -> PluginInfo {
        P::describe()
    }

    fn validate_config(config: Vec<Field>) -> Result<Requirements, String> {
        P::validate_config(&Config::new(config))
    }

    fn authorize(request: Request, config: Vec<Field>) -> Result<Decision, AuthError> {
        P::authorize(&request, &Config::new(config))
    }
}

/// Export a [`Plugin`] implementation as the component's `auth-plugin` world.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        type __AgentVaultExportedPlugin = $crate::Adapter<$plugin>;
        $crate::bindings::__export_auth_plugin!(
            __AgentVaultExportedPlugin with_types_in $crate::bindings
        );
    };
}
