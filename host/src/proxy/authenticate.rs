//! Authenticate: which token, and which vault it acts in.
//!
//! A vault-scoped session acts in its own vault (an `X-Vault` naming another is refused); an
//! agent token names its vault with `X-Vault` and needs a grant there; a user's login session
//! cannot proxy (it would act with the user's full rights: mint a vault token instead).
//!
//! A client whose tokens keep failing is refused for a while (429) before its next token is
//! even looked up: the AUTH tier's attempts, counted here for failures only. Loopback
//! clients, the agents on the server's own host, are not counted.

use std::net::IpAddr;

use http::HeaderMap;
use zeroize::Zeroizing;

use super::{ProxyError, ProxyState};
use crate::auth::{Actor, Session, bearer};
use crate::store::{Agent, Vault};

/// The caller of a proxy request.
#[derive(Debug)]
pub struct Caller {
    pub actor: Actor,
    pub vault: Vault,
    /// The rate-limit scope: one per token holder and vault.
    pub scope: String,
    /// The token itself, so that no copy of it the agent sends along (a cookie, a query
    /// parameter) goes upstream.
    pub token: Zeroizing<String>,
}

/// The caller of the explicit ingress: `Authorization: Bearer` and, for agent tokens,
/// `X-Vault`.
pub async fn caller(
    state: &ProxyState,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Caller, ProxyError> {
    require_initialized(state).await?;
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = bearer(header).map_err(|error| ProxyError::Unauthorized(error.to_string()))?;
    let named_vault = headers
        .get("x-vault")
        .map(|value| value.to_str().map(str::trim).unwrap_or_default().to_owned())
        .filter(|name| !name.is_empty());
    token_caller(state, token, named_vault, false, client).await
}

/// The caller behind `token` acting in `named_vault`. A vault session acts in its own vault;
/// an agent token in the vault named, or, if `infer_vault`, in its only vault.
pub async fn token_caller(
    state: &ProxyState,
    token: &str,
    named_vault: Option<String>,
    infer_vault: bool,
    client: IpAddr,
) -> Result<Caller, ProxyError> {
    require_initialized(state).await?;
    let session = session(state, token, client).await?;
    let (vault, scope) = match &session.actor {
        Actor::Scoped { vault_id, .. } => {
            let vault = vault_by_id(state, vault_id).await?;
            if named_vault.as_ref().is_some_and(|name| *name != vault.name) {
                return Err(ProxyError::Forbidden(format!(
                    "This token is scoped to vault \"{}\"",
                    vault.name
                )));
            }
            let scope = format!("session:{}:{}", &session.token_hash[..16], vault.id);
            (vault, scope)
        }
        Actor::Agent(agent) => {
            let vault = agent_vault(state, agent, named_vault, infer_vault).await?;
            let scope = format!("agent:{}:{}", agent.id, vault.id);
            (vault, scope)
        }
        Actor::User(_) => return Err(ProxyError::Forbidden(
            "Session requires vault scope: use a vault token (agent-vault vault token) or an agent token with X-Vault".into(),
        )),
    };
    Ok(Caller {
        actor: session.actor,
        vault,
        scope,
        token: Zeroizing::new(token.to_owned()),
    })
}

/// The session behind `token`. A client address (not loopback) whose tokens kept failing
/// waits first, and a refused token counts against it.
async fn session(state: &ProxyState, token: &str, client: IpAddr) -> Result<Session, ProxyError> {
    let counted = !client.to_canonical().is_loopback();
    if counted {
        state.auth_failures.check(client).map_err(|limited| {
            crate::metrics::metrics().rate_limited("auth_failures");
            ProxyError::RateLimited(limited)
        })?;
    }
    match state.cache.session(token).await {
        Ok(session) => Ok(session),
        Err(crate::auth::AuthError::Store(error)) => Err(ProxyError::Internal(error)),
        Err(refused) => {
            if counted {
                // Counted, not refused: this answer is the 401 the token deserves.
                let _ = state.auth_failures.attempt(client);
            }
            Err(ProxyError::Unauthorized(refused.to_string()))
        }
    }
}

/// The vault an agent token acts in: the one named, or, if `infer_vault`, its only one; the
/// agent must hold a grant on it.
async fn agent_vault(
    state: &ProxyState,
    agent: &Agent,
    named_vault: Option<String>,
    infer_vault: bool,
) -> Result<Vault, ProxyError> {
    let named_vault = match named_vault {
        None if infer_vault => only_vault(state, agent).await?,
        named => named,
    };
    let name = named_vault.ok_or_else(|| {
        ProxyError::BadRequest(if infer_vault {
            "This agent has several vaults: name one, as in \
             HTTPS_PROXY=http://{token}:{vault}@{proxy address}"
                .into()
        } else {
            "Agent tokens require an X-Vault header naming the vault to use".into()
        })
    })?;
    let vault = state
        .cache
        .vault_by_name(&name)
        .await
        .map_err(ProxyError::Internal)?
        .ok_or_else(|| ProxyError::NotFound(format!("Vault not found: {name}")))?;
    let actor_id = crate::store::ActorId::agent(&agent.id);
    let grants = state
        .cache
        .grants(&actor_id)
        .await
        .map_err(ProxyError::Internal)?;
    if !grants.iter().any(|grant| grant.vault_id == vault.id) {
        return Err(ProxyError::Forbidden(format!(
            "Agent \"{}\" has no access to vault \"{name}\"",
            agent.name
        )));
    }
    Ok(vault)
}

/// 503 until the instance has an owner: before that no token can be valid, and saying so
/// beats a 401.
async fn require_initialized(state: &ProxyState) -> Result<(), ProxyError> {
    let initialized = state
        .owner_known
        .check(&state.db)
        .await
        .map_err(ProxyError::Internal)?;
    if initialized {
        Ok(())
    } else {
        Err(ProxyError::NotInitialized)
    }
}

/// The name of an agent's vault when it has exactly one.
async fn only_vault(
    state: &ProxyState,
    agent: &crate::store::Agent,
) -> Result<Option<String>, ProxyError> {
    let grants = state
        .cache
        .grants(&crate::store::ActorId::agent(&agent.id))
        .await
        .map_err(ProxyError::Internal)?;
    match grants.as_slice() {
        [grant] => Ok(Some(vault_by_id(state, &grant.vault_id).await?.name)),
        _ => Ok(None),
    }
}

async fn vault_by_id(state: &ProxyState, id: &str) -> Result<Vault, ProxyError> {
    state
        .cache
        .vault_by_id(id)
        .await
        .map_err(ProxyError::Internal)?
        .ok_or_else(|| ProxyError::NotFound("The token's vault no longer exists".into()))
}
