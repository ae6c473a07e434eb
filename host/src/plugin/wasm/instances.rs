//! A loaded plugin's calls as the rest of the host makes them (`validate_config`,
//! `requirements`, `authorize`), and its warm instances: one idle list per vault, capped per
//! vault and, across every plugin, by the [`IdleBudget`] so they never exhaust the pool.
//!
//! Where each call runs (first slice here, the rest on the plugin threads) is decided by
//! `plugin::offload`; what a call does inside wasmtime is `calls.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::calls::{Linked, WarmInstance};
use super::contract::{AuthError, Decision, Field, Request, Requirements};
use super::ticker::Ticker;
use super::{CallError, Isolation, PluginLimits};
use crate::plugin::offload::{Gate, PluginThreads, Ran};
use crate::vault::Credentials;

/// A plugin ready to be called: linked, with its limits, its share of the plugin threads and
/// its warm instances.
pub struct WasmPlugin {
    pub(super) linked: Arc<Linked>,
    pub(super) imports: Vec<String>,
    pub(super) warm: Mutex<HashMap<String, Vec<WarmInstance>>>,
    pub(super) idle: Arc<IdleBudget>,
    pub(super) gate: Gate,
    pub(super) threads: Arc<PluginThreads>,
    pub(super) _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("limits", &self.linked.limits)
            .finish_non_exhaustive()
    }
}

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

/// Caps on idle warm instances: globally, so they never exhaust the instance pool, and per
/// vault of one plugin (two per core: enough for every worker to find one).
#[derive(Debug)]
pub(super) struct IdleBudget {
    available: AtomicUsize,
    per_vault: usize,
}

impl IdleBudget {
    pub(super) fn new(capacity: usize) -> Self {
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
