//! Tests of the master key (`sqlite/master_key.rs`).

use super::*;
use crate::store::KeyProtection;
use crate::vault::crypto::KdfParams;

fn the_master_key_is_stored_once_then_replaced(backend: Backend) {
    let store = open_store(backend);
    let password = MasterKeyRecord {
        key_version: 1,
        protection: KeyProtection::Password {
            salt: vec![7; 16],
            kdf: KdfParams::default(),
            wrapped: sealed(9),
        },
    };
    assert_eq!(store.master_key().unwrap(), None);
    assert_eq!(
        store.replace_master_key(&password).unwrap_err(),
        StoreError::NotFound("master key".into())
    );

    store.init_master_key(&password).unwrap();
    assert_eq!(store.master_key().unwrap(), Some(password.clone()));
    assert_eq!(
        store.init_master_key(&password).unwrap_err(),
        StoreError::Conflict("a master key".into())
    );

    let passwordless = MasterKeyRecord {
        key_version: 1,
        protection: KeyProtection::Passwordless { plain: vec![3; 32] },
    };
    store.replace_master_key(&passwordless).unwrap();
    assert_eq!(store.master_key().unwrap(), Some(passwordless));
    store.replace_master_key(&password).unwrap();
    assert_eq!(store.master_key().unwrap(), Some(password));
}

fn a_wrapped_key_must_carry_the_version_of_its_record(backend: Backend) {
    let store = open_store(backend);
    let record = MasterKeyRecord {
        key_version: 2,
        protection: KeyProtection::Password {
            salt: vec![7; 16],
            kdf: KdfParams::default(),
            wrapped: sealed(9),
        },
    };
    assert_eq!(
        store.init_master_key(&record).unwrap_err(),
        StoreError::Database("the wrapped data key must carry the record's key version".into())
    );
    assert_eq!(store.master_key().unwrap(), None);
}

backend_tests!(
    the_master_key_is_stored_once_then_replaced,
    a_wrapped_key_must_carry_the_version_of_its_record,
);
