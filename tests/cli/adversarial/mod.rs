//! The adversarial suite: the thirty attacks of the security checklist (cases 1-30) and its
//! ten fault scenarios, each a test named after its case, run against a real server the way
//! an attacker on the same machine would run them: a prompt-injected agent with a valid
//! session, another local process, a malicious upstream, a malicious plugin.
//!
//! Conventions (as the checklist states them): the *canary* is a unique credential value
//! for the test; "zero canary bytes" means neither the canary nor its base64, URL-encoded,
//! hex or JSON-escaped forms appear where the test looks (what the upstream received, what
//! the agent got back, the logs). A case that cannot apply here says why in one line, next
//! to the test that covers what can be covered.
//!
//! Files by section: `destination.rs` (cases 1-10), `paths.rs` (11-12), `framing.rs`
//! (13-19), `resources.rs` (20-22), `leakage.rs` (23-26), `isolation.rs` (27-28),
//! `plugins.rs` (29-30), `faults.rs` (the ten fault scenarios).

mod confined;
mod destination;
mod faults;
mod faulty_upstream;
mod framing;
mod isolation;
mod leakage;
mod paths;
mod plugins;
mod relay;
mod resources;

use base64::Engine as _;

/// A credential value no other test uses, and the forms it could come back in.
pub struct Canary {
    pub value: String,
}

impl Canary {
    pub fn new(label: &str) -> Canary {
        let random: [u8; 8] = rand_bytes();
        Canary {
            value: format!("sk_canary_{label}_{}", hex::encode(random)),
        }
    }

    /// Every spelling of the canary an upstream or a log could carry.
    pub fn forms(&self) -> Vec<String> {
        let raw = self.value.as_bytes();
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let mut forms = vec![
            self.value.clone(),
            hex::encode(raw),
            hex::encode_upper(raw),
            raw.iter().map(|b| format!("%{b:02X}")).collect(),
            serde_json::to_string(&self.value)
                .unwrap()
                .trim_matches('"')
                .to_owned(),
        ];
        forms.extend(engines.iter().map(|engine| engine.encode(raw)));
        forms
    }

    /// Panics, naming the form and `what`, if any spelling of the canary is in `bytes`.
    pub fn assert_absent(&self, bytes: &[u8], what: &str) {
        let text = String::from_utf8_lossy(bytes);
        for form in self.forms() {
            assert!(
                !text.contains(&form),
                "the canary ({form}) reached {what}: {text}"
            );
        }
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        let bytes = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    out
}
