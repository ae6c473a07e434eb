//! User passwords: Argon2id (64 MiB, 3 passes, 4 lanes) in PHC strings. Verification of an
//! unknown user runs the same KDF against a dummy hash, so timing does not tell which emails
//! have accounts. Hashing takes a fraction of a second; call it off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::vault::crypto::{CryptoError, KdfParams, random};

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

fn hasher(params: KdfParams) -> Argon2<'static> {
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password for storage.
pub fn hash(password: &str, params: KdfParams) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    random(&mut salt)?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|error| CryptoError::Kdf(error.to_string()))?;
    hasher(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| CryptoError::Kdf(error.to_string()))
}

/// Whether `password` matches `stored` (a PHC string). With `None`, burn the same time and
/// return false.
pub fn verify(password: &str, stored: Option<&str>, params: KdfParams) -> bool {
    match stored.and_then(|stored| PasswordHash::new(stored).ok()) {
        Some(parsed) => hasher(params)
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        None => {
            let _ = hash(password, params);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let stored = hash("correct horse battery", FAST).unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains("correct horse"));
        assert!(verify("correct horse battery", Some(&stored), FAST));
        assert!(!verify("correct horse battery!", Some(&stored), FAST));
        assert!(!verify("anything", None, FAST));
    }
}
