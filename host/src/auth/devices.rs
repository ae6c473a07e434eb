//! Device tokens, OWASP's "device cookies" against lockout by failed sign-ins: a client that
//! signs in to an account is handed one (`av_dev_`, 256 random bits, shown once; the store
//! keeps its SHA-256, bound to the user) and shows it at its next sign-ins to that account.
//! Recognised, such an attempt counts in that device's own bucket of failures
//! (`ratelimit/sign_in.rs`), so that other clients failing at the account, from the same
//! address too, never hold the owner back.
//!
//! A device token is not a login: it opens nothing, is never taken as a bearer token
//! (`authenticate` refuses its prefix), and a sign-in with it still needs the password. It
//! ends after a year without a sign-in, when the user's password changes, and with the
//! user. [`recognise`] decides whether a token a client shows counts; [`mint`] makes one.

use zeroize::Zeroizing;

use super::tokens;
use crate::store::{DeviceRecord, Store, StoreError, UnixTime};
use crate::vault::crypto::CryptoError;

/// A device token ends after this long without a sign-in.
pub const DEVICE_IDLE_SECONDS: i64 = 365 * 24 * 3600;

/// The device tokens one user keeps at most; a new one replaces their least recently used.
pub const MAX_DEVICES_PER_USER: usize = 50;

/// Longer than any device token minted: longer ones are not looked up.
const MAX_TOKEN_LEN: usize = 128;

/// The record of `token` if it is a live device token of the account whose (lower-case)
/// email is `email`. Anything else (malformed, unknown, expired, another user's) is `None`:
/// the client counts as one that showed no device token.
pub fn recognise(
    store: &dyn Store,
    token: &str,
    email: &str,
    now: UnixTime,
) -> Result<Option<DeviceRecord>, StoreError> {
    if !token.starts_with(tokens::DEVICE_PREFIX) || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let Some(device) = store.device(&tokens::hash(token))? else {
        return Ok(None);
    };
    if !tokens::matches(token, &device.hash) || !device.is_live(now) {
        return Ok(None);
    }
    let holder = store.user(&device.user_id)?;
    Ok(holder
        .filter(|user| user.email.eq_ignore_ascii_case(email))
        .map(|_| device))
}

/// A new device token for the user `user_id`: the token to hand out once, and the record to
/// store.
pub fn mint(
    user_id: &str,
    now: UnixTime,
) -> Result<(Zeroizing<String>, DeviceRecord), CryptoError> {
    let minted = tokens::mint(tokens::DEVICE_PREFIX)?;
    let record = DeviceRecord {
        hash: minted.hash,
        public_id: minted.public_id,
        user_id: user_id.to_owned(),
        idle_seconds: DEVICE_IDLE_SECONDS,
        created_at: now,
        last_used_at: now,
    };
    Ok((minted.token, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{DeviceStore, InstanceRole, User, UserStore};

    const T0: UnixTime = 1_700_000_000;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            email: format!("{id}@example.com"),
            role: InstanceRole::Owner,
            password_hash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
            created_at: T0,
        }
    }

    #[test]
    fn only_a_live_device_token_of_the_account_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("agent-vault.db")).unwrap();
        store.create_first_owner(&user("alice")).unwrap();
        let (token, record) = mint("alice", T0).unwrap();
        assert!(token.starts_with("av_dev_"));
        assert_eq!(record.hash, tokens::hash(&token));
        store.insert_device(&record, MAX_DEVICES_PER_USER).unwrap();

        let recognised = |token: &str, email: &str, now: UnixTime| {
            recognise(&store, token, email, now)
                .unwrap()
                .map(|device| device.public_id)
        };
        assert_eq!(
            recognised(&token, "alice@example.com", T0 + 1),
            Some(record.public_id.clone())
        );
        assert_eq!(
            recognised(&token, "Alice@Example.com", T0 + 1),
            Some(record.public_id.clone())
        );
        assert_eq!(recognised(&token, "bob@example.com", T0 + 1), None);
        assert_eq!(
            recognised(&token, "alice@example.com", T0 + DEVICE_IDLE_SECONDS),
            None
        );
        let (unknown, _) = mint("alice", T0).unwrap();
        assert_eq!(recognised(&unknown, "alice@example.com", T0), None);
        // Other kinds of token, and text too long to be a device token, are not looked up.
        let session = token.replace("av_dev_", "av_sess_");
        assert_eq!(recognised(&session, "alice@example.com", T0), None);
        assert_eq!(
            recognised(&"av_dev_0".repeat(40), "alice@example.com", T0),
            None
        );
    }
}
