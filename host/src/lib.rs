//! agent-vault: a credential proxy for AI agents.
//!
//! Agents send requests through the proxy with a short-lived session token; the proxy finds
//! the service for the target host, lets the service's WebAssembly plugin decide how the
//! credential is attached, and forwards. The agent never holds a secret. See
//! `ARCHITECTURE.md` for the life of a request and the invariants.
//!
//! The request path, in order: `request` (the request model), `plugin` (attach the
//! credential), with plaintext credentials confined to `vault`.

pub mod accept;
pub mod api;
pub mod auth;
pub mod authority;
pub mod cli;
pub mod client_addr;
pub mod console;
pub mod drain;
pub mod fill;
pub mod guide;
pub mod master_key;
pub mod metrics;
pub mod notify;
pub mod path;
pub mod plugin;
pub mod proposals;
pub mod proxy;
pub mod public_url;
pub mod ratelimit;
pub mod request;
pub mod request_log;
pub mod server;
pub mod services;
pub mod store;
pub mod transparent;
pub mod upstream;
pub mod vault;
pub mod workers;
