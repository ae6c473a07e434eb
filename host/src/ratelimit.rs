//! Rate limits: the PROXY tier (per scope, e.g. one agent in one vault) and the GLOBAL tier
//! (the whole server) of the proxy path, and the AUTH tier of the control plane's
//! unauthenticated routes (per client address). The proxy tiers are each a token bucket
//! (requests per second with a burst) and a cap on requests in flight, with a short wait for
//! a free slot; the AUTH tier is a token bucket only.
//!
//! [`RateLimiter::admit`] is the proxy's one entry point: it takes a token from the scope's
//! bucket and from the global one (both or neither), then a slot of each, and hands back a
//! [`Permit`] that holds the slots until the response is done. [`AttemptLimiter::attempt`] is
//! the AUTH tier's, per client address; where a password is checked, the AUTH tier counts
//! failures per account and address instead ([`SignInLimiter`], `sign_in.rs`). A refusal is
//! a [`Limited`] with the time after which a retry can succeed;
//! turning it into a 429 with `Retry-After` is the caller's job. The AUTHED tier (the
//! management API per actor) is not here.
//!
//! Buckets are kept as the instant they will be full again (the "theoretical arrival time"
//! of GCRA), which is a token bucket that refills continuously, in integer time. A scope
//! whose bucket is full and whose slots are all free behaves exactly as a scope never seen,
//! so such scopes are forgotten: on a sweep every minute, or sooner when the map doubles.
//! Everything behind the one mutex is arithmetic; waiting for a slot happens outside it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod sign_in;

pub use sign_in::{SignInAttempt, SignInLimiter, SignInRefused};

/// How often idle scopes are forgotten (at the next request after this much time).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Scopes tracked before the map's growth, rather than the time, triggers a sweep.
const MIN_SWEEP_LEN: usize = 1024;

/// The limits of both tiers. A rate, burst or concurrency of 0 turns that limit off (as
/// 0 means "no cap" elsewhere in the configuration); a rate must otherwise be positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Requests per second of one scope, refilled continuously.
    pub proxy_rate: f64,
    /// Requests one scope may make at once after being idle.
    pub proxy_burst: u32,
    /// Requests of one scope in flight at once.
    pub proxy_concurrency: u32,
    /// How long a request waits for one of its scope's slots before it is refused.
    pub proxy_wait: Duration,
    pub global_rate: f64,
    pub global_burst: u32,
    pub global_concurrency: u32,
    pub global_wait: Duration,
    /// Attempts per second of one client address at the unauthenticated routes (sign-in,
    /// registration, invites), refilled continuously.
    pub auth_rate: f64,
    /// Attempts one client address may make at once after being idle.
    pub auth_burst: u32,
}

impl RateLimits {
    /// The `default` profile.
    pub const DEFAULT: RateLimits = RateLimits {
        proxy_rate: 20.0,
        proxy_burst: 200,
        proxy_concurrency: 64,
        proxy_wait: Duration::from_secs(2),
        global_rate: 2000.0,
        global_burst: 4000,
        global_concurrency: 512,
        global_wait: Duration::from_millis(500),
        // 50 attempts per 5 minutes, as Agent Vault's AUTH tier.
        auth_rate: 50.0 / 300.0,
        auth_burst: 50,
    };

    /// The limits of a named profile: `default`, `strict` (half of each rate, burst and
    /// concurrency), `loose` (twice), or `off` (`None`: no limits). Waits are the same in
    /// every profile.
    pub fn profile(name: &str) -> Result<Option<RateLimits>, String> {
        let factor = match name {
            "default" => 1.0,
            "strict" => 0.5,
            "loose" => 2.0,
            "off" => return Ok(None),
            other => {
                return Err(format!(
                    "{other:?} is not a rate-limit profile: use default, strict, loose or off"
                ));
            }
        };
        Ok(Some(RateLimits::DEFAULT.scaled(factor)))
    }

    fn scaled(self, factor: f64) -> RateLimits {
        let count = |n: u32| (f64::from(n) * factor).round().max(1.0) as u32;
        RateLimits {
            proxy_rate: self.proxy_rate * factor,
            proxy_burst: count(self.proxy_burst),
            proxy_concurrency: count(self.proxy_concurrency),
            proxy_wait: self.proxy_wait,
            global_rate: self.global_rate * factor,
            global_burst: count(self.global_burst),
            global_concurrency: count(self.global_concurrency),
            global_wait: self.global_wait,
            auth_rate: self.auth_rate * factor,
            auth_burst: count(self.auth_burst),
        }
    }
}

/// The prefix of the environment variables that tune one limit of one tier:
/// `AGENT_VAULT_RATELIMIT_<TIER>_<KNOB>`, as Agent Vault names them.
pub const OVERRIDE_PREFIX: &str = "AGENT_VAULT_RATELIMIT_";

/// Lowest values the overrides accept, as Agent Vault's: below them an instance could lock
/// out its own users or stall under ordinary load.
const AUTH_MAX_FLOOR: u32 = 5;
const GLOBAL_RATE_FLOOR: f64 = 100.0;
const GLOBAL_CONCURRENCY_FLOOR: u32 = 32;

impl RateLimits {
    /// These limits with the per-knob overrides among `variables` (name, value) applied:
    /// `PROXY_` and `GLOBAL_` with `RATE` (requests per second), `BURST` and `CONCURRENCY`;
    /// `AUTH_` with `MAX` (attempts) and `WINDOW` (`300`, `90s`, `5m`, `1h`: the time in which
    /// MAX attempts come back). Other variables are ignored, except that the knobs of the
    /// `AUTHED` tier, which agent-vault does not have, come back as warnings. A value that
    /// does not parse, or is below its floor, is an error naming the variable.
    pub fn with_overrides<'a>(
        mut self,
        variables: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(RateLimits, Vec<String>), String> {
        let mut warnings = Vec::new();
        let (mut auth_max, mut auth_window) = (None, None);
        for (name, value) in variables {
            let Some(knob) = name.strip_prefix(OVERRIDE_PREFIX) else {
                continue;
            };
            let value = value.trim();
            let invalid = |what: &str| format!("{name}={value:?}: {what}");
            let count = || {
                value
                    .parse::<u32>()
                    .map_err(|_| invalid("not a whole number"))
            };
            let rate = || match value.parse::<f64>() {
                Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
                _ => Err(invalid("not a number of requests per second")),
            };
            match knob {
                "PROXY_RATE" => self.proxy_rate = rate()?,
                "PROXY_BURST" => self.proxy_burst = count()?,
                "PROXY_CONCURRENCY" => self.proxy_concurrency = count()?,
                "GLOBAL_RATE" => {
                    self.global_rate = rate()?;
                    if self.global_rate < GLOBAL_RATE_FLOOR {
                        return Err(invalid(&format!("at least {GLOBAL_RATE_FLOOR}")));
                    }
                }
                "GLOBAL_BURST" => self.global_burst = count()?,
                "GLOBAL_CONCURRENCY" => {
                    self.global_concurrency = count()?;
                    if self.global_concurrency < GLOBAL_CONCURRENCY_FLOOR {
                        return Err(invalid(&format!("at least {GLOBAL_CONCURRENCY_FLOOR}")));
                    }
                }
                "AUTH_MAX" => {
                    let max = count()?;
                    if max < AUTH_MAX_FLOOR {
                        return Err(invalid(&format!("at least {AUTH_MAX_FLOOR}")));
                    }
                    auth_max = Some(max);
                }
                "AUTH_WINDOW" => {
                    auth_window = Some(
                        parse_window(value)
                            .ok_or_else(|| invalid("not a duration such as 300, 90s, 5m or 1h"))?,
                    );
                }
                "PROFILE" | "LOCK" => {}
                authed if authed.starts_with("AUTHED_") => warnings.push(format!(
                    "{name} is ignored: agent-vault does not rate-limit the management API \
                     per actor (the AUTHED tier)"
                )),
                _ => return Err(format!("{name}: not a rate-limit setting")),
            }
        }
        if auth_max.is_some() || auth_window.is_some() {
            let max = auth_max.unwrap_or(self.auth_burst);
            let window = auth_window.unwrap_or_else(|| {
                Duration::from_secs_f64(f64::from(self.auth_burst) / self.auth_rate)
            });
            self.auth_burst = max;
            self.auth_rate = f64::from(max) / window.as_secs_f64();
        }
        Ok((self, warnings))
    }
}

/// `300` (seconds), `90s`, `5m`, `1h`: a positive duration.
fn parse_window(text: &str) -> Option<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Why a request was refused./// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// The scope's or the server's token bucket is empty; a token is back after `retry_after`.
    #[error("too many requests; retry after {retry_after:?}")]
    Rate { retry_after: Duration },
    /// No slot freed up within the wait; `retry_after` is that wait (when a slot frees is
    /// unknowable, and retrying sooner than the wait that just failed rarely helps).
    #[error("too many requests in flight; retry after {retry_after:?}")]
    Concurrency { retry_after: Duration },
}

impl Limited {
    /// The request log's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Limited::Rate { .. } => "rate_limit_scope",
            Limited::Concurrency { .. } => "concurrency_scope",
        }
    }

    /// The exact time to wait; `Retry-After` rounds it up to whole seconds (at least 1).
    pub fn retry_after(&self) -> Duration {
        match self {
            Limited::Rate { retry_after } | Limited::Concurrency { retry_after } => *retry_after,
        }
    }
}

/// The slots one admitted request holds; dropping it (when the response is done) frees them.
#[derive(Debug)]
pub struct Permit {
    _scope: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
}

/// The server's limiter; built once, cloned into every connection.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// `None`: no limits at all.
    shared: Option<Arc<Shared>>,
}

impl RateLimiter {
    /// A limiter with `limits`, or one that admits everything (`None`, the `off` profile).
    pub fn new(limits: Option<RateLimits>) -> RateLimiter {
        RateLimiter::with_clock(limits, Arc::new(TokioClock))
    }

    fn with_clock(limits: Option<RateLimits>, clock: Arc<dyn Clock>) -> RateLimiter {
        let shared = limits.map(|limits| {
            let proxy = Tier::new(
                limits.proxy_rate,
                limits.proxy_burst,
                limits.proxy_concurrency,
                limits.proxy_wait,
            );
            let global = Tier::new(
                limits.global_rate,
                limits.global_burst,
                limits.global_concurrency,
                limits.global_wait,
            );
            let now = clock.now();
            Arc::new(Shared {
                global_slots: global.slots(),
                proxy,
                global,
                state: Mutex::new(State {
                    global: Bucket::full(now),
                    scopes: HashMap::new(),
                    next_sweep: now + SWEEP_INTERVAL,
                    sweep_at_len: MIN_SWEEP_LEN,
                }),
                clock,
            })
        });
        RateLimiter { shared }
    }

    /// Admit one request for `scope` (e.g. `agent:<id>:<vault id>`): a token from the scope's
    /// bucket and the global one, then a slot of each, waiting up to each tier's wait.
    pub async fn admit(&self, scope: &str) -> Result<Permit, Limited> {
        let Some(shared) = &self.shared else {
            return Ok(Permit {
                _scope: None,
                _global: None,
            });
        };
        let scope_slots = shared.take_tokens(scope)?;
        let scope_permit = match scope_slots {
            Some(slots) => Some(shared.slot(slots, shared.proxy.wait).await?),
            None => None,
        };
        let global_permit = match &shared.global_slots {
            Some(slots) => Some(shared.slot(slots.clone(), shared.global.wait).await?),
            None => None,
        };
        Ok(Permit {
            _scope: scope_permit,
            _global: global_permit,
        })
    }

    /// How many scopes are remembered.
    #[cfg(test)]
    fn tracked_scopes(&self) -> usize {
        self.shared.as_ref().map_or(0, |shared| {
            shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .scopes
                .len()
        })
    }
}

#[derive(Debug)]
struct Shared {
    proxy: Tier,
    global: Tier,
    global_slots: Option<Arc<Semaphore>>,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct State {
    global: Bucket,
    scopes: HashMap<String, Scope>,
    next_sweep: Instant,
    /// Sweep when the map reaches this size, even before `next_sweep`.
    sweep_at_len: usize,
}

#[derive(Debug)]
struct Scope {
    bucket: Bucket,
    /// Cloned, under the state's lock, by every request that holds or waits for a slot:
    /// a count of 1 means nobody does.
    slots: Option<Arc<Semaphore>>,
}

impl Shared {
    /// Take a token from the scope's bucket and the global one, or from neither; the scope's
    /// slots, if it has a concurrency cap.
    fn take_tokens(&self, scope: &str) -> Result<Option<Arc<Semaphore>>, Limited> {
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sweep_if_due(now);
        let State { global, scopes, .. } = &mut *state;
        let global_taken = self.global.rate.map(|rate| global.take(&rate, now));
        let tracks_scopes = self.proxy.rate.is_some() || self.proxy.concurrency > 0;
        let mut entry = None;
        let mut scope_taken = None;
        if tracks_scopes {
            let scope = match scopes.get_mut(scope) {
                Some(scope) => scope,
                None => scopes.entry(scope.to_owned()).or_insert_with(|| Scope {
                    bucket: Bucket::full(now),
                    slots: self.proxy.slots(),
                }),
            };
            scope_taken = self.proxy.rate.map(|rate| scope.bucket.take(&rate, now));
            entry = Some(scope);
        }
        let wait = [global_taken, scope_taken]
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .max();
        if let Some(retry_after) = wait {
            return Err(Limited::Rate { retry_after });
        }
        if let Some(Ok(taken)) = global_taken {
            *global = taken;
        }
        let Some(scope) = entry else {
            return Ok(None);
        };
        if let Some(Ok(taken)) = scope_taken {
            scope.bucket = taken;
        }
        Ok(scope.slots.clone())
    }

    /// A slot of `slots`, waiting up to `wait` for one.
    async fn slot(
        &self,
        slots: Arc<Semaphore>,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, Limited> {
        let refused = Limited::Concurrency { retry_after: wait };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if wait.is_zero() {
            return Err(refused);
        }
        let deadline = self.clock.now() + wait;
        tokio::select! {
            // The semaphores are never closed.
            permit = slots.acquire_owned() => permit.map_err(|_| refused),
            () = self.clock.sleep_until(deadline) => Err(refused),
        }
    }
}

impl State {
    /// Forget scopes indistinguishable from new ones: bucket full, no slot held or awaited.
    fn sweep_if_due(&mut self, now: Instant) {
        if now < self.next_sweep && self.scopes.len() < self.sweep_at_len {
            return;
        }
        self.scopes.retain(|_, scope| {
            let idle = scope
                .slots
                .as_ref()
                .is_none_or(|slots| Arc::strong_count(slots) == 1);
            !(idle && scope.bucket.is_full(now))
        });
        self.next_sweep = now + SWEEP_INTERVAL;
        self.sweep_at_len = (self.scopes.len() * 2).max(MIN_SWEEP_LEN);
    }
}

/// One tier's limits, ready for arithmetic.
#[derive(Debug, Clone, Copy)]
struct Tier {
    /// `None`: no token bucket.
    rate: Option<Rate>,
    /// 0: no cap on requests in flight.
    concurrency: u32,
    wait: Duration,
}

impl Tier {
    fn new(rate: f64, burst: u32, concurrency: u32, wait: Duration) -> Tier {
        Tier {
            rate: Rate::new(rate, burst),
            concurrency,
            wait,
        }
    }

    fn slots(&self) -> Option<Arc<Semaphore>> {
        (self.concurrency > 0).then(|| Arc::new(Semaphore::new(self.concurrency as usize)))
    }
}

/// The AUTH tier: one token bucket per client address, taken from on every attempt at an
/// unauthenticated route (signing in, registering, accepting or redeeming an invite), whether
/// the attempt succeeds or not. IPv6 clients are counted per /64, the block one host usually
/// has to itself, so that walking through its addresses buys nothing.
#[derive(Debug, Clone)]
pub struct AttemptLimiter {
    /// `None`: no limit.
    shared: Option<Arc<Attempts>>,
}

#[derive(Debug)]
struct Attempts {
    rate: Rate,
    state: Mutex<AttemptState>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct AttemptState {
    buckets: HashMap<IpAddr, Bucket>,
    next_sweep: Instant,
    sweep_at_len: usize,
}

impl AttemptLimiter {
    /// A limiter with the AUTH tier of `limits`, or one that admits everything.
    pub fn new(limits: Option<RateLimits>) -> AttemptLimiter {
        AttemptLimiter::with_clock(limits, Arc::new(TokioClock))
    }

    fn with_clock(limits: Option<RateLimits>, clock: Arc<dyn Clock>) -> AttemptLimiter {
        let shared = limits
            .and_then(|limits| Rate::new(limits.auth_rate, limits.auth_burst))
            .map(|rate| {
                let now = clock.now();
                Arc::new(Attempts {
                    rate,
                    state: Mutex::new(AttemptState {
                        buckets: HashMap::new(),
                        next_sweep: now + SWEEP_INTERVAL,
                        sweep_at_len: MIN_SWEEP_LEN,
                    }),
                    clock,
                })
            });
        AttemptLimiter { shared }
    }

    /// Whether `client` has attempts left, without counting one: for callers that count
    /// only failures, and refuse a client that has failed too often before trying again.
    pub fn check(&self, client: IpAddr) -> Result<(), Limited> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let now = shared.clock.now();
        let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.buckets.get(&attempt_key(client)) {
            Some(bucket) => bucket
                .take(&shared.rate, now)
                .map(drop)
                .map_err(|retry_after| Limited::Rate { retry_after }),
            None => Ok(()),
        }
    }

    /// Count one attempt from `client`; `Limited::Rate` once its bucket is empty.
    pub fn attempt(&self, client: IpAddr) -> Result<(), Limited> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let key = attempt_key(client);
        let now = shared.clock.now();
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now >= state.next_sweep || state.buckets.len() >= state.sweep_at_len {
            state.buckets.retain(|_, bucket| !bucket.is_full(now));
            state.next_sweep = now + SWEEP_INTERVAL;
            state.sweep_at_len = (state.buckets.len() * 2).max(MIN_SWEEP_LEN);
        }
        let bucket = state
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(now));
        match bucket.take(&shared.rate, now) {
            Ok(taken) => {
                *bucket = taken;
                Ok(())
            }
            Err(retry_after) => Err(Limited::Rate { retry_after }),
        }
    }
}

/// The address an attempt counts against: IPv4 as is, IPv6 by its /64 (an IPv4-mapped
/// address as the IPv4 address it is).
fn attempt_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// A token bucket's parameters as durations.
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// The time one token takes to come back.
    interval: Duration,
    /// The time a whole burst takes to come back.
    capacity: Duration,
}

impl Rate {
    /// The slowest refill kept exact; slower rates are this slow.
    const SLOWEST: Duration = Duration::from_secs(365 * 24 * 3600);

    fn new(per_second: f64, burst: u32) -> Option<Rate> {
        // Also refuses NaN.
        if !per_second.is_finite() || per_second <= 0.0 || burst == 0 {
            return None;
        }
        let interval = Duration::try_from_secs_f64(per_second.recip())
            .unwrap_or(Rate::SLOWEST)
            .min(Rate::SLOWEST);
        Some(Rate {
            interval,
            capacity: interval.saturating_mul(burst),
        })
    }
}

/// A token bucket, as the instant it will be full again if nothing more is taken.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    full_at: Instant,
}

impl Bucket {
    fn full(now: Instant) -> Bucket {
        Bucket { full_at: now }
    }

    fn is_full(&self, now: Instant) -> bool {
        self.full_at <= now
    }

    /// The bucket after a token taken earlier is put back at `now` (never fuller than full).
    fn give_back(&self, rate: &Rate, now: Instant) -> Bucket {
        let full_at = self.full_at.checked_sub(rate.interval).unwrap_or(now);
        Bucket {
            full_at: full_at.max(now),
        }
    }

    /// The bucket after taking one token at `now`, or how long until a token is there.
    /// Taking a token moves `full_at` one interval later; the bucket holds at most a burst,
    /// so `full_at` may run at most `capacity` ahead of now.
    fn take(&self, rate: &Rate, now: Instant) -> Result<Bucket, Duration> {
        let Some(full_at) = self.full_at.max(now).checked_add(rate.interval) else {
            return Err(rate.interval);
        };
        let ahead = full_at.duration_since(now);
        if ahead <= rate.capacity {
            Ok(Bucket { full_at })
        } else {
            Err(ahead - rate.capacity)
        }
    }
}

/// Where the limiter (and the request log's writer) read the time and sleep: tokio's clock
/// in the server, a hand-moved one in tests.
pub(crate) trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Instant;
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

#[derive(Debug)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// A clock that moves only when a test says so.
#[cfg(test)]
pub(crate) mod manual {
    use super::*;

    use tokio::sync::oneshot;

    #[derive(Debug)]
    pub(crate) struct ManualClock {
        state: Mutex<Timeline>,
    }

    #[derive(Debug)]
    struct Timeline {
        now: Instant,
        /// Each sleep's deadline and its wake-up call.
        sleepers: Vec<(Instant, oneshot::Sender<()>)>,
    }

    impl ManualClock {
        pub(crate) fn new() -> Arc<ManualClock> {
            Arc::new(ManualClock {
                state: Mutex::new(Timeline {
                    now: Instant::now(),
                    sleepers: Vec::new(),
                }),
            })
        }

        /// Move time on and wake the sleepers it reaches.
        pub(crate) fn advance(&self, by: Duration) {
            let mut state = self.state.lock().unwrap();
            state.now += by;
            let now = state.now;
            for (deadline, wake) in std::mem::take(&mut state.sleepers) {
                if deadline <= now {
                    let _ = wake.send(());
                } else if !wake.is_closed() {
                    state.sleepers.push((deadline, wake));
                }
            }
        }

        /// Sleeps in progress.
        pub(crate) fn sleepers(&self) -> usize {
            let state = self.state.lock().unwrap();
            state
                .sleepers
                .iter()
                .filter(|(_, wake)| !wake.is_closed())
                .count()
        }

        /// Let other tasks run until `count` of them sleep on this clock.
        pub(crate) async fn until_sleepers(&self, count: usize) {
            for _ in 0..100_000 {
                if self.sleepers() >= count {
                    return;
                }
                tokio::task::yield_now().await;
            }
            panic!("{count} sleepers never appeared (have {})", self.sleepers());
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.state.lock().unwrap().now
        }

        fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            let mut state = self.state.lock().unwrap();
            let (wake, woken) = oneshot::channel();
            if deadline <= state.now {
                let _ = wake.send(());
            } else {
                state.sleepers.push((deadline, wake));
            }
            Box::pin(async move {
                let _ = woken.await;
            })
        }
    }
}

#[cfg(test)]
mod tests;
