//! Bearer tokens: 256 random bits, hex, behind a prefix that says what the token is
//! (`av_sess_` sessions, `av_agt_` agents, `av_uinv_` user invites, `av_inv_` agent invites,
//! `av_dev_` device tokens, which are not bearer tokens: `devices.rs`). The store keeps only
//! the SHA-256 of a token; a token is shown once, when it is minted.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::vault::crypto::{CryptoError, random};

pub const SESSION_PREFIX: &str = "av_sess_";
pub const AGENT_PREFIX: &str = "av_agt_";
pub const INVITE_PREFIX: &str = "av_uinv_";
pub const AGENT_INVITE_PREFIX: &str = "av_inv_";
pub const DEVICE_PREFIX: &str = "av_dev_";

/// A freshly minted token: the secret to hand out once, and what the store keeps.
pub struct MintedToken {
    /// The token itself; give it to its holder and forget it.
    pub token: Zeroizing<String>,
    /// Lower-case hex SHA-256 of the token.
    pub hash: String,
    /// A non-secret id for listing and revoking (80 random bits).
    pub public_id: String,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("public_id", &self.public_id)
            .finish_non_exhaustive()
    }
}

/// Mint a token with `prefix`.
pub fn mint(prefix: &str) -> Result<MintedToken, CryptoError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    random(secret.as_mut_slice())?;
    let token = Zeroizing::new(format!("{prefix}{}", hex::encode(secret.as_slice())));
    let mut public = [0u8; 10];
    random(&mut public)?;
    Ok(MintedToken {
        hash: hash(&token),
        token,
        public_id: hex::encode(public),
    })
}

/// The SHA-256 under which the store keeps `token`.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token`'s hash is `stored_hash`, compared in constant time.
pub fn matches(token: &str, stored_hash: &str) -> bool {
    hash(token).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// 32 random lower-case hex characters, for row ids.
pub fn random_id() -> Result<String, CryptoError> {
    let mut bytes = [0u8; 16];
    random(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_prefix_and_256_bits() {
        let minted = mint(AGENT_PREFIX).unwrap();
        let secret = minted.token.strip_prefix(AGENT_PREFIX).unwrap();
        assert_eq!(secret.len(), 64);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(matches(&minted.token, &minted.hash));
        assert!(!matches("av_agt_other", &minted.hash));
        assert_ne!(mint(AGENT_PREFIX).unwrap().hash, minted.hash);
        assert!(!format!("{minted:?}").contains(secret));
    }
}
