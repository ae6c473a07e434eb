//! What a reviewer reads about a proposal, wherever they decide on it: the approval page
//! (`api/approval_page/html.rs`) and the console's proposal page
//! (`console/pages/vault_proposals.rs`). Plain text; each page escapes it as it places it.

/// The opening sentence: who asks (`proposed_by`, as `api::proposals::proposed_by` words it).
pub fn asks_for_access(proposed_by: &str) -> String {
    let mut chars = proposed_by.chars();
    let who: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    format!("{who} asks for access.")
}

/// The heading over the message the agent wrote for the reviewer.
pub const MESSAGE_TO_YOU: &str = "Message to you";
/// The heading over the agent's reason.
pub const WHY: &str = "Why";
/// When the proposal's changes no longer apply to the vault.
pub const NO_LONGER_FITS: &str = "This proposal no longer fits the vault (a service it changes \
     is gone, or a plugin changed); reject it.";
/// Above the inputs for the credential values the approver types.
pub const VALUES_GO_TO_THE_VAULT: &str = "Type each value here: it goes straight into the \
     vault, encrypted, and the agent never sees it.";
/// The label of the reject form's reason.
pub const REASON_LABEL: &str = "Reason (the agent can read it)";
