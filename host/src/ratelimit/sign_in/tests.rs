//! Tests of the AUTH tier where a password is checked (sign_in.rs).

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
        let started = limiter.attempt(account, ip(client), None);
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
        .attempt("owner@example.com", ip("192.0.2.66"), None)
        .unwrap_err();
    assert_eq!(
        refused,
        SignInRefused::Account {
            retry_after: Duration::from_secs(6)
        }
    );
    // The owner, elsewhere, is not held back; nor is that client at another account.
    limiter
        .attempt("owner@example.com", ip("192.0.2.7"), None)
        .unwrap()
        .succeeded();
    assert!(
        limiter
            .attempt("other@example.com", ip("192.0.2.66"), None)
            .is_ok()
    );
    clock.advance(Duration::from_secs(6));
    assert!(
        limiter
            .attempt("owner@example.com", ip("192.0.2.66"), None)
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
        .attempt("owner@example.com", ip("127.0.0.1"), None)
        .unwrap()
        .succeeded();
}

#[test]
fn successes_cost_nothing() {
    let (limiter, _clock) = limiter(5);
    for _ in 0..100 {
        limiter
            .attempt("owner@example.com", ip("192.0.2.7"), None)
            .unwrap()
            .succeeded();
    }
    fail(&limiter, "owner@example.com", "192.0.2.7", 5);
    assert!(
        limiter
            .attempt("owner@example.com", ip("192.0.2.7"), None)
            .is_err()
    );
}

#[test]
fn a_client_spraying_accounts_waits_except_at_accounts_it_signed_in_to() {
    let (limiter, clock) = limiter(5);
    limiter
        .attempt("owner@example.com", ip("127.0.0.1"), None)
        .unwrap()
        .succeeded();
    // Four times the budget across accounts, one failure each.
    for n in 0..20 {
        fail(&limiter, &format!("guess{n}@example.com"), "127.0.0.1", 1);
    }
    let refused = limiter
        .attempt("new@example.com", ip("127.0.0.1"), None)
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
        .attempt("owner@example.com", ip("127.0.0.1"), None)
        .unwrap()
        .succeeded();
    // Another address is not held back.
    assert!(
        limiter
            .attempt("new@example.com", ip("192.0.2.7"), None)
            .is_ok()
    );
    clock.advance(Duration::from_secs(15));
    assert!(
        limiter
            .attempt("new@example.com", ip("127.0.0.1"), None)
            .is_ok()
    );
}

#[test]
fn concurrent_attempts_are_counted_as_they_start() {
    let (limiter, _clock) = limiter(5);
    let under_way: Vec<SignInAttempt> = (0..5)
        .map(|_| {
            limiter
                .attempt("owner@example.com", ip("192.0.2.7"), None)
                .unwrap()
        })
        .collect();
    assert!(
        limiter
            .attempt("owner@example.com", ip("192.0.2.7"), None)
            .is_err()
    );
    // One of them was right after all: its attempt comes back.
    let mut under_way = under_way.into_iter();
    under_way.next().unwrap().succeeded();
    drop(under_way);
    assert!(
        limiter
            .attempt("owner@example.com", ip("192.0.2.7"), None)
            .is_ok()
    );
}

#[test]
fn a_device_that_signed_in_before_is_not_held_back_by_others_failures_at_its_account() {
    let (limiter, _clock) = limiter(50);
    // Another local process spends the owner's account at 127.0.0.1...
    fail(&limiter, "owner@example.com", "127.0.0.1", 50);
    assert!(
        limiter
            .attempt("owner@example.com", ip("127.0.0.1"), None)
            .is_err()
    );
    // ... and the owner's device, at the same address, is not held back.
    limiter
        .attempt("owner@example.com", ip("127.0.0.1"), Some("owner-laptop"))
        .unwrap()
        .succeeded();
    // Nor did the device's sign-in open the way for clients without it.
    assert!(
        limiter
            .attempt("owner@example.com", ip("127.0.0.1"), None)
            .is_err()
    );
}

#[test]
fn a_devices_failures_count_against_it_and_then_it_is_any_client() {
    let (limiter, clock) = limiter(5);
    for _ in 0..5 {
        drop(
            limiter
                .attempt("owner@example.com", ip("127.0.0.1"), Some("stolen"))
                .unwrap(),
        );
    }
    // Its own failures left the account's bucket at this address untouched.
    limiter
        .attempt("owner@example.com", ip("127.0.0.1"), None)
        .unwrap()
        .succeeded();
    // Spent, the device goes through the address's buckets, and fills them.
    for _ in 0..5 {
        drop(
            limiter
                .attempt("owner@example.com", ip("127.0.0.1"), Some("stolen"))
                .unwrap(),
        );
    }
    let refused = limiter
        .attempt("owner@example.com", ip("127.0.0.1"), Some("stolen"))
        .unwrap_err();
    assert_eq!(
        refused,
        SignInRefused::Account {
            retry_after: Duration::from_secs(60)
        }
    );
    assert!(
        limiter
            .attempt("owner@example.com", ip("127.0.0.1"), None)
            .is_err()
    );
    // Another device of the account has its own bucket.
    limiter
        .attempt("owner@example.com", ip("127.0.0.1"), Some("desktop"))
        .unwrap()
        .succeeded();
    clock.advance(Duration::from_secs(60));
    assert!(
        limiter
            .attempt("owner@example.com", ip("127.0.0.1"), Some("stolen"))
            .is_ok()
    );
}

#[test]
fn a_devices_successes_cost_nothing() {
    let (limiter, _clock) = limiter(5);
    for _ in 0..100 {
        limiter
            .attempt("owner@example.com", ip("127.0.0.1"), Some("laptop"))
            .unwrap()
            .succeeded();
    }
    for _ in 0..5 {
        drop(
            limiter
                .attempt("owner@example.com", ip("127.0.0.1"), Some("laptop"))
                .unwrap(),
        );
    }
    let state = limiter.shared.as_ref().unwrap().state.lock().unwrap();
    assert!(state.accounts.is_empty(), "nothing counted for the address");
}

#[test]
fn the_off_profile_counts_nothing() {
    let attempts = AttemptLimiter::new(RateLimits::profile("off").unwrap());
    let limiter = SignInLimiter::alongside(&attempts);
    for _ in 0..1000 {
        assert!(
            limiter
                .attempt("owner@example.com", ip("192.0.2.7"), None)
                .is_ok()
        );
    }
}

#[test]
fn signed_in_pairs_are_remembered_up_to_a_cap() {
    let now = Instant::now();
    let mut state = SignInState {
        devices: HashMap::new(),
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
