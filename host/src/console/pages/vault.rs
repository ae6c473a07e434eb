//! What every page of one vault shares (`/vaults/{name}/...`): the vault's heading and its
//! tabs, and the person's role there, read from `GET /v1/vaults` so that a vault the API
//! does not list for this person is a 404 here too.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;

use super::encode_component;
use crate::console::Console;

/// The tabs of a vault's pages: the path under `/vaults/{name}` and the label.
pub(crate) const TABS: [(&str, &str); 9] = [
    ("", "Overview"),
    ("/credentials", "Credentials"),
    ("/services", "Services"),
    ("/proposals", "Proposals"),
    ("/logs", "Request log"),
    ("/access", "Agents and people"),
    ("/tokens", "Tokens"),
    ("/invites", "Agent invites"),
    ("/settings", "Settings"),
];

/// The vault a page is about, for `vault_tabs.html`.
pub(crate) struct VaultFrame {
    pub name: String,
    /// The name as a path segment, for links.
    pub segment: String,
    /// The person's role in the vault (`proxy`, `member`, `admin`); none for an owner who
    /// sees it without being in it.
    pub role: Option<String>,
    /// Which tab is open: one of [`TABS`]' paths.
    pub tab: &'static str,
}

impl VaultFrame {
    pub fn tabs(&self) -> &'static [(&'static str, &'static str)] {
        &TABS
    }
}

#[derive(Deserialize)]
struct VaultList {
    vaults: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    name: String,
    role: Option<String>,
}

impl Console<'_> {
    /// The vault `name` with the tab `tab` open, or the 404 page if this person cannot see it.
    pub async fn vault_frame(
        &self,
        name: &str,
        tab: &'static str,
    ) -> Result<VaultFrame, Response<Full<Bytes>>> {
        let listed = self
            .get::<VaultList>("/v1/vaults")
            .await
            .map_err(|error| self.refused(error))?;
        let vault = listed
            .vaults
            .into_iter()
            .find(|vault| vault.name == name)
            .ok_or_else(|| {
                self.problem(StatusCode::NOT_FOUND, &format!("Vault not found: {name}"))
            })?;
        Ok(VaultFrame {
            segment: encode_component(&vault.name),
            name: vault.name,
            role: vault.role,
            tab,
        })
    }
}

/// What a vault holds, as its cards on the home page and its overview count it.
pub(crate) struct VaultCounts {
    pub services: usize,
    pub credentials: usize,
    /// None where the person may not review proposals.
    pub pending: Option<usize>,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct Services {
    services: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Proposals {
    proposals: Vec<serde_json::Value>,
}

impl Console<'_> {
    /// The counts of the vault whose name, as a path segment, is `segment`: what the API
    /// shows this person (a list the API refuses counts as empty).
    pub async fn vault_counts(&self, segment: &str) -> VaultCounts {
        let services = self
            .get::<Services>(&format!("/v1/vaults/{segment}/services"))
            .await
            .map(|s| s.services.len())
            .unwrap_or(0);
        let credentials = self
            .get::<Keys>(&format!("/v1/credentials?vault={segment}"))
            .await
            .map(|k| k.keys.len())
            .unwrap_or(0);
        let pending = self
            .get::<Proposals>(&format!(
                "/v1/admin/proposals?vault={segment}&status=pending"
            ))
            .await
            .ok()
            .map(|p| p.proposals.len());
        VaultCounts {
            services,
            credentials,
            pending,
        }
    }
}
