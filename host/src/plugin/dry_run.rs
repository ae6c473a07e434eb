//! A dry run: what a plugin does to a request someone describes, with credential values they
//! type, shown with those values masked. One function for `agent-vault plugin test` and
//! `POST /v1/plugins/test` (the console's plugins page), so both show the same thing.
//!
//! The run is the request path's decide and fill stages ([`Plugin::authorize_masked`]) and
//! nothing else: no service, no vault credentials, no upstream. The values are the caller's
//! (made up, for the API: it never opens a vault's). Masking is done twice: the fill stage
//! records how each credential-bearing value looks with `****` for the secret, and what is
//! shown is then searched for every credential value in every encoding a plugin can write
//! (the redactor of the response path, `crate::vault::redact`), so that a value a plugin put
//! somewhere the fill stage does not mark is hidden too.

use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::config::check_bindings;
use super::{
    Call, ConfigError, Outcome, Plugin, PluginConfig, PluginConfigError, PluginError,
    needs_body_sha256,
};
use crate::fill::Masks;
use crate::request::{InvalidUrl, RequestHead};
use crate::vault::{Credentials, Secret};

/// What shows in place of a credential value the fill stage did not mark.
const HIDDEN: &str = "****";

/// A request to try, and the configuration and credentials to try it with.
#[derive(Debug)]
pub struct DryRun {
    pub method: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// `Name: value`, one per header.
    pub headers: Vec<String>,
    /// Its SHA-256 goes to plugins that ask for it.
    pub body: Vec<u8>,
    pub config: Vec<(String, String)>,
    /// Values by slot name.
    pub credentials: Vec<(String, Secret)>,
    /// The clock the plugin sees.
    pub now: SystemTime,
    /// The service and vault names the plugin sees.
    pub service: String,
    pub vault: String,
}

/// What the plugin made of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRunOutcome {
    /// The request as it would leave.
    Forward(ShownRequest),
    /// The plugin refused it with this status and reason.
    Deny { status: u16, reason: String },
}

/// A request as a dry run shows it: `METHOD URL`, then the headers in order, `host` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownRequest {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

/// Why a dry run could not show a request: the input (the caller's to fix) or the plugin.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("invalid method {0:?}")]
    Method(String),
    #[error(transparent)]
    Url(#[from] InvalidUrl),
    #[error("header {0:?} must look like `Name: value`")]
    HeaderShape(String),
    #[error("invalid header name in {0:?}")]
    HeaderName(String),
    #[error("invalid header value in {0:?}")]
    HeaderValue(String),
    #[error("{0}")]
    Config(ConfigError),
    #[error("the configuration does not work with this plugin: {0}")]
    Requirements(PluginConfigError),
    #[error("the credentials do not match the plugin's slots: {0}")]
    Bindings(ConfigError),
    #[error("{0}")]
    Plugin(PluginError),
}

impl DryRunError {
    /// Whether the plugin failed (trapped, ran out of time or memory, returned something
    /// invalid), rather than the input being wrong.
    pub fn is_plugin_failure(&self) -> bool {
        matches!(
            self,
            DryRunError::Plugin(_) | DryRunError::Requirements(PluginConfigError::Plugin(_))
        )
    }
}

/// Run `plugin` on `input`. Credential values are masked in what it answers unless
/// `show_secrets` (the CLI's `--show-secrets`; the API never sets it).
pub async fn dry_run(
    plugin: &Plugin,
    input: &DryRun,
    show_secrets: bool,
) -> Result<DryRunOutcome, DryRunError> {
    let method = input
        .method
        .to_ascii_uppercase()
        .parse::<http::Method>()
        .map_err(|_| DryRunError::Method(input.method.clone()))?;
    let mut head = RequestHead::from_url(method, &input.url)?;
    for header in &input.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| DryRunError::HeaderShape(header.clone()))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| DryRunError::HeaderName(header.clone()))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| DryRunError::HeaderValue(header.clone()))?;
        head.headers.append(name, value);
    }
    let config =
        PluginConfig::from_pairs(input.config.iter().cloned()).map_err(DryRunError::Config)?;
    let credentials = Credentials::new(input.credentials.iter().cloned());
    let requirements = plugin
        .requirements(&config)
        .await
        .map_err(DryRunError::Requirements)?;
    check_bindings(plugin.name(), &requirements, credentials.slot_names())
        .map_err(DryRunError::Bindings)?;
    let body_sha256: Option<[u8; 32]> =
        needs_body_sha256(&requirements.body, &head).then(|| Sha256::digest(&input.body).into());
    let call = Call {
        service: &input.service,
        vault: &input.vault,
        config: &config,
        credentials: &credentials,
        now: input.now,
        body_sha256: body_sha256.as_ref(),
        placeholders: None,
    };
    let mut masks = Masks::default();
    let outcome = plugin
        .authorize_masked(&mut head, &call, Some(&mut masks))
        .await
        .map_err(DryRunError::Plugin)?;
    Ok(match outcome {
        Outcome::Deny { status, reason } => DryRunOutcome::Deny { status, reason },
        Outcome::Forward if show_secrets => DryRunOutcome::Forward(shown(&head, None)),
        Outcome::Forward => {
            let mut request = shown(&masked_head(&head, &masks), Some(&masks));
            hide_values(&mut request, &input.credentials);
            DryRunOutcome::Forward(request)
        }
    })
}

/// `head` as shown: the request line of `line_head` (the masked head, when masking) and
/// `head`'s headers, each sensitive value replaced by its mask when `masks` is given.
fn shown(line_head: &RequestHead, masks: Option<&Masks>) -> ShownRequest {
    let mut headers = vec![("host".to_owned(), line_head.authority())];
    for name in line_head.headers.keys() {
        let mut masked = masks.map(|masks| masks.header_values(name));
        for value in line_head.headers.get_all(name) {
            let text = match &mut masked {
                Some(masked) if value.is_sensitive() => masked.next().unwrap_or(HIDDEN).to_owned(),
                _ => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            headers.push((name.as_str().to_owned(), text));
        }
    }
    ShownRequest {
        line: line_head.to_string(),
        headers,
    }
}

/// `head` with credential-bearing query values and path replaced by their masked forms.
fn masked_head(head: &RequestHead, masks: &Masks) -> RequestHead {
    let mut shown = head.clone();
    if let Some(path) = masks.path() {
        shown.path = path.to_owned();
    }
    if let Some(query) = &head.query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                match masks.query_value(&crate::request::decode_component(name)) {
                    Some(masked) => format!("{name}={masked}"),
                    None => pair.to_owned(),
                }
            })
            .collect();
        shown.query = Some(pairs.join("&"));
    }
    shown
}

/// Replace every credential value still in `request`, in any encoding a plugin can write it.
fn hide_values(request: &mut ShownRequest, credentials: &[(String, Secret)]) {
    let Some(redactor) =
        crate::vault::redactor(credentials.iter().map(|(_, secret)| (secret, HIDDEN)))
    else {
        return;
    };
    let hide = |text: &mut String| {
        if let Some((hidden, _)) = redactor.body(text.as_bytes()) {
            *text = String::from_utf8_lossy(&hidden).into_owned();
        }
    };
    hide(&mut request.line);
    for (_, value) in &mut request.headers {
        hide(value);
    }
}

/// An RFC 3339 time, for the clock a dry run's plugin sees.
pub fn parse_now(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(Into::into)
}
