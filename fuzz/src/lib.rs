//! What the fuzz targets share: reference implementations that the host's code is compared
//! against (`reference`, written to be obviously right rather than fast), helpers that turn
//! fuzz bytes into structured input (`input`), and a way to run the host's async code on
//! in-memory streams (`block_on`).
//!
//! The targets themselves are in `fuzz_targets/`, one per parser or matcher; each says at the
//! top which properties it asserts.

pub mod input;
pub mod json;
pub mod reference;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future that never waits: the host's stream code over in-memory readers and
/// writers, which are always ready. Panics if it does wait, which would be a bug in the
/// target (a reader or writer that is not in memory).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory future waited"),
    }
}
