//! The CA bundle `vault run` gives its command: the system's roots, every bundle the user
//! already pointed a CA-trust variable at, and the transparent proxy's local CA, in one file
//! that each runtime's variable then names (the table is in `docs/proxy.md`).
//!
//! A bundle the user set is merged, never dropped: the command keeps trusting what the user
//! trusted. One that cannot be read or holds no certificate is an error naming the variable,
//! since running the command with less trust than asked for would fail later and obscurely.
//! The file is written 0600 inside the data directory, which must be the user's own and
//! closed to others, so that no other local user can swap a CA into it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sha2::Digest as _;

use super::client;

/// The system's trust stores, in the order they are looked for; the first found is used.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The variables that point a client at a CA bundle file, each set to the merged bundle.
/// The client that reads each is in `docs/proxy.md`.
pub const CA_VARIABLES: [&str; 15] = [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "DENO_CERT",
    "AWS_CA_BUNDLE",
    "PIP_CERT",
    "CARGO_HTTP_CAINFO",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "BUNDLE_SSL_CA_CERT",
    "HEX_CACERTS_PATH",
    "HTTPLIB2_CA_CERTS",
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
    "COMPOSER_CAFILE",
];

/// Why the bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{origin} cannot be read ({reason}); {advice}")]
    Unreadable {
        origin: String,
        reason: String,
        advice: String,
    },
    #[error("{origin} is not a PEM certificate bundle ({reason}); {advice}")]
    NotPem {
        origin: String,
        reason: String,
        advice: String,
    },
    #[error(
        "the data directory {} is {problem}, so another local user could swap a CA into the \
         bundle vault run writes there; make it yours alone (`chmod 700`) or pick another \
         with --data-dir",
        path.display()
    )]
    OpenDirectory { path: PathBuf, problem: String },
    #[error("the server's CA is not a PEM certificate: {0}")]
    LocalCa(String),
    #[error("writing the CA bundle: {0:#}")]
    Write(anyhow::Error),
}

/// One bundle file the merged bundle starts from.
struct Source {
    /// The variable that named it; `None` for the system's bundle.
    variable: Option<&'static str>,
    path: PathBuf,
}

impl Source {
    /// How an error names it: `AWS_CA_BUNDLE=/path`.
    fn origin(&self) -> String {
        match self.variable {
            Some(variable) => format!("{variable}={}", self.path.display()),
            None => format!("the system's CA bundle {}", self.path.display()),
        }
    }

    /// What the user can do about it.
    fn advice(&self) -> String {
        match self.variable {
            Some(variable) => format!(
                "vault run merges the bundle {variable} names into the one it gives the \
                 command: fix the file or unset {variable}"
            ),
            None => "vault run starts its bundle from the system's roots".into(),
        }
    }
}

/// Write `<data-dir>/ca-bundle-<hash>.pem` (the system's roots, the bundles this process's
/// environment names, then the local CA) and return its path.
pub fn write(data_dir: &Path, local_ca_pem: &str) -> Result<PathBuf, BundleError> {
    let mut sources: Vec<Source> = SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .take(1)
        .map(|path| Source {
            variable: None,
            path,
        })
        .collect();
    if sources.is_empty() {
        eprintln!(
            "warning: no system CA bundle found; the command trusts only the agent-vault CA \
             and the bundles its variables named"
        );
    }
    for variable in CA_VARIABLES {
        let Some(value) = std::env::var_os(variable).filter(|value| !value.is_empty()) else {
            continue;
        };
        let path = PathBuf::from(value);
        if !sources.iter().any(|source| source.path == path) {
            sources.push(Source {
                variable: Some(variable),
                path,
            });
        }
    }

    let local_ca: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(local_ca_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|error| BundleError::LocalCa(error.to_string()))?;
    // The local CA goes last, as the server sent it; a bundle of an earlier `vault run`
    // (a nested one, say) already holds it and must not repeat it.
    let mut seen: HashSet<Vec<u8>> = local_ca.iter().map(|der| der.to_vec()).collect();
    let mut bundle = String::new();
    for source in &sources {
        for der in read_certificates(source)? {
            if seen.insert(der.to_vec()) {
                push_pem(&mut bundle, &der);
            }
        }
    }
    bundle.push_str(local_ca_pem);
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }

    // Named by its contents: a `vault run` merging other bundles writes another file rather
    // than take trust away from a command already running on this one.
    let digest = hex::encode(sha2::Sha256::digest(bundle.as_bytes()));
    let name = format!("ca-bundle-{}.pem", &digest[..16]);
    check_private(data_dir)?;
    // Creates the data directory, 0700, if need be; the file is 0600, renamed into place.
    client::write_private(data_dir, &name, bundle.as_bytes()).map_err(BundleError::Write)?;
    Ok(data_dir.join(name))
}

/// The certificates of one bundle file; at least one, or an error naming its variable.
fn read_certificates(source: &Source) -> Result<Vec<CertificateDer<'static>>, BundleError> {
    let bytes = std::fs::read(&source.path).map_err(|error| BundleError::Unreadable {
        origin: source.origin(),
        reason: error.to_string(),
        advice: source.advice(),
    })?;
    let not_pem = |reason: String| BundleError::NotPem {
        origin: source.origin(),
        reason,
        advice: source.advice(),
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|error| not_pem(error.to_string()))?;
    if certificates.is_empty() {
        return Err(not_pem("it holds no certificate".into()));
    }
    Ok(certificates)
}

/// Append one certificate as PEM, 64 characters a line.
fn push_pem(bundle: &mut String, der: &CertificateDer<'_>) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    bundle.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // Base64 is ASCII.
        bundle.push_str(&String::from_utf8_lossy(line));
        bundle.push('\n');
    }
    bundle.push_str("-----END CERTIFICATE-----\n");
}

/// An existing data directory must belong to this user and be writable by no one else:
/// whoever can write there can replace the bundle (a rename needs only the directory).
fn check_private(data_dir: &Path) -> Result<(), BundleError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(metadata) = std::fs::metadata(data_dir) else {
            // Not there yet: `write_private` creates it 0700.
            return Ok(());
        };
        let open = |problem: String| BundleError::OpenDirectory {
            path: data_dir.to_owned(),
            problem,
        };
        let me = rustix::process::geteuid().as_raw();
        if metadata.uid() != me {
            return Err(open(format!(
                "owned by user {} rather than by you (user {me})",
                metadata.uid()
            )));
        }
        let mode = metadata.mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(open(format!(
                "writable by its group or by everyone (mode {mode:o})"
            )));
        }
    }
    Ok(())
}
