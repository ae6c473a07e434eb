//! Tests of the rate limits: the PROXY, GLOBAL and AUTH tiers (ratelimit.rs).

use super::manual::ManualClock;
use super::*;

const MS: Duration = Duration::from_millis(1);

fn limiter(limits: RateLimits) -> (RateLimiter, Arc<ManualClock>) {
    let clock = ManualClock::new();
    (RateLimiter::with_clock(Some(limits), clock.clone()), clock)
}

/// Only the PROXY tier's rate: no global tier, no concurrency caps.
fn proxy_rate(rate: f64, burst: u32) -> RateLimits {
    RateLimits {
        proxy_rate: rate,
        proxy_burst: burst,
        proxy_concurrency: 0,
        global_rate: 0.0,
        global_burst: 0,
        global_concurrency: 0,
        ..RateLimits::DEFAULT
    }
}

/// Only concurrency caps: no token buckets.
fn concurrency(proxy: u32, global: u32) -> RateLimits {
    RateLimits {
        proxy_rate: 0.0,
        proxy_concurrency: proxy,
        global_rate: 0.0,
        global_concurrency: global,
        ..RateLimits::DEFAULT
    }
}

async fn admit_all(limiter: &RateLimiter, scope: &str, count: usize) {
    for n in 0..count {
        if let Err(refused) = limiter.admit(scope).await {
            panic!("request {n} of {scope} refused: {refused}");
        }
    }
}

#[tokio::test]
async fn a_burst_passes_then_tokens_come_back_one_interval_apart() {
    let (limiter, clock) = limiter(RateLimits::DEFAULT);
    admit_all(&limiter, "agent:a:v", 200).await;
    assert_eq!(
        limiter.admit("agent:a:v").await.unwrap_err(),
        Limited::Rate {
            retry_after: 50 * MS
        },
        "20 per second: the next token is 50 ms away"
    );
    clock.advance(30 * MS);
    assert_eq!(
        limiter.admit("agent:a:v").await.unwrap_err().retry_after(),
        20 * MS
    );
    clock.advance(20 * MS);
    admit_all(&limiter, "agent:a:v", 1).await;
    assert!(limiter.admit("agent:a:v").await.is_err());

    // Refilled continuously, never beyond the burst.
    clock.advance(Duration::from_secs(3600));
    admit_all(&limiter, "agent:a:v", 200).await;
    assert!(limiter.admit("agent:a:v").await.is_err());
}

#[tokio::test]
async fn scopes_have_buckets_of_their_own() {
    let (limiter, _clock) = limiter(proxy_rate(1.0, 3));
    admit_all(&limiter, "agent:a:v1", 3).await;
    assert!(limiter.admit("agent:a:v1").await.is_err());
    admit_all(&limiter, "agent:a:v2", 3).await;
    admit_all(&limiter, "agent:b:v1", 3).await;
}

#[tokio::test]
async fn fractional_rates_refill_exactly() {
    let (limiter, clock) = limiter(proxy_rate(0.5, 1));
    admit_all(&limiter, "s", 1).await;
    assert_eq!(
        limiter.admit("s").await.unwrap_err().retry_after(),
        Duration::from_secs(2)
    );
    clock.advance(Duration::from_secs(2) - MS);
    assert_eq!(limiter.admit("s").await.unwrap_err().retry_after(), MS);
    clock.advance(MS);
    admit_all(&limiter, "s", 1).await;
}

#[tokio::test]
async fn the_global_bucket_is_shared_by_every_scope() {
    let (limiter, clock) = limiter(RateLimits {
        proxy_rate: 0.0,
        proxy_concurrency: 0,
        global_rate: 100.0,
        global_burst: 5,
        global_concurrency: 0,
        ..RateLimits::DEFAULT
    });
    for scope in ["a", "b", "c", "d", "e"] {
        admit_all(&limiter, scope, 1).await;
    }
    assert_eq!(
        limiter.admit("f").await.unwrap_err(),
        Limited::Rate {
            retry_after: 10 * MS
        }
    );
    clock.advance(10 * MS);
    admit_all(&limiter, "f", 1).await;
}

#[tokio::test]
async fn a_refusal_takes_no_token_from_the_other_bucket() {
    let (limiter, clock) = limiter(RateLimits {
        proxy_rate: 1.0,
        proxy_burst: 2,
        proxy_concurrency: 0,
        global_rate: 1.0,
        global_burst: 3,
        global_concurrency: 0,
        ..RateLimits::DEFAULT
    });
    admit_all(&limiter, "a", 2).await;
    // a's bucket is empty: refused, and the global token stays for b.
    for _ in 0..5 {
        assert!(limiter.admit("a").await.is_err());
    }
    admit_all(&limiter, "b", 1).await;
    // Now the global bucket is empty: b is refused and keeps its own second token.
    assert_eq!(
        limiter.admit("b").await.unwrap_err().retry_after(),
        Duration::from_secs(1)
    );
    clock.advance(Duration::from_secs(1));
    admit_all(&limiter, "b", 1).await;
}

#[tokio::test]
async fn a_refusal_waits_for_the_later_of_the_two_buckets() {
    let (limiter, _clock) = limiter(RateLimits {
        proxy_rate: 10.0,
        proxy_burst: 1,
        proxy_concurrency: 0,
        global_rate: 2.0,
        global_burst: 1,
        global_concurrency: 0,
        ..RateLimits::DEFAULT
    });
    admit_all(&limiter, "a", 1).await;
    assert_eq!(
        limiter.admit("a").await.unwrap_err().retry_after(),
        500 * MS
    );
}

#[tokio::test]
async fn a_request_waits_for_a_slot_up_to_the_wait() {
    let (limiter, clock) = limiter(concurrency(2, 0));
    let first = limiter.admit("s").await.unwrap();
    let _second = limiter.admit("s").await.unwrap();

    // A third waits; a slot freed within the wait admits it.
    let waiting = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.admit("s").await }
    });
    clock.until_sleepers(1).await;
    clock.advance(1999 * MS);
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    drop(first);
    let _third = waiting.await.unwrap().unwrap();

    // A fourth finds no slot within 2 s.
    let waiting = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.admit("s").await }
    });
    clock.until_sleepers(1).await;
    clock.advance(2000 * MS);
    assert_eq!(
        waiting.await.unwrap().unwrap_err(),
        Limited::Concurrency {
            retry_after: Duration::from_secs(2)
        }
    );
    // Another scope has slots of its own.
    let _other = limiter.admit("t").await.unwrap();
}

#[tokio::test]
async fn the_global_cap_holds_across_scopes_with_its_own_wait() {
    let (limiter, clock) = limiter(RateLimits {
        global_wait: 500 * MS,
        ..concurrency(0, 2)
    });
    let _a = limiter.admit("a").await.unwrap();
    let b = limiter.admit("b").await.unwrap();
    let waiting = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.admit("c").await }
    });
    clock.until_sleepers(1).await;
    clock.advance(500 * MS);
    let refused = waiting.await.unwrap().unwrap_err();
    assert_eq!(
        refused,
        Limited::Concurrency {
            retry_after: 500 * MS
        }
    );
    assert_eq!(refused.code(), "concurrency_scope");
    drop(b);
    let _c = limiter.admit("c").await.unwrap();
}

#[tokio::test]
async fn a_request_refused_by_the_global_cap_frees_its_scope_slot() {
    let (limiter, clock) = limiter(RateLimits {
        global_wait: Duration::ZERO,
        ..concurrency(1, 1)
    });
    let held = limiter.admit("a").await.unwrap();
    assert_eq!(
        limiter.admit("b").await.unwrap_err(),
        Limited::Concurrency {
            retry_after: Duration::ZERO
        }
    );
    drop(held);
    // b's slot was given back: b is admitted at once, with no wait.
    let _b = limiter.admit("b").await.unwrap();
    assert_eq!(clock.sleepers(), 0);
}

#[tokio::test]
async fn off_admits_everything() {
    let limiter = RateLimiter::new(RateLimits::profile("off").unwrap());
    let mut held = Vec::new();
    for _ in 0..10_000 {
        held.push(limiter.admit("agent:a:v").await.unwrap());
    }
    assert_eq!(limiter.tracked_scopes(), 0);
}

#[test]
fn profiles_scale_rates_bursts_and_concurrency() {
    assert_eq!(
        RateLimits::profile("default").unwrap(),
        Some(RateLimits::DEFAULT)
    );
    let strict = RateLimits::profile("strict").unwrap().unwrap();
    assert_eq!(
        (
            strict.proxy_rate,
            strict.proxy_burst,
            strict.proxy_concurrency,
            strict.proxy_wait
        ),
        (10.0, 100, 32, Duration::from_secs(2))
    );
    assert_eq!(
        (
            strict.global_rate,
            strict.global_burst,
            strict.global_concurrency,
            strict.global_wait
        ),
        (1000.0, 2000, 256, 500 * MS)
    );
    let loose = RateLimits::profile("loose").unwrap().unwrap();
    assert_eq!(
        (loose.proxy_rate, loose.proxy_burst, loose.proxy_concurrency),
        (40.0, 400, 128)
    );
    assert_eq!(
        (
            loose.global_rate,
            loose.global_burst,
            loose.global_concurrency
        ),
        (4000.0, 8000, 1024)
    );
    assert_eq!((strict.auth_burst, loose.auth_burst), (25, 100));
    assert_eq!(RateLimits::profile("off").unwrap(), None);
    assert_eq!(
        RateLimits::profile("Strict").unwrap_err(),
        "\"Strict\" is not a rate-limit profile: use default, strict, loose or off"
    );
}

fn attempts(limits: Option<RateLimits>) -> (AttemptLimiter, Arc<ManualClock>) {
    let clock = ManualClock::new();
    (AttemptLimiter::with_clock(limits, clock.clone()), clock)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn fifty_attempts_per_address_then_one_every_six_seconds() {
    let (limiter, clock) = attempts(Some(RateLimits::DEFAULT));
    for n in 0..50 {
        assert_eq!(limiter.attempt(ip("192.0.2.7")), Ok(()), "attempt {n}");
    }
    let refused = limiter.attempt(ip("192.0.2.7")).unwrap_err();
    assert_eq!(refused.retry_after(), Duration::from_secs(6));
    // Another address has its own bucket.
    assert_eq!(limiter.attempt(ip("192.0.2.8")), Ok(()));
    clock.advance(Duration::from_secs(6));
    assert_eq!(limiter.attempt(ip("192.0.2.7")), Ok(()));
    assert!(limiter.attempt(ip("192.0.2.7")).is_err());
    // After five idle minutes the whole burst is back.
    clock.advance(Duration::from_secs(300));
    for _ in 0..50 {
        assert_eq!(limiter.attempt(ip("192.0.2.7")), Ok(()));
    }
}

#[test]
fn overrides_set_one_knob_each_on_top_of_the_profile() {
    let strict = RateLimits::profile("strict").unwrap().unwrap();
    let (limits, warnings) = strict
        .with_overrides([
            ("AGENT_VAULT_RATELIMIT_PROXY_RATE", "100"),
            ("AGENT_VAULT_RATELIMIT_PROXY_BURST", "500"),
            ("AGENT_VAULT_RATELIMIT_GLOBAL_CONCURRENCY", "1024"),
            ("AGENT_VAULT_RATELIMIT_AUTH_MAX", "10"),
            ("AGENT_VAULT_RATELIMIT_AUTH_WINDOW", "1m"),
            ("AGENT_VAULT_RATELIMIT_PROFILE", "strict"),
            ("AGENT_VAULT_HOME", "/elsewhere"),
        ])
        .unwrap();
    assert!(warnings.is_empty());
    assert_eq!(limits.proxy_rate, 100.0);
    assert_eq!(limits.proxy_burst, 500);
    assert_eq!(limits.global_concurrency, 1024);
    assert_eq!(limits.auth_burst, 10);
    assert!((limits.auth_rate - 10.0 / 60.0).abs() < 1e-9);
    // What was not overridden is the profile's.
    assert_eq!(limits.proxy_concurrency, strict.proxy_concurrency);
    assert_eq!(limits.global_rate, strict.global_rate);

    // A window alone keeps the profile's number of attempts.
    let (limits, _) = RateLimits::DEFAULT
        .with_overrides([("AGENT_VAULT_RATELIMIT_AUTH_WINDOW", "600")])
        .unwrap();
    assert_eq!(limits.auth_burst, 50);
    assert!((limits.auth_rate - 50.0 / 600.0).abs() < 1e-9);
}

#[test]
fn a_bad_override_names_its_variable_and_the_authed_tier_is_only_a_warning() {
    let refuse = |name: &str, value: &str| {
        RateLimits::DEFAULT
            .with_overrides([(name, value)])
            .unwrap_err()
    };
    assert_eq!(
        refuse("AGENT_VAULT_RATELIMIT_PROXY_BURST", "lots"),
        "AGENT_VAULT_RATELIMIT_PROXY_BURST=\"lots\": not a whole number"
    );
    assert_eq!(
        refuse("AGENT_VAULT_RATELIMIT_AUTH_MAX", "2"),
        "AGENT_VAULT_RATELIMIT_AUTH_MAX=\"2\": at least 5"
    );
    assert_eq!(
        refuse("AGENT_VAULT_RATELIMIT_GLOBAL_RATE", "10"),
        "AGENT_VAULT_RATELIMIT_GLOBAL_RATE=\"10\": at least 100"
    );
    assert!(refuse("AGENT_VAULT_RATELIMIT_AUTH_WINDOW", "5 minutes").contains("not a duration"));
    assert_eq!(
        refuse("AGENT_VAULT_RATELIMIT_PROXY_SPEED", "9"),
        "AGENT_VAULT_RATELIMIT_PROXY_SPEED: not a rate-limit setting"
    );
    let (_, warnings) = RateLimits::DEFAULT
        .with_overrides([("AGENT_VAULT_RATELIMIT_AUTHED_RATE", "5")])
        .unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("AGENT_VAULT_RATELIMIT_AUTHED_RATE is ignored"));
}

#[test]
fn checking_counts_nothing_and_refuses_once_the_attempts_are_spent() {
    let (limiter, clock) = attempts(Some(RateLimits {
        auth_burst: 2,
        ..RateLimits::DEFAULT
    }));
    for _ in 0..10 {
        assert_eq!(limiter.check(ip("192.0.2.7")), Ok(()));
    }
    limiter.attempt(ip("192.0.2.7")).unwrap();
    assert_eq!(limiter.check(ip("192.0.2.7")), Ok(()), "one left");
    limiter.attempt(ip("192.0.2.7")).unwrap();
    let refused = limiter.check(ip("192.0.2.7")).unwrap_err();
    assert_eq!(refused.retry_after(), Duration::from_secs(6));
    assert_eq!(limiter.check(ip("192.0.2.8")), Ok(()));
    clock.advance(Duration::from_secs(6));
    assert_eq!(limiter.check(ip("192.0.2.7")), Ok(()));
}

#[test]
fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
    let (limiter, _clock) = attempts(Some(RateLimits {
        auth_burst: 2,
        ..RateLimits::DEFAULT
    }));
    limiter.attempt(ip("2001:db8:1:2::1")).unwrap();
    limiter.attempt(ip("2001:db8:1:2:ffff::9")).unwrap();
    assert!(limiter.attempt(ip("2001:db8:1:2::3")).is_err());
    assert_eq!(limiter.attempt(ip("2001:db8:1:3::1")), Ok(()));

    limiter.attempt(ip("198.51.100.1")).unwrap();
    limiter.attempt(ip("::ffff:198.51.100.1")).unwrap();
    assert!(limiter.attempt(ip("198.51.100.1")).is_err());
}

#[test]
fn the_off_profile_counts_no_attempts() {
    let (limiter, _clock) = attempts(RateLimits::profile("off").unwrap());
    for _ in 0..1000 {
        assert_eq!(limiter.attempt(ip("192.0.2.7")), Ok(()));
    }
}

#[test]
fn refusals_carry_the_request_log_codes() {
    let retry_after = Duration::from_millis(1500);
    assert_eq!(Limited::Rate { retry_after }.code(), "rate_limit_scope");
    assert_eq!(
        Limited::Concurrency { retry_after }.code(),
        "concurrency_scope"
    );
    assert_eq!(Limited::Rate { retry_after }.retry_after(), retry_after);
}

#[tokio::test]
async fn idle_scopes_are_forgotten_on_the_periodic_sweep() {
    let (limiter, clock) = limiter(RateLimits {
        proxy_rate: 1.0,
        proxy_burst: 100,
        ..concurrency(4, 0)
    });
    admit_all(&limiter, "idle", 1).await;
    admit_all(&limiter, "busy", 100).await;
    let _held = limiter.admit("holding").await.unwrap();
    assert_eq!(limiter.tracked_scopes(), 3);

    clock.advance(SWEEP_INTERVAL);
    admit_all(&limiter, "new", 1).await;
    // "idle" refilled and holds nothing: gone. "busy" has 60 of 100 tokens back, and
    // "holding" holds a slot: both kept, with their state.
    assert_eq!(limiter.tracked_scopes(), 3);
    admit_all(&limiter, "busy", 60).await;
    assert!(limiter.admit("busy").await.is_err());
}

#[tokio::test]
async fn a_growing_map_is_swept_before_the_minute_is_up() {
    let (limiter, clock) = limiter(proxy_rate(20.0, 5));
    for n in 0..MIN_SWEEP_LEN {
        admit_all(&limiter, &format!("agent:{n}:v"), 1).await;
    }
    assert_eq!(limiter.tracked_scopes(), MIN_SWEEP_LEN);
    clock.advance(50 * MS);
    admit_all(&limiter, "agent:new:v", 1).await;
    assert_eq!(limiter.tracked_scopes(), 1);
}

#[tokio::test]
async fn a_scope_whose_slot_passes_to_a_waiter_is_not_forgotten() {
    let (limiter, clock) = limiter(RateLimits {
        proxy_wait: Duration::from_secs(120),
        ..concurrency(1, 0)
    });
    let held = limiter.admit("s").await.unwrap();
    let waiting = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.admit("s").await }
    });
    clock.until_sleepers(1).await;
    drop(held);
    clock.advance(SWEEP_INTERVAL);
    admit_all(&limiter, "other", 1).await;
    // The waiter was woken by the freed slot and holds it now, so its scope stays
    // and a second request of it must wait.
    let _admitted = waiting.await.unwrap().unwrap();
    assert_eq!(limiter.tracked_scopes(), 2);
    let waiting = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.admit("s").await }
    });
    clock.until_sleepers(1).await;
    assert!(!waiting.is_finished());
    waiting.abort();
}

#[test]
fn zero_and_absurd_rates_do_not_panic() {
    assert!(Rate::new(0.0, 10).is_none());
    assert!(Rate::new(f64::NAN, 10).is_none());
    assert!(Rate::new(-1.0, 10).is_none());
    assert!(Rate::new(5.0, 0).is_none());
    let glacial = Rate::new(1e-300, u32::MAX).unwrap();
    assert_eq!(glacial.interval, Rate::SLOWEST);
    let now = Instant::now();
    let bucket = Bucket::full(now).take(&glacial, now).unwrap();
    assert!(!bucket.is_full(now));
    let instant = Rate::new(1e300, 1).unwrap();
    assert_eq!(instant.interval, Duration::ZERO);
    assert!(Bucket::full(now).take(&instant, now).is_ok());
}
