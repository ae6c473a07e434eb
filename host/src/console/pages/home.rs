//! The home page (`/`): the vaults the person can see, each with its counts of services,
//! credentials and pending proposals, the vaults an owner may join, a form to create one,
//! and the agents and people at a glance. Also the two vault-wide actions started here:
//! creating a vault (`POST /vaults`) and an owner joining one (`POST /vaults/{name}/join`).

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::vault::VaultCounts;
use super::{Chrome, encode_component};
use crate::console::Console;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    Some(match (&console.request.method, segments) {
        (&Method::GET, [""]) => home(console).await,
        (&Method::POST, ["vaults"]) => create_vault(console).await,
        (&Method::POST, ["vaults", name, "join"]) => join(console, name).await,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct VaultList {
    vaults: Vec<ListedVault>,
}

#[derive(Deserialize)]
struct ListedVault {
    name: String,
    role: Option<String>,
}

#[derive(Deserialize)]
struct AgentList {
    agents: Vec<Agent>,
}

#[derive(Deserialize)]
struct Agent {
    name: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct UserList {
    users: Vec<User>,
}

#[derive(Deserialize)]
struct User {
    email: String,
    role: String,
}

/// A vault on the home page.
struct VaultCard {
    name: String,
    role: String,
    counts: VaultCounts,
}

#[derive(askama::Template)]
#[template(path = "console/home.html")]
struct Home {
    chrome: Chrome,
    vaults: Vec<VaultCard>,
    /// Vaults an owner sees but has not joined.
    joinable: Vec<String>,
    agents: Vec<Agent>,
    users: Vec<User>,
}

async fn home(console: &Console<'_>) -> Response<Full<Bytes>> {
    let listed = match console.get::<VaultList>("/v1/vaults").await {
        Ok(listed) => listed.vaults,
        Err(error) => return console.refused(error),
    };
    let mut vaults = Vec::new();
    let mut joinable = Vec::new();
    for vault in listed {
        let Some(role) = vault.role else {
            joinable.push(vault.name);
            continue;
        };
        let counts = console.vault_counts(&encode_component(&vault.name)).await;
        vaults.push(VaultCard {
            name: vault.name,
            role,
            counts,
        });
    }
    let agents = console
        .get::<AgentList>("/v1/agents")
        .await
        .map(|a| a.agents)
        .unwrap_or_default();
    let users = console
        .get::<UserList>("/v1/users")
        .await
        .map(|u| u.users)
        .unwrap_or_default();
    console.page(&Home {
        chrome: console.chrome("Vaults", "vaults"),
        vaults,
        joinable,
        agents,
        users,
    })
}

async fn create_vault(console: &Console<'_>) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let name = fields
        .get("name")
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    match console
        .send(Method::POST, "/v1/vaults", &json!({ "name": name }))
        .await
    {
        Ok(_) => console.done(
            &format!("/vaults/{}", encode_component(&name)),
            &format!("Vault {name} created; you are its admin."),
        ),
        Err(error) => console.refused(error),
    }
}

async fn join(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    if let Err(refused) = console.form() {
        return refused;
    }
    let path = format!("/v1/vaults/{}/join", encode_component(name));
    match console.send(Method::POST, &path, &json!({})).await {
        Ok(_) => console.done(
            &format!("/vaults/{}", encode_component(name)),
            &format!("You joined {name} as its admin."),
        ),
        Err(error) => console.refused(error),
    }
}
