//! Tests of vaults and what they hold: the vaults themselves, their settings, credentials
//! and services, and instance settings (`sqlite/vaults.rs`, `settings.rs`, `credentials.rs`,
//! `services.rs`).

use super::*;

fn vaults_are_created_once_with_their_admin(backend: Backend) {
    let store = store_with_owner(backend);
    let default = store.vault(DEFAULT_VAULT).unwrap().unwrap();
    assert_eq!(default.id, DEFAULT_VAULT_ID);

    let alice = ActorId::user("alice");
    let payments = store.create_vault("payments", Some(&alice)).unwrap();
    assert_eq!(payments.id.len(), 32);
    assert!(
        payments
            .id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(store.vault("payments").unwrap(), Some(payments.clone()));
    assert_eq!(
        store.vault_by_id(&payments.id).unwrap(),
        Some(payments.clone())
    );
    assert_eq!(
        roles_in(&*store, &payments.id),
        vec![(alice, VaultRole::Admin)]
    );

    let analytics = store.create_vault("analytics", None).unwrap();
    assert!(store.vault_grants(&analytics.id).unwrap().is_empty());
    let names: Vec<String> = store
        .vaults()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["analytics", "default", "payments"]);

    assert_eq!(
        store.create_vault("payments", None).unwrap_err(),
        StoreError::Conflict("vault payments".into())
    );
    assert_eq!(
        store
            .create_vault("ops", Some(&ActorId::user("mallory")))
            .unwrap_err(),
        StoreError::NotFound("user".into())
    );
    assert_eq!(
        store.vault("ops").unwrap(),
        None,
        "no vault without its admin"
    );
    assert_eq!(store.vault("nope").unwrap(), None);
    assert_eq!(store.vault_by_id("nope").unwrap(), None);
}

fn vault_settings_are_set_replaced_and_removed(backend: Backend) {
    let store = open_store(backend);
    assert_eq!(
        store.vault_setting(DEFAULT_VAULT_ID, "proxy.mode").unwrap(),
        None
    );
    store
        .set_vault_setting(DEFAULT_VAULT_ID, "proxy.mode", Some("strict"))
        .unwrap();
    store
        .set_vault_setting(DEFAULT_VAULT_ID, "proxy.mode", Some("open"))
        .unwrap();
    assert_eq!(
        store
            .vault_setting(DEFAULT_VAULT_ID, "proxy.mode")
            .unwrap()
            .as_deref(),
        Some("open")
    );
    store
        .set_vault_setting(DEFAULT_VAULT_ID, "proxy.mode", None)
        .unwrap();
    assert_eq!(
        store.vault_setting(DEFAULT_VAULT_ID, "proxy.mode").unwrap(),
        None
    );
    assert_eq!(
        store
            .set_vault_setting("nope", "proxy.mode", Some("open"))
            .unwrap_err(),
        StoreError::NotFound("vault".into())
    );
}

fn instance_settings_are_set_replaced_and_removed(backend: Backend) {
    let store = open_store(backend);
    let key = "agents_can_approve_proposals";
    assert_eq!(store.instance_setting(key).unwrap(), None);
    store.set_instance_setting(key, Some("true")).unwrap();
    store.set_instance_setting(key, Some("false")).unwrap();
    assert_eq!(
        store.instance_setting(key).unwrap().as_deref(),
        Some("false")
    );
    store.set_instance_setting(key, None).unwrap();
    assert_eq!(store.instance_setting(key).unwrap(), None);
    // Removing what is not there is not an error.
    store.set_instance_setting(key, None).unwrap();
}

fn deleting_a_vault_deletes_everything_in_it(backend: Backend) {
    let store = store_with_owner(backend);
    let alice = ActorId::user("alice");
    let payments = store.create_vault("payments", Some(&alice)).unwrap();
    let other = store.create_vault("other", Some(&alice)).unwrap();
    for vault in [&payments, &other] {
        store
            .put_credentials(&vault.id, &[credential("STRIPE_KEY", 1)])
            .unwrap();
        store.set_services(&vault.id, r#"{"services":[]}"#).unwrap();
        store
            .set_vault_setting(&vault.id, "proxy.mode", Some("strict"))
            .unwrap();
        store
            .insert_token(&scoped_token(
                &vault.id,
                &format!("session-{}", vault.name),
                Some(alice.clone()),
                None,
            ))
            .unwrap();
        store.insert_logs(&[log_entry(&vault.id, T0)]).unwrap();
    }
    store
        .create_invite(&invite(
            "invite-bob",
            "bob@example.com",
            InstanceRole::Member,
            &[
                (&payments.id, VaultRole::Member),
                (&other.id, VaultRole::Proxy),
            ],
        ))
        .unwrap();

    store.delete_vault(&payments.id).unwrap();

    assert_eq!(store.vault("payments").unwrap(), None);
    assert!(store.credential_keys(&payments.id).unwrap().is_empty());
    assert_eq!(store.services(&payments.id).unwrap(), None);
    assert_eq!(
        store.vault_setting(&payments.id, "proxy.mode").unwrap(),
        None
    );
    assert!(store.vault_grants(&payments.id).unwrap().is_empty());
    assert_eq!(store.token("session-payments").unwrap(), None);
    assert!(page(&*store, &payments.id, None, None, 10).is_empty());
    for table in [
        "credentials",
        "services",
        "vault_settings",
        "vault_grants",
        "tokens",
        "request_logs",
        "user_invite_vaults",
    ] {
        assert_eq!(store.rows_of_vault(table, &payments.id), 0, "{table}");
    }
    let invite = store.invite("invite-bob").unwrap().unwrap();
    assert_eq!(invite.vaults, [(other.id.clone(), VaultRole::Proxy)]);

    // The other vault keeps everything.
    assert_eq!(store.credential_keys(&other.id).unwrap(), ["STRIPE_KEY"]);
    assert!(store.services(&other.id).unwrap().is_some());
    assert!(
        store
            .vault_setting(&other.id, "proxy.mode")
            .unwrap()
            .is_some()
    );
    assert_eq!(store.vault_grants(&other.id).unwrap().len(), 1);
    assert!(store.token("session-other").unwrap().is_some());
    assert_eq!(page(&*store, &other.id, None, None, 10).len(), 1);
}

fn the_default_vault_cannot_be_deleted(backend: Backend) {
    let store = open_store(backend);
    assert_eq!(
        store.delete_vault(DEFAULT_VAULT_ID).unwrap_err(),
        StoreError::Database("the default vault cannot be deleted".into())
    );
    assert!(store.vault(DEFAULT_VAULT).unwrap().is_some());
    assert_eq!(
        store.delete_vault("nope").unwrap_err(),
        StoreError::NotFound("vault".into())
    );
}

fn a_vault_is_renamed_unless_the_name_is_taken_or_it_is_the_default(backend: Backend) {
    let store = store_with_owner(backend);
    let payments = store.create_vault("payments", None).unwrap();
    store.create_vault("billing", None).unwrap();
    store.rename_vault(&payments.id, "payments-eu").unwrap();
    assert_eq!(store.vault("payments").unwrap(), None);
    assert_eq!(
        store.vault("payments-eu").unwrap().map(|vault| vault.id),
        Some(payments.id.clone())
    );
    assert_eq!(
        store.rename_vault(&payments.id, "billing").unwrap_err(),
        StoreError::Conflict("vault billing".into())
    );
    assert_eq!(
        store.rename_vault(DEFAULT_VAULT_ID, "main").unwrap_err(),
        StoreError::Database("the default vault cannot be renamed".into())
    );
    assert_eq!(
        store.rename_vault("nope", "x").unwrap_err(),
        StoreError::NotFound("vault".into())
    );
}

fn credentials_are_stored_listed_replaced_and_deleted(backend: Backend) {
    let store = open_store(backend);
    let vault = DEFAULT_VAULT_ID;
    store
        .put_credentials(
            vault,
            &[credential("STRIPE_KEY", 1), credential("GITHUB_TOKEN", 2)],
        )
        .unwrap();
    assert_eq!(
        store.credential_keys(vault).unwrap(),
        ["GITHUB_TOKEN", "STRIPE_KEY"]
    );
    assert_eq!(
        store.credential(vault, "STRIPE_KEY").unwrap(),
        Some(credential("STRIPE_KEY", 1))
    );

    store
        .put_credentials(vault, &[credential("STRIPE_KEY", 3)])
        .unwrap();
    assert_eq!(
        store.credential(vault, "STRIPE_KEY").unwrap(),
        Some(credential("STRIPE_KEY", 3))
    );
    assert_eq!(store.credential(vault, "MISSING").unwrap(), None);

    let deleted = store
        .delete_credentials(vault, &["STRIPE_KEY".into(), "MISSING".into()])
        .unwrap();
    assert_eq!(deleted, ["STRIPE_KEY"]);
    assert_eq!(store.credential_keys(vault).unwrap(), ["GITHUB_TOKEN"]);
}

fn storing_credentials_is_all_or_nothing(backend: Backend) {
    let store = open_store(backend);
    let vault = DEFAULT_VAULT_ID;
    store
        .put_credentials(vault, &[credential("STRIPE_KEY", 1)])
        .unwrap();
    // Make the second write of the batch fail, as a full disk would.
    store.fail_credential_inserts("BROKEN", "disk full");

    let error = store
        .put_credentials(
            vault,
            &[credential("STRIPE_KEY", 2), credential("BROKEN", 3)],
        )
        .unwrap_err();
    assert_eq!(
        error,
        StoreError::Database("cannot store the credentials: disk full".into())
    );
    assert_eq!(
        store.credential(vault, "STRIPE_KEY").unwrap(),
        Some(credential("STRIPE_KEY", 1))
    );
    assert_eq!(store.credential_keys(vault).unwrap(), ["STRIPE_KEY"]);

    assert_eq!(
        store
            .put_credentials("nope", &[credential("STRIPE_KEY", 1)])
            .unwrap_err(),
        StoreError::NotFound("vault".into())
    );
}

fn the_services_document_is_replaced_whole(backend: Backend) {
    let store = open_store(backend);
    assert_eq!(store.services(DEFAULT_VAULT_ID).unwrap(), None);
    store
        .set_services(DEFAULT_VAULT_ID, r#"{"services":[1]}"#)
        .unwrap();
    store
        .set_services(DEFAULT_VAULT_ID, r#"{"services":[2]}"#)
        .unwrap();
    assert_eq!(
        store.services(DEFAULT_VAULT_ID).unwrap().as_deref(),
        Some(r#"{"services":[2]}"#)
    );
    assert_eq!(
        store.set_services("nope", "{}").unwrap_err(),
        StoreError::NotFound("vault".into())
    );
}

backend_tests!(
    vaults_are_created_once_with_their_admin,
    vault_settings_are_set_replaced_and_removed,
    instance_settings_are_set_replaced_and_removed,
    deleting_a_vault_deletes_everything_in_it,
    the_default_vault_cannot_be_deleted,
    a_vault_is_renamed_unless_the_name_is_taken_or_it_is_the_default,
    credentials_are_stored_listed_replaced_and_deleted,
    storing_credentials_is_all_or_nothing,
    the_services_document_is_replaced_whole,
);
