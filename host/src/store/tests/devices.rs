//! Tests of device tokens (`sqlite/devices.rs`, `postgres/devices.rs`).

use super::*;

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

fn a_device_token_is_stored_found_by_hash_touched_listed_and_deleted(backend: Backend) {
    let store = store_with_owner(backend);
    add_user(&*store, "bob", InstanceRole::Member);
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

    assert_eq!(hashes(&*store, "alice"), ["d1"]);
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

fn a_user_keeps_the_most_recently_used_device_tokens_up_to_the_cap(backend: Backend) {
    let store = store_with_owner(backend);
    add_user(&*store, "bob", InstanceRole::Member);
    store.insert_device(&device("bob", "bob-1", T0), 3).unwrap();
    store.insert_device(&device("alice", "old", T0), 3).unwrap();
    store
        .insert_device(&device("alice", "used", T0 + 5), 3)
        .unwrap();
    store
        .insert_device(&device("alice", "older", T0 - 5), 3)
        .unwrap();
    store.insert_device(&device("alice", "new", T0), 3).unwrap();
    let mut kept = hashes(&*store, "alice");
    kept.sort();
    assert_eq!(kept, ["new", "old", "used"]);
    // Another user's are not counted against alice.
    assert_eq!(hashes(&*store, "bob"), ["bob-1"]);
}

fn a_new_password_or_deleting_the_user_ends_their_device_tokens(backend: Backend) {
    let store = store_with_owner(backend);
    add_user(&*store, "bob", InstanceRole::Member);
    store.insert_device(&device("alice", "a1", T0), 10).unwrap();
    store.insert_device(&device("bob", "b1", T0), 10).unwrap();
    store.insert_device(&device("bob", "b2", T0), 10).unwrap();

    store.set_user_password("alice", "new hash").unwrap();
    assert_eq!(store.device("a1").unwrap(), None);
    assert_eq!(hashes(&*store, "bob").len(), 2);

    store.delete_user("bob").unwrap();
    assert_eq!(store.device("b1").unwrap(), None);
    assert_eq!(store.device("b2").unwrap(), None);
}

fn device_tokens_unused_for_their_idle_time_are_deleted_with_expired_tokens(backend: Backend) {
    let store = store_with_owner(backend);
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
    assert_eq!(hashes(&*store, "alice"), ["recent"]);
}

backend_tests!(
    a_device_token_is_stored_found_by_hash_touched_listed_and_deleted,
    a_user_keeps_the_most_recently_used_device_tokens_up_to_the_cap,
    a_new_password_or_deleting_the_user_ends_their_device_tokens,
    device_tokens_unused_for_their_idle_time_are_deleted_with_expired_tokens,
);
