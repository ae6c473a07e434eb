//! Tests of applying a checked decision to the outgoing request (apply.rs).
//!
//! What the real apply path writes, in every encoding of the contract, is found by the
//! echo search: one test per encoding, and one over the contract's list, so that a new
//! encoding is searched from the day it can be written.

use super::*;
use crate::fill::plan::{Atom, Encoding, NamedValue, Part};
use crate::vault::Credentials;
use crate::vault::redact::CONTRACT_ENCODINGS;
use crate::vault::{Secret, redactor};
use std::time::SystemTime;

/// Bytes that every encoding writes differently: `/`, `+`, a space, non-ASCII, `%`, `~`.
const SECRET: &str = "sk-live/é+Qx9 7_~%zZ";
const LABEL: &str = "[REDACTED:KEY]";

/// The value of header `x-echo` after applying a decision that writes `prefix` and the
/// credential in `encoding` (as `Basic base64("user:" password)` does).
fn written(encoding: Encoding, prefix: &str) -> Vec<u8> {
    let credentials = Credentials::new([("key".to_owned(), Secret::new(SECRET))]);
    let mut atoms = vec![Atom::Credential("key".into())];
    if !prefix.is_empty() {
        atoms.insert(0, Atom::Text(prefix.into()));
    }
    let plan = Plan {
        edits: vec![Edit::SetHeader(NamedValue {
            name: "x-echo".into(),
            value: vec![Part { atoms, encoding }],
        })],
        sign: None,
    };
    let mut head =
        RequestHead::from_url(http::Method::GET, "https://api.example.com/").expect("a valid URL");
    let context = ApplyContext {
        credentials: &credentials,
        now: SystemTime::now(),
        body_sha256: None,
        placeholders: None,
    };
    apply(&plan, &mut head, context, None).expect("the decision applies");
    head.headers["x-echo"].as_bytes().to_vec()
}

/// An upstream echoes what `encoding` wrote; the search must find it, at every alignment
/// after a prefix, and take out (nearly) every byte that carries the secret.
fn echoed_credential_is_redacted(encoding: Encoding) {
    let secret = Secret::new(SECRET);
    let search = redactor([(&secret, LABEL)]).expect("a long enough value");
    // What the secret alone takes once encoded (minus padding and boundary characters).
    let encoded_len = written(encoding, "").len();
    for prefix in ["", "u:", "us:", "user:"] {
        let sent = written(encoding, prefix);
        let body = [b"got: ".as_slice(), &sent, b"\n"].concat();
        let Some((redacted, matches)) = search.body(&body) else {
            panic!("{encoding:?} after {prefix:?}: {sent:?} was not found");
        };
        assert!(matches >= 1);
        let text = String::from_utf8_lossy(&redacted);
        assert!(
            text.contains(LABEL),
            "{encoding:?} after {prefix:?}: {text}"
        );
        let kept = redacted.len() - LABEL.len() * usize::try_from(matches).unwrap();
        let removed = body.len() - kept;
        assert!(
            removed + 4 >= encoded_len,
            "{encoding:?} after {prefix:?}: only {removed} of {encoded_len} bytes removed"
        );
    }
}

#[test]
fn a_raw_credential_echoed_is_redacted() {
    echoed_credential_is_redacted(Encoding::Raw);
}

#[test]
fn a_base64_credential_echoed_is_redacted() {
    echoed_credential_is_redacted(Encoding::Base64);
}

#[test]
fn a_base64url_credential_echoed_is_redacted() {
    echoed_credential_is_redacted(Encoding::Base64url);
}

#[test]
fn a_hex_credential_echoed_is_redacted_in_either_case() {
    echoed_credential_is_redacted(Encoding::Hex);
    let search = redactor([(&Secret::new(SECRET), LABEL)]).expect("long enough");
    let upper = written(Encoding::Hex, "").to_ascii_uppercase();
    let (redacted, _) = search.body(&upper).expect("upper-case hex is found");
    assert_eq!(&redacted[..], LABEL.as_bytes());
}

#[test]
fn a_percent_encoded_credential_echoed_is_redacted() {
    echoed_credential_is_redacted(Encoding::Percent);
}

#[test]
fn every_encoding_of_the_contract_is_redacted_when_echoed() {
    for encoding in CONTRACT_ENCODINGS {
        echoed_credential_is_redacted(encoding);
    }
}

#[test]
fn a_thread_that_waits_has_not_spent_the_budget_and_one_that_works_has() {
    // Preempted (here: asleep) past the whole bound, then quick: not too slow.
    let mut waited = ApplyBudget::start();
    std::thread::sleep(MAX_APPLY_TIME + Duration::from_millis(5));
    assert_eq!(waited.check(), Ok(()));
    assert_eq!(waited.check(), Ok(()));

    // Working past half the bound on the clock and then for more than the other half of
    // CPU: too slow.
    let mut working = ApplyBudget::start();
    let spin = |for_cpu: Duration| {
        let started = thread_cpu_time();
        while thread_cpu_time().saturating_sub(started) <= for_cpu {
            std::hint::black_box(0);
        }
    };
    // Past half the bound by more than one tick of the coarse clock (10 ms at most).
    spin(MAX_APPLY_TIME / 2 + Duration::from_millis(11));
    assert_eq!(
        working.check(),
        Ok(()),
        "the CPU clock starts counting here"
    );
    spin(MAX_APPLY_TIME / 2 + Duration::from_millis(1));
    assert_eq!(working.check(), Err(ApplyError::TooSlow));
}
