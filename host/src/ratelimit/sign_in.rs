//! The AUTH tier where a password is checked (signing in, the approval page's login, changing
//! one's password): failed attempts counted per account *and* client address, and per device
//! for a client that signed in to the account before, so that no other client's failures
//! hold back the right password from the owner.
//!
//! Counting per address alone let any local process lock the owner out by failing 50 times:
//! everyone on the machine is 127.0.0.1. Counting per account alone would let anyone lock
//! any account. So [`SignInLimiter`] keeps three kinds of buckets of failures:
//!
//! - per device: a client that signed in to an account before holds a device token for it
//!   (`auth/devices.rs`, OWASP's "device cookies"). An attempt that shows one, recognised
//!   as this account's, counts in that device's bucket (the AUTH tier's budget) and in no
//!   other, so failures of clients without it, at the same address or not, never hold it
//!   back. Its failures count against the device, so a stolen device token still cannot
//!   guess without limit: once its bucket is spent, the device is no better than a client
//!   without one and goes through the two buckets below;
//! - per (account, client address): the AUTH tier's budget (50 per 5 minutes by default).
//!   This is what stops one client from guessing one account's password; past it, that
//!   client waits before trying that account again, the right password included (a wait
//!   that only wrong passwords got would tell it when it had guessed right);
//! - per client address, across accounts: four times that. This stops a client spraying
//!   many accounts (each guess costs an Argon2 hash too). Past it, the client waits for every
//!   account except those it has signed in to successfully since the server started: a
//!   person who signed in from there before is held back only by failures at their own
//!   account.
//!
//! An attempt is counted when it starts (so concurrent guesses cannot slip past the count)
//! and given back when it succeeds: successes cost nothing. Accounts are keyed by the
//! lower-cased email the caller gives, addresses as [`super::attempt_key`] makes them (IPv6
//! per /64), devices by their token's public id. Which clients share an address is up to the
//! network: on one machine, every local client is 127.0.0.1, and behind a reverse proxy the
//! address is the one it forwards (`--trusted-proxies`). Whether a device token is this
//! account's is the caller's to find out (`api/auth.rs`); a token that is not counts as none.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{AttemptLimiter, Bucket, Clock, MIN_SWEEP_LEN, Rate, SWEEP_INTERVAL, attempt_key};

/// How many more failures a client may have across accounts than at one account.
const ACROSS_ACCOUNTS: u32 = 4;

/// How long a successful sign-in keeps its (account, address) clear of the address's
/// failures at other accounts: as long as a login session lasts without use.
const SIGNED_IN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// (Account, address) pairs remembered as signed in, at most; past it, the oldest go.
const MAX_SIGNED_IN: usize = 10_000;

/// Why a sign-in attempt must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignInRefused {
    /// This client failed too often at this account.
    #[error("too many failed sign-ins at this account; retry after {retry_after:?}")]
    Account { retry_after: Duration },
    /// This client failed too often across accounts.
    #[error("too many failed sign-ins; retry after {retry_after:?}")]
    Client { retry_after: Duration },
}

impl SignInRefused {
    /// The exact time to wait.
    pub fn retry_after(&self) -> Duration {
        match self {
            SignInRefused::Account { retry_after } | SignInRefused::Client { retry_after } => {
                *retry_after
            }
        }
    }
}

/// Failed sign-ins per (account, client address) and per client address.
#[derive(Debug, Clone)]
pub struct SignInLimiter {
    /// `None`: no limit.
    shared: Option<Arc<SignIns>>,
}

#[derive(Debug)]
struct SignIns {
    per_account: Rate,
    per_client: Rate,
    state: Mutex<SignInState>,
    clock: Arc<dyn Clock>,
}

type AccountKey = (IpAddr, String);

/// Where an attempt under way is counted.
#[derive(Debug)]
enum Counted {
    /// In the device's bucket only; the pair is remembered as signed in if it succeeds.
    Device { device: String, pair: AccountKey },
    /// In the (account, address) and the address's buckets.
    Client(AccountKey),
}

#[derive(Debug)]
struct SignInState {
    /// By the public id of a device token.
    devices: HashMap<String, Bucket>,
    accounts: HashMap<AccountKey, Bucket>,
    clients: HashMap<IpAddr, Bucket>,
    /// Pairs that signed in successfully, until when that counts.
    signed_in: HashMap<AccountKey, Instant>,
    next_sweep: Instant,
    sweep_at_len: usize,
}

/// One attempt under way. Dropped, it counts as a failure; [`SignInAttempt::succeeded`]
/// gives it back.
#[derive(Debug)]
#[must_use = "an attempt counts as failed unless `succeeded` is called"]
pub struct SignInAttempt {
    /// `None` when there is no limit.
    counted: Option<(Arc<SignIns>, Counted)>,
}

impl SignInLimiter {
    /// With the AUTH tier of `attempts` (the same budget and clock), or no limit if it has
    /// none.
    pub fn alongside(attempts: &AttemptLimiter) -> SignInLimiter {
        let shared = attempts.shared.as_ref().map(|attempts| {
            let per_client = Rate {
                interval: attempts.rate.interval / ACROSS_ACCOUNTS,
                capacity: attempts.rate.capacity,
            };
            let now = attempts.clock.now();
            Arc::new(SignIns {
                per_account: attempts.rate,
                per_client,
                state: Mutex::new(SignInState {
                    devices: HashMap::new(),
                    accounts: HashMap::new(),
                    clients: HashMap::new(),
                    signed_in: HashMap::new(),
                    next_sweep: now + SWEEP_INTERVAL,
                    sweep_at_len: MIN_SWEEP_LEN,
                }),
                clock: attempts.clock.clone(),
            })
        });
        SignInLimiter { shared }
    }

    /// Start an attempt by `client` at `account` (a lower-cased email), counted as a failure
    /// until it succeeds. With `device`, the public id of a device token the caller found to
    /// be this account's, the attempt counts against that device while it has failures
    /// left; otherwise (or once they are spent) it is refused if this client has failed too
    /// often at this account, or across accounts at one it has not signed in to.
    pub fn attempt(
        &self,
        account: &str,
        client: IpAddr,
        device: Option<&str>,
    ) -> Result<SignInAttempt, SignInRefused> {
        let Some(shared) = &self.shared else {
            return Ok(SignInAttempt { counted: None });
        };
        let pair = (attempt_key(client), account.to_owned());
        let now = shared.clock.now();
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sweep_if_due(now);
        let counted = match device {
            Some(device) if state.take_device(device, &shared.per_account, now) => {
                Counted::Device {
                    device: device.to_owned(),
                    pair,
                }
            }
            // No device, or one whose failures are spent: as any client.
            _ => {
                state.take_client(&pair, shared, now)?;
                Counted::Client(pair)
            }
        };
        Ok(SignInAttempt {
            counted: Some((shared.clone(), counted)),
        })
    }
}

impl SignInAttempt {
    /// The password was right: the attempt costs nothing, and this client is held back at
    /// this account only by its own failures there from now on.
    pub fn succeeded(mut self) {
        let Some((shared, counted)) = self.counted.take() else {
            return;
        };
        let now = shared.clock.now();
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let pair = match counted {
            Counted::Device { device, pair } => {
                if let Some(bucket) = state.devices.get_mut(&device) {
                    *bucket = bucket.give_back(&shared.per_account, now);
                }
                pair
            }
            Counted::Client(pair) => {
                if let Some(bucket) = state.accounts.get_mut(&pair) {
                    *bucket = bucket.give_back(&shared.per_account, now);
                }
                if let Some(bucket) = state.clients.get_mut(&pair.0) {
                    *bucket = bucket.give_back(&shared.per_client, now);
                }
                pair
            }
        };
        state.remember_signed_in(pair, now + SIGNED_IN_FOR, now);
    }
}

impl SignInState {
    /// Take one attempt from `device`'s bucket; whether it had one.
    fn take_device(&mut self, device: &str, rate: &Rate, now: Instant) -> bool {
        let bucket = self
            .devices
            .get(device)
            .copied()
            .unwrap_or_else(|| Bucket::full(now));
        match bucket.take(rate, now) {
            Ok(taken) => {
                self.devices.insert(device.to_owned(), taken);
                true
            }
            Err(_) => false,
        }
    }

    /// Take one attempt from the (account, address) bucket and the address's, or neither.
    fn take_client(
        &mut self,
        pair: &AccountKey,
        limits: &SignIns,
        now: Instant,
    ) -> Result<(), SignInRefused> {
        let account_bucket = self
            .accounts
            .get(pair)
            .copied()
            .unwrap_or_else(|| Bucket::full(now));
        let client_bucket = self
            .clients
            .get(&pair.0)
            .copied()
            .unwrap_or_else(|| Bucket::full(now));
        let account_taken = account_bucket
            .take(&limits.per_account, now)
            .map_err(|retry_after| SignInRefused::Account { retry_after })?;
        let signed_in_here = self.signed_in.get(pair).is_some_and(|until| *until > now);
        let client_taken = match client_bucket.take(&limits.per_client, now) {
            Ok(taken) => taken,
            // The address is spent, but not for an account it has signed in to: keep it at
            // the brim rather than count past it.
            Err(_) if signed_in_here => client_bucket,
            Err(retry_after) => return Err(SignInRefused::Client { retry_after }),
        };
        self.accounts.insert(pair.clone(), account_taken);
        self.clients.insert(pair.0, client_taken);
        Ok(())
    }

    fn len(&self) -> usize {
        self.devices.len() + self.accounts.len() + self.clients.len()
    }

    /// Forget buckets indistinguishable from new ones, and sign-ins that no longer count.
    fn sweep_if_due(&mut self, now: Instant) {
        if now < self.next_sweep && self.len() < self.sweep_at_len {
            return;
        }
        self.devices.retain(|_, bucket| !bucket.is_full(now));
        self.accounts.retain(|_, bucket| !bucket.is_full(now));
        self.clients.retain(|_, bucket| !bucket.is_full(now));
        self.signed_in.retain(|_, until| *until > now);
        self.next_sweep = now + SWEEP_INTERVAL;
        self.sweep_at_len = (self.len() * 2).max(MIN_SWEEP_LEN);
    }

    fn remember_signed_in(&mut self, key: AccountKey, until: Instant, now: Instant) {
        if self.signed_in.len() >= MAX_SIGNED_IN && !self.signed_in.contains_key(&key) {
            self.signed_in.retain(|_, until| *until > now);
            if self.signed_in.len() >= MAX_SIGNED_IN
                && let Some(oldest) = self
                    .signed_in
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(key, _)| key.clone())
            {
                self.signed_in.remove(&oldest);
            }
        }
        self.signed_in.insert(key, until);
    }
}

#[cfg(test)]
mod tests;
