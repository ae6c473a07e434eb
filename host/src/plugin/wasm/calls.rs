//! One call into a plugin inside wasmtime: the linked component and its typed exports, the
//! store each call gets (memory limiter, epoch callback, hostcall fuel), the first-slice
//! attempt on a connection worker, the async call on the plugin threads, the blocking call
//! that runs on, and the one place a failed call is named by its cause ([`CallError`]).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{ComponentExportIndex, Instance, TypedFunc};
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, Trap};

use super::bindings::AuthPluginPre;
use super::contract::{AuthError, Decision, Field, PluginInfo, Request, Requirements};
use super::host::{self, Budget, CallState, CryptoInputTooLarge, Pace, SliceOver};
use super::{CallError, MAX_CRYPTO_INPUT, MAX_LIFTED_BYTES, PluginLimits};
use crate::vault::Credentials;

/// Ticks before a call's first epoch callback: its first slice lasts one to two ticks, so a
/// call of a few microseconds never meets the callback.
const FIRST_SLICE_TICKS: u64 = 2;

/// What every call of one plugin shares: the linked component, where its exports are, the
/// engine and the limits. A call that moves to the plugin threads takes a reference along.
pub(super) struct Linked {
    pub(super) pre: AuthPluginPre<CallState>,
    pub(super) exports: ExportIndices,
    pub(super) engine: Engine,
    pub(super) limits: PluginLimits,
}

pub(super) struct ExportIndices {
    pub(super) describe: ComponentExportIndex,
    pub(super) validate_config: ComponentExportIndex,
    pub(super) authorize: ComponentExportIndex,
}

type DescribeFunc = TypedFunc<(), (PluginInfo,)>;
type ValidateConfigFunc = TypedFunc<(Arc<[Field]>,), (Result<Requirements, String>,)>;
type AuthorizeFunc = TypedFunc<(Request, Arc<[Field]>), (Result<Decision, AuthError>,)>;
type AuthorizeByRefFunc<'a> = TypedFunc<(&'a Request, &'a [Field]), (Result<Decision, AuthError>,)>;

/// The exports of one instance, typed.
pub(super) struct Exports {
    pub(super) describe: DescribeFunc,
    pub(super) validate_config: ValidateConfigFunc,
    pub(super) authorize: AuthorizeFunc,
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

pub(super) struct WarmInstance {
    store: Store<CallState>,
    exports: Exports,
}

/// What one authorize call returns, with the instance to keep warm if it succeeded.
pub(super) type AuthorizeOutput = (
    Result<Result<Decision, AuthError>, CallError>,
    Option<WarmInstance>,
);

impl Linked {
    /// A first attempt at an authorize call, on this thread, in `warm` or a fresh instance:
    /// `None` if it was not done within its first slice (the instance is dropped, and the
    /// caller makes the call again on the plugin threads).
    pub(super) fn authorize_inline(
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
    pub(super) fn validate_config_inline(
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
    pub(super) async fn authorize_async(
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

    pub(super) async fn validate_config_async(
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
    pub(super) fn call_blocking<R>(
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

/// `error` and its causes on one line.
pub(super) fn error_chain(error: &wasmtime::Error) -> String {
    format!("{error:#}")
}
