//! Device tokens in SQLite: the `device_tokens` table (migration 008). [`DeviceStore`] for
//! [`SqliteStore`] is at the end of this file: each method names its operation (for the error
//! message) and runs these functions in one transaction.
//!
//! A user keeps at most a fixed number of device tokens: storing one more drops the least
//! recently used of theirs in the same transaction, so signing in over and over cannot grow
//! the table. Expired ones go with the expired tokens (`delete_expired`), and all of a user's
//! go with a new password (`delete_of_user`) or with the user (the foreign key).

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::errors::{Constraint, TxResult, misuse};
use super::query_all;
use crate::store::{DeviceRecord, DeviceStore, Result, StoreError, UnixTime};

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

impl DeviceStore for SqliteStore {
    fn insert_device(&self, device: &DeviceRecord, max_per_user: usize) -> Result<()> {
        self.write("store the device token", |tx| {
            insert(tx, device, max_per_user)
        })
    }

    fn device(&self, hash: &str) -> Result<Option<DeviceRecord>> {
        self.read("read the device token", |tx| get(tx, hash))
    }

    fn touch_device(&self, hash: &str, at: UnixTime) -> Result<()> {
        self.write("record the device token's use", |tx| touch(tx, hash, at))
    }

    fn user_devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>> {
        self.read("list the user's device tokens", |tx| of_user(tx, user_id))
    }

    fn delete_device(&self, user_id: &str, public_id: &str) -> Result<bool> {
        self.write("delete the device token", |tx| {
            delete(tx, user_id, public_id)
        })
    }
}
