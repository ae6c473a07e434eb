//! Helpers that read like what a caller of the plugin runtime does: load a plugin, build a
//! request, bind credentials, authorize, look at the outgoing request.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use agent_vault::plugin::registry::{Registry, RegistrySettings};
use agent_vault::plugin::{
    Call, EngineSettings, Outcome, PLUGIN_BUILD_DIR, Plugin, PluginConfig, PluginEngine,
    PluginError,
};
use agent_vault::request::RequestHead;
use agent_vault::vault::placeholders::Placeholders;
use agent_vault::vault::{Credentials, Secret};
use http::Method;

/// One engine for the whole test binary (each engine reserves its own instance pool).
pub fn engine() -> PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            PluginEngine::new(&EngineSettings {
                pool_instances: 256,
                ..Default::default()
            })
            .unwrap()
        })
        .clone()
}

/// Compiled artifacts shared by every test run, so only the first run compiles.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// A registry with the standard plugins only.
pub fn standard() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Registry::new(
            engine(),
            RegistrySettings {
                cache_dir: Some(cache_dir()),
                ..Default::default()
            },
        )
        .unwrap()
    })
}

/// The built `.wasm` of a plugin or fixture crate (e.g. `fixture_trap`).
pub fn built_wasm(crate_name: &str) -> PathBuf {
    PathBuf::from(PLUGIN_BUILD_DIR).join(format!("{crate_name}.wasm"))
}

/// A request as an agent would send it.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> RequestHead {
    let mut head = RequestHead::from_url(method.parse::<Method>().unwrap(), url).unwrap();
    for (name, value) in headers {
        head.headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    head
}

pub fn config(pairs: &[(&str, &str)]) -> PluginConfig {
    PluginConfig::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

pub fn credentials(pairs: &[(&str, &str)]) -> Credentials {
    Credentials::new(
        pairs
            .iter()
            .map(|(slot, value)| (slot.to_string(), Secret::new(*value))),
    )
}

/// 2015-08-30T12:36:00Z, the AWS suite's clock.
pub fn aws_suite_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

/// Run a plugin call to its end from a test's thread, as a connection worker would: its first
/// slice here, the rest (if it is slow) on the engine's plugin threads.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// What one authorize call did.
pub struct Authorized {
    pub outcome: Result<Outcome, PluginError>,
    pub request: RequestHead,
}

impl Authorized {
    /// The header's values as text, in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.request
            .headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn forwarded(&self) -> &Self {
        assert_eq!(self.outcome, Ok(Outcome::Forward));
        self
    }
}

/// One authorize call, set up step by step.
pub struct Attempt<'a> {
    plugin: &'a Plugin,
    request: RequestHead,
    config: PluginConfig,
    credentials: Credentials,
    now: SystemTime,
    vault: String,
    body: Option<Vec<u8>>,
    placeholders: Option<Placeholders>,
}

impl<'a> Attempt<'a> {
    pub fn new(plugin: &'a Plugin, request: RequestHead) -> Self {
        Attempt {
            plugin,
            request,
            config: PluginConfig::default(),
            credentials: Credentials::default(),
            now: SystemTime::now(),
            vault: "default".into(),
            body: None,
            placeholders: None,
        }
    }

    pub fn config(mut self, pairs: &[(&str, &str)]) -> Self {
        self.config = config(pairs);
        self
    }

    pub fn credentials(mut self, pairs: &[(&str, &str)]) -> Self {
        self.credentials = credentials(pairs);
        self
    }

    pub fn now(mut self, now: SystemTime) -> Self {
        self.now = now;
        self
    }

    pub fn vault(mut self, vault: &str) -> Self {
        self.vault = vault.into();
        self
    }

    /// The service's placeholders, replaced in the request as the proxy does.
    pub fn placeholders(mut self, placeholders: Placeholders) -> Self {
        self.placeholders = Some(placeholders);
        self
    }

    /// The body whose SHA-256 the host passes to the plugin.
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = Some(body.to_vec());
        self
    }

    pub fn run(mut self) -> Authorized {
        use sha2::Digest as _;
        let body_sha256: Option<[u8; 32]> = self
            .body
            .as_ref()
            .map(|body| sha2::Sha256::digest(body).into());
        let call = Call {
            service: "svc",
            vault: &self.vault,
            config: &self.config,
            credentials: &self.credentials,
            now: self.now,
            body_sha256: body_sha256.as_ref(),
            placeholders: self.placeholders.as_ref(),
        };
        let outcome = block_on(self.plugin.authorize(&mut self.request, &call));
        Authorized {
            outcome,
            request: self.request,
        }
    }
}
