//! The AUTH tier where a password is checked (signing in, the approval page's login, changing
//! one's password): failed attempts counted per account *and* client address, so that one
//! client's failures never hold back the right password from another.
//!
//! Counting per address alone let any local process lock the owner out by failing 50 times:
//! everyone on the machine is 127.0.0.1. Counting per account alone would let anyone lock
//! any account. So [`SignInLimiter`] keeps two buckets of failures:
//!
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
//! per /64). Which clients share an address is up to the network: on one machine, every
//! local client is 127.0.0.1, and behind a reverse proxy the address is the one it forwards
//! (`--trusted-proxies`).

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

#[derive(Debug)]
struct SignInState {
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
    counted: Option<(Arc<SignIns>, AccountKey)>,
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
    /// until it succeeds; refused if this client has failed too often at this account, or
    /// across accounts at one it has not signed in to.
    pub fn attempt(&self, account: &str, client: IpAddr) -> Result<SignInAttempt, SignInRefused> {
        let Some(shared) = &self.shared else {
            return Ok(SignInAttempt { counted: None });
        };
        let address = attempt_key(client);
        let key = (address, account.to_owned());
        let now = shared.clock.now();
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sweep_if_due(now);
        let account_bucket = state
            .accounts
            .get(&key)
            .copied()
            .unwrap_or_else(|| Bucket::full(now));
        let client_bucket = state
            .clients
            .get(&address)
            .copied()
            .unwrap_or_else(|| Bucket::full(now));
        let account_taken = account_bucket
            .take(&shared.per_account, now)
            .map_err(|retry_after| SignInRefused::Account { retry_after })?;
        let signed_in_here = state.signed_in.get(&key).is_some_and(|until| *until > now);
        let client_taken = match client_bucket.take(&shared.per_client, now) {
            Ok(taken) => taken,
            // The address is spent, but not for an account it has signed in to: keep it at
            // the brim rather than count past it.
            Err(_) if signed_in_here => client_bucket,
            Err(retry_after) => return Err(SignInRefused::Client { retry_after }),
        };
        state.accounts.insert(key.clone(), account_taken);
        state.clients.insert(address, client_taken);
        Ok(SignInAttempt {
            counted: Some((shared.clone(), key)),
        })
    }
}

impl SignInAttempt {
    /// The password was right: the attempt costs nothing, and this client is held back at
    /// this account only by its own failures there from now on.
    pub fn succeeded(mut self) {
        let Some((shared, key)) = self.counted.take() else {
            return;
        };
        let now = shared.clock.now();
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = state.accounts.get_mut(&key) {
            *bucket = bucket.give_back(&shared.per_account, now);
        }
        if let Some(bucket) = state.clients.get_mut(&key.0) {
            *bucket = bucket.give_back(&shared.per_client, now);
        }
        state.remember_signed_in(key, now + SIGNED_IN_FOR, now);
    }
}

impl SignInState {
    /// Forget buckets indistinguishable from new ones, and sign-ins that no longer count.
    fn sweep_if_due(&mut self, now: Instant) {
        let len = self.accounts.len() + self.clients.len();
        if now < self.next_sweep && len < self.sweep_at_len {
            return;
        }
        self.accounts.retain(|_, bucket| !bucket.is_full(now));
        self.clients.retain(|_, bucket| !bucket.is_full(now));
        self.signed_in.retain(|_, until| *until > now);
        self.next_sweep = now + SWEEP_INTERVAL;
        self.sweep_at_len = ((self.accounts.len() + self.clients.len()) * 2).max(MIN_SWEEP_LEN);
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
mod tests {
    use super::super::RateLimits;
    use super::super::manual::ManualClock;
    use super::*;

    fn limiter(burst: u32) -> (SignInLimiter, Arc<ManualClock>) {
        let clock = ManualClock::new();
        let attempts = AttemptLimiter::with_clock(
            Some(RateLimits {
                auth_burst: burst,
                auth_rate: f64::from(burst) / 300.0,
                ..RateLimits::DEFAULT
            }),
            clock.clone(),
        );
        (SignInLimiter::alongside(&attempts), clock)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// `n` failed attempts.
    fn fail(limiter: &SignInLimiter, account: &str, client: &str, n: usize) {
        for attempt in 0..n {
            let started = limiter.attempt(account, ip(client));
            assert!(
                started.is_ok(),
                "{account} from {client}, attempt {attempt}"
            );
        }
    }

    #[test]
    fn one_client_failing_at_an_account_never_holds_back_another_client() {
        let (limiter, clock) = limiter(50);
        fail(&limiter, "owner@example.com", "192.0.2.66", 50);
        let refused = limiter
            .attempt("owner@example.com", ip("192.0.2.66"))
            .unwrap_err();
        assert_eq!(
            refused,
            SignInRefused::Account {
                retry_after: Duration::from_secs(6)
            }
        );
        // The owner, elsewhere, is not held back; nor is that client at another account.
        limiter
            .attempt("owner@example.com", ip("192.0.2.7"))
            .unwrap()
            .succeeded();
        assert!(
            limiter
                .attempt("other@example.com", ip("192.0.2.66"))
                .is_ok()
        );
        clock.advance(Duration::from_secs(6));
        assert!(
            limiter
                .attempt("owner@example.com", ip("192.0.2.66"))
                .is_ok()
        );
    }

    #[test]
    fn failures_at_other_accounts_from_the_same_address_leave_an_account_its_own_budget() {
        let (limiter, _clock) = limiter(50);
        for n in 0..150 {
            fail(&limiter, &format!("guess{n}@example.com"), "127.0.0.1", 1);
        }
        limiter
            .attempt("owner@example.com", ip("127.0.0.1"))
            .unwrap()
            .succeeded();
    }

    #[test]
    fn successes_cost_nothing() {
        let (limiter, _clock) = limiter(5);
        for _ in 0..100 {
            limiter
                .attempt("owner@example.com", ip("192.0.2.7"))
                .unwrap()
                .succeeded();
        }
        fail(&limiter, "owner@example.com", "192.0.2.7", 5);
        assert!(
            limiter
                .attempt("owner@example.com", ip("192.0.2.7"))
                .is_err()
        );
    }

    #[test]
    fn a_client_spraying_accounts_waits_except_at_accounts_it_signed_in_to() {
        let (limiter, clock) = limiter(5);
        limiter
            .attempt("owner@example.com", ip("127.0.0.1"))
            .unwrap()
            .succeeded();
        // Four times the budget across accounts, one failure each.
        for n in 0..20 {
            fail(&limiter, &format!("guess{n}@example.com"), "127.0.0.1", 1);
        }
        let refused = limiter
            .attempt("new@example.com", ip("127.0.0.1"))
            .unwrap_err();
        assert_eq!(
            refused,
            SignInRefused::Client {
                retry_after: Duration::from_secs(15)
            }
        );
        // The account that signed in from here still has its own five tries.
        fail(&limiter, "owner@example.com", "127.0.0.1", 4);
        limiter
            .attempt("owner@example.com", ip("127.0.0.1"))
            .unwrap()
            .succeeded();
        // Another address is not held back.
        assert!(limiter.attempt("new@example.com", ip("192.0.2.7")).is_ok());
        clock.advance(Duration::from_secs(15));
        assert!(limiter.attempt("new@example.com", ip("127.0.0.1")).is_ok());
    }

    #[test]
    fn concurrent_attempts_are_counted_as_they_start() {
        let (limiter, _clock) = limiter(5);
        let under_way: Vec<SignInAttempt> = (0..5)
            .map(|_| {
                limiter
                    .attempt("owner@example.com", ip("192.0.2.7"))
                    .unwrap()
            })
            .collect();
        assert!(
            limiter
                .attempt("owner@example.com", ip("192.0.2.7"))
                .is_err()
        );
        // One of them was right after all: its attempt comes back.
        let mut under_way = under_way.into_iter();
        under_way.next().unwrap().succeeded();
        drop(under_way);
        assert!(
            limiter
                .attempt("owner@example.com", ip("192.0.2.7"))
                .is_ok()
        );
    }

    #[test]
    fn the_off_profile_counts_nothing() {
        let attempts = AttemptLimiter::new(RateLimits::profile("off").unwrap());
        let limiter = SignInLimiter::alongside(&attempts);
        for _ in 0..1000 {
            assert!(
                limiter
                    .attempt("owner@example.com", ip("192.0.2.7"))
                    .is_ok()
            );
        }
    }

    #[test]
    fn signed_in_pairs_are_remembered_up_to_a_cap() {
        let now = Instant::now();
        let mut state = SignInState {
            accounts: HashMap::new(),
            clients: HashMap::new(),
            signed_in: HashMap::new(),
            next_sweep: now,
            sweep_at_len: MIN_SWEEP_LEN,
        };
        for n in 0..MAX_SIGNED_IN + 5 {
            let until = now + Duration::from_secs(n as u64 + 1);
            state.remember_signed_in((ip("192.0.2.7"), format!("u{n}@example.com")), until, now);
        }
        assert_eq!(state.signed_in.len(), MAX_SIGNED_IN);
        assert!(
            !state
                .signed_in
                .contains_key(&(ip("192.0.2.7"), "u0@example.com".to_owned())),
            "the oldest went first"
        );
    }
}
