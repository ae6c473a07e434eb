//! The agents page (`/agents`): every agent the person may see (`GET /v1/agents`: owners
//! all, members the ones they made or share a vault with), with their status, instance role
//! and vaults; and the forms that create one, rotate its token, revoke it, rename it, change
//! its instance role (owners) and delete it. A new or rotated token is shown once, in the
//! answer to the form that made it; the list never shows a token.

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::{Chrome, Refusal, encode_component, field, picked, status_of};
use crate::console::Console;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    let post = console.request.method == Method::POST;
    Some(match segments {
        ["agents"] if !post => page(console, Shown::default()).await,
        ["agents"] if post => create(console).await,
        ["agents", name, "rotate"] if post => rotate(console, name).await,
        ["agents", name, "revoke"] if post => {
            let path = format!("/v1/agents/{}", encode_component(name));
            act(console, Method::DELETE, &path, json!({})).await
        }
        ["agents", name, "delete"] if post => {
            let path = format!("/v1/agents/{}/delete", encode_component(name));
            act(console, Method::POST, &path, json!({})).await
        }
        ["agents", name, "rename"] if post => rename(console, name).await,
        ["agents", name, "role"] if post => set_role(console, name).await,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Agents {
    agents: Vec<Agent>,
}

#[derive(Deserialize)]
struct Agent {
    name: String,
    role: String,
    status: String,
    #[serde(default)]
    vaults: Vec<Assigned>,
    #[serde(deserialize_with = "super::moment")]
    created_at: String,
}

#[derive(Deserialize)]
struct Assigned {
    vault_name: String,
    vault_role: String,
}

/// A token just made for an agent, shown once.
struct NewToken {
    agent: String,
    token: String,
    /// Whether it replaced the agent's old token (rotate) rather than came with a new agent.
    rotated: bool,
}

/// What the page shows besides the list: a new token, or why the create form was refused
/// (with the form as typed).
#[derive(Default)]
struct Shown {
    token: Option<NewToken>,
    error: Option<Refusal>,
    name: String,
    role: String,
}

#[derive(askama::Template)]
#[template(path = "console/agents.html")]
struct AgentsPage {
    chrome: Chrome,
    agents: Vec<Agent>,
    shown: Shown,
}

impl AgentsPage {
    fn segment(&self, text: &str) -> String {
        encode_component(text)
    }
}

async fn page(console: &Console<'_>, shown: Shown) -> Response<Full<Bytes>> {
    let agents = match console.get::<Agents>("/v1/agents").await {
        Ok(listed) => listed.agents,
        Err(error) => return console.refused(error),
    };
    let status = status_of(shown.error.as_ref());
    console.page_with_status(
        status,
        &AgentsPage {
            chrome: console.chrome("Agents", "agents"),
            agents,
            shown,
        },
    )
}

async fn create(console: &Console<'_>) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let mut shown = Shown {
        name: field(&fields, "name"),
        role: field(&fields, "role"),
        ..Shown::default()
    };
    let body = json!({ "name": shown.name, "role": picked(&shown.role) });
    match console.send(Method::POST, "/v1/agents", &body).await {
        Ok(answer) => {
            let token = NewToken {
                agent: shown.name.clone(),
                token: answer["av_agent_token"].as_str().unwrap_or_default().into(),
                rotated: false,
            };
            page(
                console,
                Shown {
                    token: Some(token),
                    ..Shown::default()
                },
            )
            .await
        }
        Err(error) if error.status.is_client_error() => {
            shown.error = Some(error.into());
            page(console, shown).await
        }
        Err(error) => console.refused(error),
    }
}

async fn rotate(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    if let Err(refused) = console.form() {
        return refused;
    }
    let path = format!("/v1/agents/{}/rotate", encode_component(name));
    match console.send(Method::POST, &path, &json!({})).await {
        Ok(answer) => {
            let token = NewToken {
                agent: name.to_owned(),
                token: answer["av_agent_token"].as_str().unwrap_or_default().into(),
                rotated: true,
            };
            page(
                console,
                Shown {
                    token: Some(token),
                    ..Shown::default()
                },
            )
            .await
        }
        Err(error) => console.refused(error),
    }
}

async fn rename(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let path = format!("/v1/agents/{}/rename", encode_component(name));
    act(
        console,
        Method::POST,
        &path,
        json!({ "name": field(&fields, "name") }),
    )
    .await
}

async fn set_role(console: &Console<'_>, name: &str) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let role = field(&fields, "role");
    let path = format!("/v1/agents/{}/role", encode_component(name));
    match console
        .send(Method::POST, &path, &json!({ "role": picked(&role) }))
        .await
    {
        Ok(_) => console.done("/agents", &format!("{name} now has the {role} role.")),
        Err(error) => console.refused(error),
    }
}

/// One write on an agent, then back to the list with the API's message.
async fn act(
    console: &Console<'_>,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> Response<Full<Bytes>> {
    console.act(method, path, &body, "/agents", "").await
}
