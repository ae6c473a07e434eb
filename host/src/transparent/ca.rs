//! The transparent proxy's local certificate authority, and the leaf certificates it mints.
//!
//! On first start the server makes a root CA (ECDSA P-256, ten years) and keeps it in the
//! store: the certificate as PEM, the private key sealed under the data key like a
//! credential. Agents trust it through `GET /v1/mitm/ca.pem` (`vault run` sets that up). For
//! each host an agent `CONNECT`s to, a leaf certificate for exactly that name is minted,
//! valid for a week, and kept in a small least-recently-used cache of TLS server
//! configurations (ALPN `h2` and `http/1.1`), renewed after a day.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::store::{Store, StoreError, StoredCa, now};
use crate::vault::crypto::DataKey;

/// How many hosts' TLS configurations are kept.
const CACHE_CAPACITY: usize = 1024;
/// A leaf is replaced after this long, well before it expires.
const LEAF_RENEWAL: Duration = Duration::from_secs(24 * 3600);
const LEAF_VALIDITY_DAYS: i64 = 7;
const CA_VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot use the TLS key: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the local CA's key cannot be opened: {0}")]
    Seal(#[from] crate::vault::crypto::CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored local CA is unusable: {0}")]
    Stored(String),
}

/// The CA, ready to sign, with its cache of per-host TLS configurations.
pub struct LocalCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    cache: Mutex<LeafCache>,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

/// The parameters a CA named `common_name` is made with; rebuilt, identically, to sign.
fn ca_params(common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "agent-vault");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let today = time::OffsetDateTime::now_utc();
    params.not_before = today - time::Duration::days(1);
    params.not_after = today + time::Duration::days(CA_VALIDITY_DAYS);
    Ok(params)
}

impl LocalCa {
    /// The instance's CA: the stored one, or a new one stored now.
    pub fn load_or_create(store: &dyn Store, data_key: &DataKey) -> Result<LocalCa, CaError> {
        if let Some(stored) = store.transparent_ca()? {
            return LocalCa::from_stored(&stored, data_key);
        }
        let mut suffix = [0u8; 4];
        crate::vault::crypto::random(&mut suffix)?;
        let common_name = format!("agent-vault local CA {}", hex::encode(suffix));
        let key = KeyPair::generate()?;
        let cert = ca_params(&common_name)?.self_signed(&key)?;
        let pkcs8 = Zeroizing::new(key.serialize_der());
        let stored = StoredCa {
            common_name,
            cert_pem: cert.pem(),
            sealed_key: data_key.seal_ca_key(&pkcs8)?,
            created_at: now(),
        };
        match store.init_transparent_ca(&stored) {
            Ok(()) => {
                tracing::info!("made the transparent proxy's local CA");
                LocalCa::from_stored(&stored, data_key)
            }
            // Another process made one first: use that.
            Err(StoreError::Conflict(_)) => {
                let stored = store
                    .transparent_ca()?
                    .ok_or_else(|| CaError::Stored("it vanished".into()))?;
                LocalCa::from_stored(&stored, data_key)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn from_stored(stored: &StoredCa, data_key: &DataKey) -> Result<LocalCa, CaError> {
        let der = data_key.open_ca_key(&stored.sealed_key)?;
        let key = KeyPair::try_from(der.as_slice())?;
        let cert_der = rustls_pki_types::pem::PemObject::from_pem_slice(stored.cert_pem.as_bytes())
            .map_err(|error| CaError::Stored(format!("its certificate: {error}")))?;
        let issuer = Issuer::new(ca_params(&stored.common_name)?, key);
        Ok(LocalCa {
            cert_pem: stored.cert_pem.clone(),
            cert_der,
            issuer,
            cache: Mutex::new(LeafCache::default()),
        })
    }

    /// The CA certificate, PEM, for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The TLS configuration that presents a certificate for `host` (a DNS name or an IP
    /// address), from the cache or minted now.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = cache.get(host) {
            return Ok(config);
        }
        let config = Arc::new(self.mint(host)?);
        cache.insert(host.to_owned(), config.clone());
        Ok(config)
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, CaError> {
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        params.distinguished_name = {
            let mut name = DistinguishedName::new();
            name.push(DnType::CommonName, host);
            name
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let today = time::OffsetDateTime::now_utc();
        params.not_before = today - time::Duration::hours(1);
        params.not_after = today + time::Duration::days(LEAF_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), self.cert_der.clone()], private)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Per-host TLS configurations, least recently used first out.
#[derive(Default)]
struct LeafCache {
    entries: HashMap<String, (Arc<ServerConfig>, Instant, u64)>,
    /// Bumped on every use; an entry's last use orders evictions.
    clock: u64,
}

impl LeafCache {
    fn get(&mut self, host: &str) -> Option<Arc<ServerConfig>> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.get_mut(host)?;
        if entry.1.elapsed() >= LEAF_RENEWAL {
            self.entries.remove(host);
            return None;
        }
        entry.2 = clock;
        Some(entry.0.clone())
    }

    fn insert(&mut self, host: String, config: Arc<ServerConfig>) {
        if self.entries.len() >= CACHE_CAPACITY {
            // Evicting scans the map; it happens once per new host beyond the capacity,
            // next to the cost of minting a certificate.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(host, _)| host.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        self.entries
            .insert(host, (config, Instant::now(), self.clock));
    }
}
