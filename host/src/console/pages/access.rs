//! A vault's "Agents and people" tab (`/vaults/{name}/access`): who may use the vault and
//! with which role, from `GET /v1/vaults/{name}/users` and `/agents`; and, for the vault's
//! admins, the forms that add a person or an agent, change a role and remove one (each a
//! call to the same `/v1/vaults/{name}/...` route the CLI uses, which decides who may).

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::vault::VaultFrame;
use super::{Chrome, Refusal, encode_component, field, picked, status_of};
use crate::api::ApiError;
use crate::console::Console;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    let post = console.request.method == Method::POST;
    Some(match segments {
        ["vaults", name, "access"] if !post => page(console, name, Draft::default()).await,
        ["vaults", name, "access", "users"] if post => add(console, name, Kind::User).await,
        ["vaults", name, "access", "agents"] if post => add(console, name, Kind::Agent).await,
        ["vaults", name, "access", kind, who, "role"] if post => {
            let kind = Kind::of(kind)?;
            set_role(console, name, kind, who).await
        }
        ["vaults", name, "access", kind, who, "remove"] if post => {
            let kind = Kind::of(kind)?;
            remove(console, name, kind, who).await
        }
        _ => return None,
    })
}

/// Whether a form is about a person (by email) or an agent (by name).
#[derive(Clone, Copy)]
enum Kind {
    User,
    Agent,
}

impl Kind {
    fn of(segment: &str) -> Option<Kind> {
        match segment {
            "users" => Some(Kind::User),
            "agents" => Some(Kind::Agent),
            _ => None,
        }
    }

    /// The API's collection under `/v1/vaults/{name}/`.
    fn collection(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Agent => "agents",
        }
    }
}

#[derive(Deserialize)]
struct Users {
    users: Vec<VaultUser>,
}

#[derive(Deserialize)]
struct VaultUser {
    email: String,
    role: String,
}

#[derive(Deserialize)]
struct Agents {
    agents: Vec<VaultAgent>,
}

#[derive(Deserialize)]
struct VaultAgent {
    name: String,
    vault_role: String,
    #[serde(default)]
    status: String,
}

/// What a refused "add" form held, shown again with what went wrong.
#[derive(Default)]
struct Draft {
    error: Option<Refusal>,
    user_email: String,
    user_role: String,
    agent_name: String,
    agent_role: String,
}

#[derive(askama::Template)]
#[template(path = "console/access.html")]
struct Access {
    chrome: Chrome,
    vault: VaultFrame,
    users: Vec<VaultUser>,
    agents: Vec<VaultAgent>,
    /// Whether the person is the vault's admin: the forms are shown (the API decides anyway).
    admin: bool,
    draft: Draft,
}

impl Access {
    fn segment(&self, text: &str) -> String {
        encode_component(text)
    }
}

async fn page(console: &Console<'_>, name: &str, draft: Draft) -> Response<Full<Bytes>> {
    let vault = match console.vault_frame(name, "/access").await {
        Ok(vault) => vault,
        Err(page) => return page,
    };
    let listed = async {
        let users = console
            .get::<Users>(&format!("/v1/vaults/{}/users", vault.segment))
            .await?;
        let agents = console
            .get::<Agents>(&format!("/v1/vaults/{}/agents", vault.segment))
            .await?;
        Ok::<_, ApiError>((users.users, agents.agents))
    };
    let (users, agents) = match listed.await {
        Ok(listed) => listed,
        Err(error) => return console.refused(error),
    };
    let status = status_of(draft.error.as_ref());
    console.page_with_status(
        status,
        &Access {
            chrome: console.chrome(format!("{} · agents and people", vault.name), "vaults"),
            admin: vault.role.as_deref() == Some("admin"),
            vault,
            users,
            agents,
            draft,
        },
    )
}

async fn add(console: &Console<'_>, name: &str, kind: Kind) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let mut draft = Draft::default();
    let (body, who) = match kind {
        Kind::User => {
            draft.user_email = field(&fields, "email");
            draft.user_role = field(&fields, "role");
            (
                json!({ "email": draft.user_email, "role": picked(&draft.user_role) }),
                draft.user_email.clone(),
            )
        }
        Kind::Agent => {
            draft.agent_name = field(&fields, "name");
            draft.agent_role = field(&fields, "role");
            (
                json!({ "name": draft.agent_name, "role": picked(&draft.agent_role) }),
                draft.agent_name.clone(),
            )
        }
    };
    let path = format!(
        "/v1/vaults/{}/{}",
        encode_component(name),
        kind.collection()
    );
    match console.send(Method::POST, &path, &body).await {
        Ok(_) => console.done(
            &format!("/vaults/{}/access", encode_component(name)),
            &format!("{who} now has access to {name}."),
        ),
        // Shown beside what was typed (a vault this person cannot see stays a 404: the page
        // itself is refused then).
        Err(error) => {
            draft.error = Some(error.into());
            page(console, name, draft).await
        }
    }
}

async fn set_role(
    console: &Console<'_>,
    name: &str,
    kind: Kind,
    who: &str,
) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let path = format!(
        "/v1/vaults/{}/{}/{}/role",
        encode_component(name),
        kind.collection(),
        encode_component(who)
    );
    let role = field(&fields, "role");
    console
        .act(
            Method::POST,
            &path,
            &json!({ "role": picked(&role) }),
            &format!("/vaults/{}/access", encode_component(name)),
            &format!("{who} is now {role} of {name}."),
        )
        .await
}

async fn remove(console: &Console<'_>, name: &str, kind: Kind, who: &str) -> Response<Full<Bytes>> {
    let path = format!(
        "/v1/vaults/{}/{}/{}",
        encode_component(name),
        kind.collection(),
        encode_component(who)
    );
    console
        .act(
            Method::DELETE,
            &path,
            &json!({}),
            &format!("/vaults/{}/access", encode_component(name)),
            &format!("{who} no longer has access to {name}."),
        )
        .await
}
