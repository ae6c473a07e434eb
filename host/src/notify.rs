//! Telling people about proposals: a line in the server's log whenever one is made, approved
//! or rejected, and, when the vault has a `proposal_webhook_url`, a JSON POST to it.
//!
//! The webhook is for chat integrations: the body's `text` is one sentence (with the approval
//! link when a proposal is made) that Slack, Mattermost and Google Chat show as it is; the
//! other fields are for programs. It goes out through the proxy's own upstream client (its
//! trust anchors, `--resolve` pins and network guard), after the response, best effort: a
//! failure is logged with the webhook's host only, since webhook URLs often carry a secret in
//! their path.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

use crate::request::RequestHead;
use crate::store::{Db, Vault};
use crate::upstream::Upstream;

/// The vault setting that holds the webhook's URL.
pub const WEBHOOK_SETTING: &str = "proposal_webhook_url";

/// How long a webhook may take before it is given up.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to a proposal.
#[derive(Debug, Clone)]
pub enum Event {
    Created { approval_url: String },
    Applied { by: String },
    Rejected { by: String, reason: Option<String> },
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::Created { .. } => "proposal.created",
            Event::Applied { .. } => "proposal.applied",
            Event::Rejected { .. } => "proposal.rejected",
        }
    }
}

/// Sends proposal webhooks; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// `None`: webhooks are not sent (a server always has a client; bare API states in tests
    /// may not).
    client: Option<Upstream>,
}

impl Notifier {
    pub fn new(client: Option<Upstream>) -> Notifier {
        Notifier { client }
    }

    /// Log `event` of proposal `id` in `vault` and, if the vault has a webhook, send it
    /// from a task of its own.
    pub fn proposal(&self, db: &Db, vault: &Vault, id: i64, message: &str, event: Event) {
        match &event {
            Event::Created { .. } => tracing::info!(
                vault = %vault.name,
                proposal = id,
                "proposal pending: review it with `agent-vault vault proposal show {id} --vault {}`",
                vault.name
            ),
            Event::Applied { by } => {
                tracing::info!(vault = %vault.name, proposal = id, by = %by, "proposal applied")
            }
            Event::Rejected { by, .. } => {
                tracing::info!(vault = %vault.name, proposal = id, by = %by, "proposal rejected")
            }
        }
        let Some(client) = self.client.clone() else {
            return;
        };
        let (db, vault_id) = (db.clone(), vault.id.clone());
        let body = payload(&vault.name, id, message, &event);
        tokio::spawn(async move {
            let url = match db
                .run(move |store| store.vault_setting(&vault_id, WEBHOOK_SETTING))
                .await
            {
                Ok(Some(url)) => url,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!("cannot read the proposal webhook setting: {error}");
                    return;
                }
            };
            send(&client, &url, body).await;
        });
    }
}

/// The webhook's JSON body.
fn payload(vault: &str, id: i64, message: &str, event: &Event) -> Value {
    let why = if message.is_empty() {
        String::new()
    } else {
        format!(": \"{message}\"")
    };
    let (text, status) = match event {
        Event::Created { approval_url } => (
            format!("An agent made proposal {id} in vault {vault}{why}. Review it: {approval_url}"),
            "pending",
        ),
        Event::Applied { by } => (
            format!("{by} approved proposal {id} in vault {vault}."),
            "applied",
        ),
        Event::Rejected { by, reason } => (
            match reason {
                Some(reason) => {
                    format!("{by} rejected proposal {id} in vault {vault}: \"{reason}\".")
                }
                None => format!("{by} rejected proposal {id} in vault {vault}."),
            },
            "rejected",
        ),
    };
    let mut body = json!({
        "event": event.name(),
        "text": text,
        "vault": vault,
        "proposal": { "id": id, "status": status, "message": message },
    });
    if let Event::Created { approval_url } = event {
        body["proposal"]["approval_url"] = json!(approval_url);
    }
    body
}

async fn send(client: &Upstream, url: &str, body: Value) {
    let mut head = match RequestHead::from_url(Method::POST, url) {
        Ok(head) => head,
        Err(_) => {
            tracing::warn!("the proposal webhook URL is not valid; fix the vault setting");
            return;
        }
    };
    let host = head.host.clone();
    head.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = Bytes::from(body.to_string());
    let body = Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync();
    let outcome = tokio::time::timeout(WEBHOOK_TIMEOUT, client.send(head, body)).await;
    match outcome {
        Ok(Ok(response)) if response.status().is_success() => {}
        Ok(Ok(response)) => tracing::warn!(
            webhook_host = %host,
            status = response.status().as_u16(),
            "the proposal webhook answered with an error"
        ),
        Ok(Err(error)) => tracing::warn!(
            webhook_host = %host,
            code = error.code(),
            "the proposal webhook could not be reached"
        ),
        Err(_) => tracing::warn!(webhook_host = %host, "the proposal webhook timed out"),
    }
}

/// Check a webhook URL a vault admin sets: https (http only in development mode), with a
/// host.
pub fn check_webhook_url(url: &str, dev_mode: bool) -> Result<(), String> {
    let head = RequestHead::from_url(Method::POST, url).map_err(|error| error.to_string())?;
    let https = url.starts_with("https://");
    if !https && !dev_mode {
        return Err("proposal_webhook_url must be an https:// URL".into());
    }
    if head.host.is_empty() {
        return Err("proposal_webhook_url needs a host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_says_what_happened_in_one_sentence() {
        let created = payload(
            "default",
            3,
            "need stripe",
            &Event::Created {
                approval_url: "https://vault.example/approve/3?token=t".into(),
            },
        );
        assert_eq!(created["event"], "proposal.created");
        assert_eq!(
            created["text"],
            "An agent made proposal 3 in vault default: \"need stripe\". Review it: https://vault.example/approve/3?token=t"
        );
        assert_eq!(created["proposal"]["status"], "pending");
        let rejected = payload(
            "default",
            3,
            "",
            &Event::Rejected {
                by: "ann@example.com".into(),
                reason: Some("no".into()),
            },
        );
        assert_eq!(
            rejected["text"],
            "ann@example.com rejected proposal 3 in vault default: \"no\"."
        );
        assert!(rejected["proposal"].get("approval_url").is_none());
    }

    #[test]
    fn webhook_urls_are_https_unless_in_development() {
        assert!(check_webhook_url("https://hooks.slack.com/services/T/B/x", false).is_ok());
        assert_eq!(
            check_webhook_url("http://hooks.example/x", false).unwrap_err(),
            "proposal_webhook_url must be an https:// URL"
        );
        assert!(check_webhook_url("http://hooks.example/x", true).is_ok());
        assert!(check_webhook_url("hooks.example", false).is_err());
    }
}
