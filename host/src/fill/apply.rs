//! Applying a checked plan to the outgoing request: edits in order, credentials rendered by
//! the vault, the service's placeholders filled by the vault, then the signer last so that it
//! signs exactly what goes out.
//!
//! On error the request is left half-edited; callers refuse it (a request is never forwarded
//! after a failed apply). The work is bounded by the decision's limits
//! (`plugin/decision.rs`), and its time too: an apply that spends more than
//! [`MAX_APPLY_TIME`] of its thread's CPU (looked at after each edit, after the placeholders
//! and after signing) fails. CPU time, not the clock: a thread preempted on a busy machine has
//! not worked for the plugin. But reading a thread's CPU clock is a system call (close to a
//! microsecond on a VM, a fifth of a bearer plugin's whole cost), so [`ApplyBudget`] reads the
//! coarse monotonic clock (a few nanoseconds, at the kernel tick's resolution) and only reads
//! CPU time once that clock says the bound could be near.

use std::time::Duration;

use http::HeaderName;

use super::context::{ApplyContext, Masks};
use super::plan::{Edit, Plan, Signer};
use super::sigv4;
use crate::request::RequestHead;
use crate::vault::placeholders::PlaceholderError;
use crate::vault::render::{self, RenderError};

/// The most CPU time the host spends applying one decision.
pub const MAX_APPLY_TIME: Duration = Duration::from_millis(20);

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Time on a monotonic clock that costs a few nanoseconds to read and is at most one kernel
/// tick (1 to 10 ms) behind: `CLOCK_MONOTONIC_COARSE` on Linux, `Instant` elsewhere.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse_now() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn coarse_now() -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed()
}

/// The CPU time one apply may still spend. A thread's CPU time never runs ahead of the
/// clock, so while at most half the bound has passed on the clock, at most half has been
/// spent: no CPU clock is read. From then on the CPU time spent since is counted, and the
/// apply fails once that passes the other half, so it never spends more than the bound
/// (plus the one step it is in and one tick of the coarse clock), however long its thread
/// was preempted.
#[derive(Debug)]
struct ApplyBudget {
    started: Duration,
    /// The thread's CPU time when half the bound had passed on the clock.
    cpu_at_half: Option<Duration>,
}

impl ApplyBudget {
    fn start() -> Self {
        ApplyBudget {
            started: coarse_now(),
            cpu_at_half: None,
        }
    }

    fn check(&mut self) -> Result<(), ApplyError> {
        let half = MAX_APPLY_TIME / 2;
        if coarse_now().saturating_sub(self.started) <= half {
            return Ok(());
        }
        let now = thread_cpu_time();
        let since_half = now.saturating_sub(*self.cpu_at_half.get_or_insert(now));
        if since_half > half {
            return Err(ApplyError::TooSlow);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("applying the decision took more than {MAX_APPLY_TIME:?} of CPU time")]
    TooSlow,
    #[error(transparent)]
    Placeholder(#[from] PlaceholderError),
    #[error(transparent)]
    Sign(#[from] sigv4::SignError),
}

impl ApplyError {
    /// Whether a credential did not fit where the plugin put it (the one error that says
    /// nothing more: see `vault::render`).
    pub fn is_unrenderable_credential(&self) -> bool {
        matches!(
            self,
            ApplyError::Render(RenderError::Credential)
                | ApplyError::Sign(sigv4::SignError::Render(RenderError::Credential))
        )
    }
}

/// Apply `plan` to `head`.
pub fn apply(
    plan: &Plan,
    head: &mut RequestHead,
    context: ApplyContext<'_>,
    mut masks: Option<&mut Masks>,
) -> Result<(), ApplyError> {
    let mut budget = ApplyBudget::start();
    for edit in &plan.edits {
        match edit {
            Edit::SetHeader(named) | Edit::AppendHeader(named) => {
                let name = HeaderName::from_bytes(named.name.as_bytes())
                    .expect("checked before the plan was made (plugin::decision)");
                let value = render::header_value(&named.value, context.credentials)?;
                let carries_credential = value.is_sensitive();
                let append = matches!(edit, Edit::AppendHeader(_));
                if let Some(masks) = masks.as_deref_mut() {
                    match (append, carries_credential) {
                        (false, false) => masks.forget_header(&name),
                        (false, true) => masks.header(name.clone(), render::masked(&named.value)),
                        (true, true) => {
                            masks.append_header(name.clone(), render::masked(&named.value))
                        }
                        (true, false) => {}
                    }
                }
                if append {
                    head.headers.append(name, value);
                } else {
                    head.headers.insert(name, value);
                }
            }
            Edit::RemoveHeader(name) => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .expect("checked before the plan was made (plugin::decision)");
                if let Some(masks) = masks.as_deref_mut() {
                    masks.forget_header(&name);
                }
                head.headers.remove(name);
            }
            Edit::SetQuery(named) => {
                let value = render::query_value(&named.value, context.credentials)?;
                if let Some(masks) = masks.as_deref_mut()
                    && render::carries_credential(&named.value)
                {
                    masks.query(&named.name, render::masked(&named.value));
                }
                head.set_query_param(&named.name, &value);
            }
            Edit::RemoveQuery(name) => head.remove_query_param(name),
            Edit::SetPath(value) => {
                head.path = render::path(value, context.credentials)?;
                if let Some(masks) = masks.as_deref_mut() {
                    masks
                        .set_path(render::carries_credential(value).then(|| render::masked(value)));
                }
            }
        }
        budget.check()?;
    }
    if let Some(placeholders) = context.placeholders {
        placeholders.apply_to_head(head)?;
        budget.check()?;
    }
    match &plan.sign {
        Some(Signer::AwsSigv4(params)) => sigv4::sign(params, head, context, masks)?,
        None => {}
    }
    budget.check()
}

#[cfg(test)]
mod tests;
