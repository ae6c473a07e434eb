//! Auth plugins: the step of the request path that attaches a service's credential.
//!
//! Start at [`Plugin::decide`]: it builds the plugin's view of the request (names of
//! credential slots, never their values), calls the plugin under its limits, checks the
//! decision (`decision`) and hands it on in the host's own types (`to_host`): a
//! [`Plan`] for the fill stage (`crate::fill`), or a denial. The types generated from the
//! plugin contract go no further than this module. [`Plugin::authorize`] is both stages at
//! once, for `plugin test` and the plugin tests. Any failure refuses the request.
//!
//! The call is async: it runs on the caller's thread for its first slice and, if the plugin
//! is slow, on the plugin threads after (`offload`), so a plugin that computes for long never
//! holds up the other connections of a worker.
//!
//! Where plugins come from is [`registry`]: the standard plugins embedded in the binary, the
//! `*.wasm` files of the plugin directory (hot reloaded), and the compile cache. The
//! WebAssembly engine itself is `wasm`, the only module that names wasmtime.

pub mod body;
mod builtin;
pub mod config;
pub mod decision;
pub mod dry_run;
mod offload;
pub mod registry;
mod to_host;
mod wasm;

use std::path::PathBuf;
use std::time::SystemTime;

pub use builtin::{PLUGIN_BUILD_DIR, STANDARD_PLUGINS};
pub use config::{ConfigError, PluginConfig};
pub use decision::InvalidDecision;
pub use wasm::{
    CallError, EngineError, EngineSettings, Isolation, LoadError, MAX_CRYPTO_INPUT,
    MAX_LIFTED_BYTES, PluginEngine, PluginLimits, WORLD, contract,
};

use crate::fill::{self, ApplyContext, ApplyError, Masks, Plan};
use crate::request::RequestHead;
use crate::vault::Credentials;
use crate::vault::placeholders::Placeholders;
use contract::{AuthError, BodyNeed, Decision, PluginInfo, Requirements};

/// Where a loaded plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Embedded in the agent-vault binary.
    Builtin,
    /// A `.wasm` file in the plugin directory (or given on the command line).
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A plugin that loaded: what it says it is, where it came from, and its instances.
#[derive(Debug)]
pub struct Plugin {
    info: PluginInfo,
    sha256: String,
    source: Source,
    wasm: wasm::WasmPlugin,
}

/// One request's worth of context for `authorize`.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub service: &'a str,
    pub vault: &'a str,
    pub config: &'a PluginConfig,
    /// The service's credentials by slot name.
    pub credentials: &'a Credentials,
    /// The host's clock, the only time a plugin sees.
    pub now: SystemTime,
    /// The body's SHA-256, when the service's requirements ask for it.
    pub body_sha256: Option<&'a [u8; 32]>,
    /// The service's placeholders in the path, query and headers, for `authorize`: replaced
    /// by their values after the plugin's edits and before a signer signs, so that the
    /// signature covers what goes out. `decide` does not look at them.
    pub placeholders: Option<&'a Placeholders>,
}

/// What the plugin decided, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the request once the fill stage has applied this plan.
    Forward(Plan),
    /// The plugin refused the request; answer with this status and reason.
    Deny { status: u16, reason: String },
}

/// What the plugin decided, once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The request carries its credential and may be forwarded.
    Forward,
    /// The plugin refused the request; answer with this status and reason.
    Deny { status: u16, reason: String },
}

/// Why a plugin could not authorize a request. Every variant refuses the request.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    #[error("plugin {plugin} {error}")]
    Call { plugin: String, error: CallError },
    #[error("plugin {plugin} failed: {message}")]
    Failed { plugin: String, message: String },
    #[error("plugin {plugin} returned an invalid decision: {error}")]
    InvalidDecision {
        plugin: String,
        error: InvalidDecision,
    },
    #[error("plugin {plugin}: {error}")]
    Apply { plugin: String, error: ApplyError },
}

/// The longest plugin-supplied message the host repeats, in characters.
const MAX_PLUGIN_MESSAGE: usize = 512;

impl Plugin {
    pub(crate) fn new(
        info: PluginInfo,
        sha256: String,
        source: Source,
        wasm: wasm::WasmPlugin,
    ) -> Self {
        Plugin {
            info,
            sha256,
            source,
            wasm,
        }
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// What the plugin said of itself when it loaded.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// SHA-256 of the `.wasm` file, lower-case hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn limits(&self) -> PluginLimits {
        self.wasm.limits()
    }

    /// The interfaces the component imports.
    pub fn imports(&self) -> &[String] {
        self.wasm.imports()
    }

    /// Check a service's configuration and return what it needs (slots, body), blocking this
    /// thread for at most the plugin's deadline (a service written or tested).
    pub fn validate_config(
        &self,
        config: &PluginConfig,
    ) -> Result<Requirements, PluginConfigError> {
        config::check_keys(&self.info, config)?;
        let verdict = self.wasm.validate_config(config.fields());
        self.checked_requirements(verdict)
    }

    /// `validate_config` on the request path: a slow plugin leaves the connection's worker,
    /// as in `authorize`.
    pub async fn requirements(
        &self,
        config: &PluginConfig,
    ) -> Result<Requirements, PluginConfigError> {
        config::check_keys(&self.info, config)?;
        let verdict = self.wasm.requirements(config.shared_fields()).await;
        self.checked_requirements(verdict)
    }

    fn checked_requirements(
        &self,
        verdict: Result<Result<Requirements, String>, CallError>,
    ) -> Result<Requirements, PluginConfigError> {
        let requirements = verdict
            .map_err(|error| PluginError::Call {
                plugin: self.name().to_owned(),
                error,
            })?
            .map_err(|message| ConfigError::Rejected(sanitize(&message)))?;
        config::check_requirements(&self.info, &requirements)?;
        Ok(requirements)
    }

    /// Let the plugin shape `head` for `call` (decide, then fill): on `Outcome::Forward`
    /// the request carries its credential. On any error `head` must not be forwarded.
    pub async fn authorize(
        &self,
        head: &mut RequestHead,
        call: &Call<'_>,
    ) -> Result<Outcome, PluginError> {
        self.authorize_masked(head, call, None).await
    }

    /// `authorize`, also recording how credential-bearing values look with secrets hidden.
    pub async fn authorize_masked(
        &self,
        head: &mut RequestHead,
        call: &Call<'_>,
        masks: Option<&mut Masks>,
    ) -> Result<Outcome, PluginError> {
        match self.decide(head, call).await? {
            Verdict::Deny { status, reason } => Ok(Outcome::Deny { status, reason }),
            Verdict::Forward(plan) => {
                let context = ApplyContext {
                    credentials: call.credentials,
                    now: call.now,
                    body_sha256: call.body_sha256,
                    placeholders: call.placeholders,
                };
                fill::apply(&plan, head, context, masks).map_err(|error| PluginError::Apply {
                    plugin: self.name().to_owned(),
                    error,
                })?;
                Ok(Outcome::Forward)
            }
        }
    }

    /// The plugin's decision for `head`, checked: the decide stage of the request path.
    pub async fn decide(
        &self,
        head: &RequestHead,
        call: &Call<'_>,
    ) -> Result<Verdict, PluginError> {
        let view = request_view(head, call);
        let decision = self
            .wasm
            .authorize(
                call.vault,
                view,
                call.config.shared_fields(),
                call.credentials,
            )
            .await
            .map_err(|error| PluginError::Call {
                plugin: self.name().to_owned(),
                error,
            })?
            .map_err(|error| PluginError::Failed {
                plugin: self.name().to_owned(),
                message: match error {
                    AuthError::InvalidConfig(message) => {
                        format!("invalid configuration: {}", sanitize(&message))
                    }
                    AuthError::Internal(message) => sanitize(&message),
                },
            })?;
        let invalid = |error| PluginError::InvalidDecision {
            plugin: self.name().to_owned(),
            error,
        };
        match decision {
            Decision::Deny(denial) => {
                decision::check_denial(&denial).map_err(invalid)?;
                Ok(Verdict::Deny {
                    status: denial.status,
                    reason: denial.reason,
                })
            }
            Decision::Forward(forward) => {
                let plan = decision::check_forward(forward, call.credentials).map_err(invalid)?;
                Ok(Verdict::Forward(plan))
            }
        }
    }
}

/// A service configuration that cannot work: the keys, the plugin's verdict, or the call.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PluginConfigError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// Whether a body need asks for the SHA-256 of this request's body.
pub fn needs_body_sha256(need: &BodyNeed, head: &RequestHead) -> bool {
    match need {
        BodyNeed::None => false,
        BodyNeed::Sha256 => true,
        BodyNeed::Sha256UnlessHeader(header) => !head.headers.contains_key(header.as_str()),
    }
}

/// The plugin's view of a request: everything but credential values and the body.
fn request_view(head: &RequestHead, call: &Call<'_>) -> contract::Request {
    let since_epoch = call
        .now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    contract::Request {
        method: head.method.as_str().to_owned(),
        scheme: head.scheme.as_str().to_owned(),
        host: head.host.clone(),
        port: head.port,
        path: head.path.clone(),
        query: head
            .query_params()
            .into_iter()
            .map(|(name, value)| contract::Field { name, value })
            .collect(),
        headers: head
            .headers
            .iter()
            .map(|(name, value)| contract::Field {
                name: name.as_str().to_owned(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            })
            .collect(),
        service: call.service.to_owned(),
        vault: call.vault.to_owned(),
        now: contract::Timestamp {
            seconds: since_epoch.as_secs(),
            nanoseconds: since_epoch.subsec_nanos(),
        },
        body_sha256: call.body_sha256.map(|hash| hash.to_vec()),
        credentials: call.credentials.slot_names().map(str::to_owned).collect(),
    }
}

/// A plugin's message, printable and bounded, before the host repeats it.
fn sanitize(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_PLUGIN_MESSAGE)
        .collect()
}
