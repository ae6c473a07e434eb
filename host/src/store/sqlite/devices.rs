//! Device tokens in SQLite: the `device_tokens` table (migration 008). The trait methods of
//! [`super::SqliteStore`] call these inside their transaction.
//!
//! A user keeps at most a fixed number of device tokens: storing one more drops the least
//! recently used of theirs in the same transaction, so signing in over and over cannot grow
//! the table. Expired ones go with the expired tokens (`delete_expired`), and all of a user's
//! go with a new password (`delete_of_user`) or with the user (the foreign key).

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::errors::{Constraint, TxResult, misuse};
use super::query_all;
use crate::store::{DeviceRecord, StoreError, UnixTime};

const COLUMNS: &str = "hash, public_id, user_id, idle_seconds, created_at, last_used_at";

fn device_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        hash: row.get(0)?,
        public_id: row.get(1)?,
        user_id: row.get(2)?,
        idle_seconds: row.get(3)?,
        created_at: row.get(4)?,
        last_used_at: row.get(5)?,
    })
}

pub(super) fn insert(
    tx: &Transaction<'_>,
    device: &DeviceRecord,
    max_per_user: usize,
) -> TxResult<()> {
    let Some(others_kept) = max_per_user.checked_sub(1) else {
        return Err(misuse("a user must be allowed at least one device token"));
    };
    tx.execute(
        &format!("INSERT INTO device_tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            device.hash,
            device.public_id,
            device.user_id,
            device.idle_seconds,
            device.created_at,
            device.last_used_at,
        ],
    )
    .on_unique("device token")
    .on_missing("user")?;
    tx.execute(
        "DELETE FROM device_tokens
         WHERE user_id = ?1 AND hash != ?2 AND hash NOT IN (
             SELECT hash FROM device_tokens WHERE user_id = ?1 AND hash != ?2
             ORDER BY last_used_at DESC, created_at DESC, hash LIMIT ?3)",
        params![device.user_id, device.hash, others_kept as i64],
    )?;
    Ok(())
}

pub(super) fn get(tx: &Transaction<'_>, hash: &str) -> TxResult<Option<DeviceRecord>> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM device_tokens WHERE hash = ?1"),
            [hash],
            device_row,
        )
        .optional()?)
}

pub(super) fn touch(tx: &Transaction<'_>, hash: &str, at: UnixTime) -> TxResult<()> {
    // MAX: two sign-ins finishing out of order must not move the time backwards.
    let changed = tx.execute(
        "UPDATE device_tokens SET last_used_at = MAX(last_used_at, ?1) WHERE hash = ?2",
        params![at, hash],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound("device token".into()).into());
    }
    Ok(())
}

pub(super) fn of_user(tx: &Transaction<'_>, user_id: &str) -> TxResult<Vec<DeviceRecord>> {
    query_all(
        tx,
        &format!(
            "SELECT {COLUMNS} FROM device_tokens WHERE user_id = ?1
             ORDER BY created_at, public_id"
        ),
        [user_id],
        device_row,
    )
}

pub(super) fn delete(tx: &Transaction<'_>, user_id: &str, public_id: &str) -> TxResult<bool> {
    Ok(tx.execute(
        "DELETE FROM device_tokens WHERE user_id = ?1 AND public_id = ?2",
        [user_id, public_id],
    )? > 0)
}

pub(super) fn delete_of_user(tx: &Transaction<'_>, user_id: &str) -> TxResult<()> {
    tx.execute("DELETE FROM device_tokens WHERE user_id = ?1", [user_id])?;
    Ok(())
}

/// Delete the device tokens unused for their idle time at `now`; how many.
pub(super) fn delete_expired(tx: &Transaction<'_>, now: UnixTime) -> TxResult<usize> {
    // Live while `now < last_used_at + idle_seconds` (`DeviceRecord::is_live`).
    Ok(tx.execute(
        "DELETE FROM device_tokens WHERE last_used_at + idle_seconds <= ?1",
        [now],
    )?)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{T0, add_user, store_with_owner};
    use crate::store::{DeviceRecord, InstanceRole, Store, StoreError};

    fn device(user_id: &str, hash: &str, last_used_at: i64) -> DeviceRecord {
        DeviceRecord {
            hash: hash.into(),
            public_id: format!("pub-{hash}"),
            user_id: user_id.into(),
            idle_seconds: 1000,
            created_at: T0,
            last_used_at,
        }
    }

    fn hashes(store: &dyn Store, user_id: &str) -> Vec<String> {
        store
            .user_devices(user_id)
            .unwrap()
            .into_iter()
            .map(|device| device.hash)
            .collect()
    }

    #[test]
    fn a_device_token_is_stored_found_by_hash_touched_listed_and_deleted() {
        let (_dir, store) = store_with_owner();
        add_user(&store, "bob", InstanceRole::Member);
        store.insert_device(&device("alice", "d1", T0), 10).unwrap();
        store.insert_device(&device("bob", "d2", T0), 10).unwrap();
        assert_eq!(store.device("d1").unwrap(), Some(device("alice", "d1", T0)));
        assert_eq!(store.device("nope").unwrap(), None);

        store.touch_device("d1", T0 + 50).unwrap();
        store.touch_device("d1", T0 + 20).unwrap();
        assert_eq!(store.device("d1").unwrap().unwrap().last_used_at, T0 + 50);
        assert_eq!(
            store.touch_device("nope", T0),
            Err(StoreError::NotFound("device token".into()))
        );

        assert_eq!(hashes(&store, "alice"), ["d1"]);
        // Only the user's own device token can be deleted through them.
        assert!(!store.delete_device("alice", "pub-d2").unwrap());
        assert!(store.delete_device("bob", "pub-d2").unwrap());
        assert_eq!(store.device("d2").unwrap(), None);
        assert_eq!(
            store.insert_device(&device("carol", "d3", T0), 10),
            Err(StoreError::NotFound("user".into()))
        );
        assert_eq!(
            store.insert_device(&device("alice", "d1", T0), 10),
            Err(StoreError::Conflict("device token".into()))
        );
    }

    #[test]
    fn a_user_keeps_the_most_recently_used_device_tokens_up_to_the_cap() {
        let (_dir, store) = store_with_owner();
        add_user(&store, "bob", InstanceRole::Member);
        store.insert_device(&device("bob", "bob-1", T0), 3).unwrap();
        store.insert_device(&device("alice", "old", T0), 3).unwrap();
        store
            .insert_device(&device("alice", "used", T0 + 5), 3)
            .unwrap();
        store
            .insert_device(&device("alice", "older", T0 - 5), 3)
            .unwrap();
        store.insert_device(&device("alice", "new", T0), 3).unwrap();
        let mut kept = hashes(&store, "alice");
        kept.sort();
        assert_eq!(kept, ["new", "old", "used"]);
        // Another user's are not counted against alice.
        assert_eq!(hashes(&store, "bob"), ["bob-1"]);
    }

    #[test]
    fn a_new_password_or_deleting_the_user_ends_their_device_tokens() {
        let (_dir, store) = store_with_owner();
        add_user(&store, "bob", InstanceRole::Member);
        store.insert_device(&device("alice", "a1", T0), 10).unwrap();
        store.insert_device(&device("bob", "b1", T0), 10).unwrap();
        store.insert_device(&device("bob", "b2", T0), 10).unwrap();

        store.set_user_password("alice", "new hash").unwrap();
        assert_eq!(store.device("a1").unwrap(), None);
        assert_eq!(hashes(&store, "bob").len(), 2);

        store.delete_user("bob").unwrap();
        assert_eq!(store.device("b1").unwrap(), None);
        assert_eq!(store.device("b2").unwrap(), None);
    }

    #[test]
    fn device_tokens_unused_for_their_idle_time_are_deleted_with_expired_tokens() {
        let (_dir, store) = store_with_owner();
        store
            .insert_device(&device("alice", "idle", T0), 10)
            .unwrap();
        store
            .insert_device(&device("alice", "recent", T0 + 500), 10)
            .unwrap();
        assert!(store.device("idle").unwrap().unwrap().is_live(T0 + 999));
        assert!(!store.device("idle").unwrap().unwrap().is_live(T0 + 1000));
        assert_eq!(store.delete_expired_tokens(T0 + 999).unwrap(), 0);
        assert_eq!(store.delete_expired_tokens(T0 + 1000).unwrap(), 1);
        assert_eq!(hashes(&store, "alice"), ["recent"]);
    }
}
