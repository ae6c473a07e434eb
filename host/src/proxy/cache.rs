//! What the proxy reads on every request (token sessions, vaults, grants, a vault's services
//! and sealed credentials), kept in memory so the request path does not queue on the
//! database.
//!
//! Every management API write bumps a generation counter, and so does a change committed by
//! any writer on the same PostgreSQL database (`store/postgres/changes.rs`, within about a
//! second); any change of generation drops the whole cache, so a revoked token, a removed
//! grant or an edited service takes effect on the next request. What a read finds is kept
//! only if the generation did not move while it read (the change may have committed after
//! the read's snapshot). Sessions are also re-read after [`SESSION_TTL`] so that login sessions keep
//! sliding and expiry is always checked against the clock. Credentials stay sealed here and
//! are opened per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::{AuthError, Session};
use crate::plugin::contract::Requirements;
use crate::plugin::{Plugin, PluginConfigError};
use crate::services::{self, Service};
use crate::store::Generation;
use crate::store::{self, ActorId, Db, Grant, StoreError, TokenKind, Vault};
use crate::vault::crypto::Sealed;

/// How long a resolved session is trusted before it is read again.
pub const SESSION_TTL: Duration = Duration::from_secs(15);

/// One vault as the proxy sees it.
#[derive(Debug)]
pub struct VaultView {
    pub vault: Vault,
    pub services: Vec<Service>,
    /// Sealed credentials by key.
    pub credentials: HashMap<String, Sealed>,
    /// The vault's `unmatched_host_policy` is `deny` (else `passthrough`).
    pub deny_unmatched: bool,
    /// What each service's configuration needs, by service name, for the plugin sha256 it was
    /// computed with.
    requirements: Mutex<HashMap<String, (String, Requirements)>>,
}

impl VaultView {
    /// The requirements of `service` under `plugin`, computed once per plugin version. The
    /// plugin's `validate-config` runs outside the lock and, if slow, off the worker.
    pub async fn requirements(
        &self,
        service: &Service,
        plugin: &Plugin,
    ) -> Result<Requirements, PluginConfigError> {
        let cached = self
            .requirements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&service.name)
            .filter(|(sha, _)| sha == plugin.sha256())
            .map(|(_, requirements)| requirements.clone());
        if let Some(requirements) = cached {
            return Ok(requirements);
        }
        let requirements = plugin.requirements(&service.binding().config).await?;
        self.requirements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                service.name.clone(),
                (plugin.sha256().to_owned(), requirements.clone()),
            );
        Ok(requirements)
    }
}

#[derive(Default)]
struct Entries {
    generation: u64,
    sessions: HashMap<String, (Instant, Session)>,
    /// By id.
    vaults: HashMap<String, Vault>,
    grants: HashMap<ActorId, Arc<Vec<Grant>>>,
    views: HashMap<String, Arc<VaultView>>,
}

/// The proxy's read-through cache over the store.
#[derive(Clone)]
pub struct Cache {
    db: Db,
    generation: Generation,
    cache: Arc<Mutex<Entries>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

impl Cache {
    pub fn new(db: Db, generation: Generation) -> Self {
        Cache {
            db,
            generation,
            cache: Arc::new(Mutex::new(Entries::default())),
        }
    }

    /// Run `read` on the cache, after dropping it if the generation moved.
    fn with_cache<T>(&self, read: impl FnOnce(&mut Entries) -> T) -> T {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.current();
        if cache.generation != generation {
            *cache = Entries {
                generation,
                ..Entries::default()
            };
        }
        read(&mut cache)
    }

    /// Keep what a read found that began at generation `seen`, unless the generation moved
    /// since: the change behind it (here or on another server) may have committed after the
    /// read's snapshot, and what it found would then outlive the change.
    fn keep(&self, seen: u64, write: impl FnOnce(&mut Entries)) {
        self.with_cache(|cache| {
            if cache.generation == seen {
                write(cache);
            }
        });
    }

    /// The session behind a bearer token.
    pub async fn session(&self, token: &str) -> Result<Session, AuthError> {
        let hash = crate::auth::tokens::hash(token);
        let now = store::now();
        let cached = self.with_cache(|cache| {
            cache
                .sessions
                .get(&hash)
                .filter(|(fetched, _)| fetched.elapsed() < SESSION_TTL)
                .map(|(_, session)| session.clone())
        });
        if let Some(session) = cached {
            return still_valid(session, now);
        }
        let token = token.to_owned();
        let seen = self.generation.current();
        let session = self
            .db
            .run(move |store| Ok(crate::auth::authenticate(store, &token, now)))
            .await??;
        self.keep(seen, |cache| {
            cache
                .sessions
                .insert(hash, (Instant::now(), session.clone()));
        });
        Ok(session)
    }

    pub async fn vault_by_name(&self, name: &str) -> Result<Option<Vault>, StoreError> {
        let lookup = name.to_owned();
        self.vault_where(
            |vault| vault.name == name,
            move |store| store.vault(&lookup),
        )
        .await
    }

    pub async fn vault_by_id(&self, id: &str) -> Result<Option<Vault>, StoreError> {
        let lookup = id.to_owned();
        self.vault_where(
            |vault| vault.id == id,
            move |store| store.vault_by_id(&lookup),
        )
        .await
    }

    /// The cached vault that `matches`, else the one `load` finds (then cached).
    async fn vault_where(
        &self,
        matches: impl Fn(&Vault) -> bool,
        load: impl FnOnce(&dyn crate::store::Store) -> crate::store::Result<Option<Vault>>
        + Send
        + 'static,
    ) -> Result<Option<Vault>, StoreError> {
        if let Some(vault) =
            self.with_cache(|cache| cache.vaults.values().find(|v| matches(v)).cloned())
        {
            return Ok(Some(vault));
        }
        let seen = self.generation.current();
        let vault = self.db.run(load).await?;
        if let Some(vault) = &vault {
            self.keep(seen, |cache| {
                cache.vaults.insert(vault.id.clone(), vault.clone());
            });
        }
        Ok(vault)
    }

    pub async fn grants(&self, actor: &ActorId) -> Result<Arc<Vec<Grant>>, StoreError> {
        if let Some(grants) = self.with_cache(|cache| cache.grants.get(actor).cloned()) {
            return Ok(grants);
        }
        let lookup = actor.clone();
        let seen = self.generation.current();
        let grants = Arc::new(self.db.run(move |store| store.grants_of(&lookup)).await?);
        self.keep(seen, |cache| {
            cache.grants.insert(actor.clone(), grants.clone());
        });
        Ok(grants)
    }

    /// The vault's services and sealed credentials.
    pub async fn view(&self, vault: &Vault) -> Result<Arc<VaultView>, StoreError> {
        if let Some(view) = self.with_cache(|cache| cache.views.get(&vault.id).cloned()) {
            return Ok(view);
        }
        let id = vault.id.clone();
        let seen = self.generation.current();
        let (document, sealed, deny_unmatched) = self
            .db
            .run(move |store| {
                let deny = store
                    .vault_setting(&id, "unmatched_host_policy")?
                    .as_deref()
                    == Some("deny");
                let document = store.services(&id)?;
                let mut credentials = HashMap::new();
                for key in store.credential_keys(&id)? {
                    if let Some(stored) = store.credential(&id, &key)? {
                        credentials.insert(stored.key, stored.sealed);
                    }
                }
                Ok((document, credentials, deny))
            })
            .await?;
        let services = match document {
            Some(document) => services::from_document(&document).map_err(StoreError::Database)?,
            None => Vec::new(),
        };
        let view = Arc::new(VaultView {
            vault: vault.clone(),
            services,
            credentials: sealed,
            deny_unmatched,
            requirements: Mutex::new(HashMap::new()),
        });
        self.keep(seen, |cache| {
            cache.views.insert(vault.id.clone(), view.clone());
        });
        Ok(view)
    }
}

/// A cached session, checked against the clock again.
fn still_valid(session: Session, now: store::UnixTime) -> Result<Session, AuthError> {
    if session
        .record
        .expires_at
        .is_some_and(|expires| expires <= now)
    {
        return Err(AuthError::Expired);
    }
    if let TokenKind::Login { idle_seconds, .. } = session.record.kind
        && session.record.last_used_at + idle_seconds <= now
    {
        return Err(AuthError::Expired);
    }
    Ok(session)
}
