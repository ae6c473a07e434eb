//! What a plugin's store carries while it runs: the keys of the call (behind the crypto
//! imports), the memory limiter, and the call's time budget, which the epoch callback reads.
//!
//! Nothing here decides where a call runs (that is `plugin::offload`) or what a decision may
//! do (`plugin::decision`); this is the host side of one call, as the guest sees it.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};

use super::bindings::agent_vault::plugin::crypto;
use super::contract;
use crate::vault::Credentials;
use crate::vault::keyring::{DigestAlgorithm, KeyError, KeyRef, KeyRing};

/// The largest input a crypto import hashes in one call; beyond it the call fails.
pub const MAX_CRYPTO_INPUT: usize = 1024 * 1024;

/// What a store carries: the keys for this call, the memory limiter and the time budget.
pub(super) struct CallState {
    keys: KeyRing,
    pub(super) memory: MemoryLimiter,
    pub(super) budget: Budget,
}

impl CallState {
    pub(super) fn new(credentials: Credentials, memory_bytes: usize, budget: Budget) -> Self {
        CallState {
            keys: KeyRing::new(credentials),
            memory: MemoryLimiter {
                limit_bytes: memory_bytes,
                limit_hit: false,
            },
            budget,
        }
    }

    /// Arm a warm instance for one call.
    pub(super) fn begin(&mut self, credentials: Credentials, memory_bytes: usize, budget: Budget) {
        *self = CallState::new(credentials, memory_bytes, budget);
    }

    /// Drop this call's credentials and derived keys before the instance goes idle.
    pub(super) fn end(&mut self) {
        self.keys = KeyRing::default();
    }
}

/// How long a call may run, and what it does at each epoch tick past its first slice.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    deadline: Instant,
    pace: Pace,
}

/// What a call does when its first slice (and each tick after it) ends before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    /// A first attempt on a connection worker: it stops with [`SliceOver`], and the call is
    /// made again from the start on the plugin threads (`offload`).
    FirstSliceOnly,
    /// An async call on the plugin threads: it yields at every tick, so that the threads
    /// take turns among the slow calls.
    Yield,
    /// A blocking call (load, `plugin test`, the API): it runs on.
    RunOn,
}

/// A first attempt stopped at the end of its first slice: not an error of the plugin's.
#[derive(Debug, thiserror::Error)]
#[error("the plugin call did not finish in its first slice")]
pub(super) struct SliceOver;

impl Budget {
    pub(super) fn new(timeout: Duration, pace: Pace) -> Self {
        Budget {
            deadline: Instant::now() + timeout,
            pace,
        }
    }
}

/// The epoch callback: past the deadline the guest traps with `Trap::Interrupt` (reported as
/// a timeout); before it, the call stops, yields for one tick or runs on, by its [`Pace`].
pub(super) fn on_epoch(store: StoreContextMut<'_, CallState>) -> wasmtime::Result<UpdateDeadline> {
    let budget = store.data().budget;
    if Instant::now() >= budget.deadline {
        return Ok(UpdateDeadline::Interrupt);
    }
    match budget.pace {
        Pace::FirstSliceOnly => Err(SliceOver.into()),
        Pace::Yield => Ok(UpdateDeadline::Yield(1)),
        Pace::RunOn => Ok(UpdateDeadline::Continue(1)),
    }
}

/// Caps linear memory and records that the cap was hit, so the error can say so.
pub(super) struct MemoryLimiter {
    limit_bytes: usize,
    pub(super) limit_hit: bool,
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

/// A crypto import was given more than [`MAX_CRYPTO_INPUT`] bytes. Raised as the call's
/// error, so that the host can name it by type.
#[derive(Debug, thiserror::Error)]
#[error("crypto input larger than {MAX_CRYPTO_INPUT} bytes")]
pub(super) struct CryptoInputTooLarge;

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
        return Err(wasmtime::Error::new(CryptoInputTooLarge));
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
