//! What agent-vault tells agents: the agent guide and the invite prompt.
//!
//! The guide is one markdown text, `docs/agent-guide.md`, built into the binary. The server
//! serves it at `GET /v1/skills/cli`, hands it to an agent as the `instructions` of a redeemed
//! invite, and the README links to the file itself, so the three cannot drift apart. The
//! invite prompt is what an operator pastes into an agent's chat: what agent-vault is and the
//! one request that connects the agent.

/// The guide as written, with `{{AGENT_VAULT_ADDR}}` where the server's address goes.
const GUIDE: &str = include_str!("../../docs/agent-guide.md");

const ADDRESS_SLOT: &str = "{{AGENT_VAULT_ADDR}}";

/// The agent guide for the server at `address` (e.g. `http://127.0.0.1:14321`).
pub fn agent_guide(address: &str) -> String {
    GUIDE.replace(ADDRESS_SLOT, address)
}

/// The prompt that hands an agent its invite: `redeem_url` is the one-time link, `address`
/// the server's, `expires_at` when the link stops working (RFC 3339).
pub fn invite_prompt(redeem_url: &str, address: &str, expires_at: &str) -> String {
    format!(
        "You are invited to use agent-vault, a proxy that holds API keys for you: you send API \
requests through it without credentials and it attaches them, so no key ever passes through \
this conversation.

To accept, make this one HTTP request now. The link works once, until {expires_at}:

    curl -s -X POST {redeem_url}

The JSON answer holds your own token, `av_agent_token`. Keep it private, as AGENT_VAULT_TOKEN, \
and send it only to {address} (AGENT_VAULT_ADDR). `vaults` lists the vaults you may use (send \
one in the X-Vault header), and `instructions` explains how to call APIs through the proxy: \
read it before your first call.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guide_names_the_address_and_covers_the_protocol() {
        let guide = agent_guide("http://vault.internal:14321");
        assert!(!guide.contains("{{"), "an unfilled slot: {guide}");
        for needle in [
            "AGENT_VAULT_ADDR=http://vault.internal:14321",
            "AGENT_VAULT_TOKEN",
            "X-Vault",
            "/discover",
            "/proxy/api.github.com/user/repos",
            "X-Agent-Vault-Proxy-Error: true",
            "proposal_hint",
            "Retry-After",
            "POST \"$AGENT_VAULT_ADDR/v1/proposals\"",
            "approval_url",
            "HTTPS_PROXY",
            "/v1/mitm/ca.pem",
        ] {
            assert!(guide.contains(needle), "the guide lacks {needle:?}");
        }
    }

    #[test]
    fn the_prompt_carries_the_link_once_and_the_address() {
        let prompt = invite_prompt(
            "http://127.0.0.1:14321/v1/invites/av_inv_abc/redeem",
            "http://127.0.0.1:14321",
            "2026-11-27T10:00:00Z",
        );
        assert_eq!(prompt.matches("/v1/invites/av_inv_abc/redeem").count(), 1);
        assert!(prompt.contains("curl -s -X POST http://127.0.0.1:14321/v1/invites/"));
        assert!(prompt.contains("until 2026-11-27T10:00:00Z"));
        assert!(prompt.contains("send it only to http://127.0.0.1:14321"));
    }
}
