//! Device tokens: what lets a client that signed in before count apart from other clients'
//! failed sign-ins (`ratelimit/sign_in.rs`), stored only as their SHA-256.

use super::{Result, UnixTime};

/// A device token as stored: only its SHA-256 (`hash`). A client that signed in to `user_id`'s
/// account holds the token and shows it at its next sign-ins, which then count apart from
/// other clients' failures (`ratelimit/sign_in.rs`). It authenticates nothing by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Lower-case hex SHA-256 of the token.
    pub hash: String,
    /// A non-secret id for listing and revoking.
    pub public_id: String,
    pub user_id: String,
    /// The token ends after this long without a sign-in.
    pub idle_seconds: i64,
    pub created_at: UnixTime,
    /// The last sign-in with it.
    pub last_used_at: UnixTime,
}

impl DeviceRecord {
    /// Whether the token still counts at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        now < self.last_used_at.saturating_add(self.idle_seconds)
    }
}

/// Device tokens. Every method is one transaction.
pub trait DeviceStore {
    /// Store a device token; past `max_per_user` of its user's, the least recently used of
    /// theirs go. `NotFound` if the user is gone.
    fn insert_device(&self, device: &DeviceRecord, max_per_user: usize) -> Result<()>;
    fn device(&self, hash: &str) -> Result<Option<DeviceRecord>>;
    /// Record a sign-in with the device token at `at`; `NotFound` if it is gone.
    fn touch_device(&self, hash: &str, at: UnixTime) -> Result<()>;
    /// A user's device tokens, oldest first.
    fn user_devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>>;
    /// Delete one of the user's device tokens by public id; whether it existed.
    fn delete_device(&self, user_id: &str, public_id: &str) -> Result<bool>;
}
