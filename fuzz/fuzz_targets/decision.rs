//! Plugin decision validation (`plugin::decision`) and applying the checked plan
//! (`fill::apply`), over arbitrary decisions built from the contract's types.
//!
//! Input: a JSON document, the contract's `decision` in a compact form, with the request
//! and the credentials it meets:
//! ```json
//! {"credentials": {"token": "t0k", "user": "alice", "pass": "pw"},
//!  "request": "/v1/x?a=1", "port": 443, "headers": {"content-length": "5"},
//!  "placeholder": "value of __key__ on every surface", "body_sha256": true,
//!  "decision": {"forward": {
//!    "edits": [{"set-header": ["authorization", [{"raw": ["Bearer ", {"slot": "token"}]}]]},
//!              {"remove-header": "x-a"}, {"set-query": ["k", [{"percent": ["v"]}]]},
//!              {"remove-query": "k"}, {"set-path": [{"raw": ["/v2"]}]}],
//!    "sign": {"aws-sigv4": {"access-key-id": "user", "secret-access-key": "pass"}}}}}
//! ```
//! or `"decision": {"deny": {"status": 403, "reason": "no"}}`. The slots `token`, `user`
//! and `pass` are bound; every value gets the prefix `SeCrEt`, which nothing else the host
//! writes has, so a value found where it must not be is a value leaked.
//!
//! A decision `check_forward` accepts, applied to a request the route accepted, never:
//! - edits a protected header (`Host`, framing, hop-by-hop, forwarding, `X-Vault`,
//!   `X-Agent-Vault-*`; `reference::protected_header`), whose values stay exactly as the agent
//!   sent them, placeholders and all;
//! - changes the method, scheme, host or port;
//! - yields a path the route would refuse (a dot segment in any encoding), a path that does
//!   not start with `/`, or a request target that does not parse back to the same path and
//!   query (no smuggled `?` or `#`);
//! - reaches a credential slot the service does not bind (applying it never fails for want
//!   of a slot: the check saw every reference, the signer's included);
//! - leaves a credential value in a header that is not marked sensitive, in the masked form
//!   `plugin test` prints, or in an error message.
//!
//! A denial `check_denial` accepts has a 4xx status other than 401 and 407 and a short
//! reason without control characters.
#![no_main]

use std::time::{Duration, SystemTime};

use agent_vault::fill::sigv4::SignError;
use agent_vault::fill::{self, ApplyContext, ApplyError, Masks};
use agent_vault::plugin::contract::{
    Atom, AwsSigv4, Decision, Denial, Edit, Encoding, Forward, NamedValue, Part, Signer,
    Sigv4Payload, Sigv4Placement,
};
use agent_vault::plugin::decision::{MAX_REASON_LEN, check_denial, check_forward};
use agent_vault::proxy::route::canonical_path;
use agent_vault::request::RequestHead;
use agent_vault::services::Surface;
use agent_vault::vault::placeholders::Placeholders;
use agent_vault::vault::render::{self, RenderError};
use agent_vault::vault::{Credentials, Secret};
use agent_vault_fuzz::reference;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::Value;

/// The longest URI the `http` crate takes (`u16::MAX - 1`).
const MAX_URI_LEN: usize = 65_534;

const BOUND_SLOTS: [&str; 3] = ["token", "user", "pass"];
const MARKER: &str = "SeCrEt";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = run(&input);
});

fn run(input: &Value) -> Option<()> {
    let values: Vec<Vec<u8>> = BOUND_SLOTS
        .iter()
        .map(|slot| {
            let value = input["credentials"][slot].as_str().unwrap_or_default();
            format!("{MARKER}{value}").into_bytes()
        })
        .collect();
    let credentials = Credentials::new(
        BOUND_SLOTS
            .iter()
            .zip(&values)
            .map(|(slot, value)| ((*slot).to_owned(), Secret::new(value.clone()))),
    );
    match decision(&input["decision"])? {
        Decision::Deny(denial) => check_deny(&denial),
        Decision::Forward(forward) => {
            let head = head(input)?;
            let placeholders = input["placeholder"].as_str().map(|value| {
                Placeholders::new([(
                    "KEY".to_owned(),
                    "__key__".to_owned(),
                    Surface::ALL.to_vec(),
                    Secret::new(value),
                )])
            });
            let context = ApplyContext {
                credentials: &credentials,
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
                body_sha256: input["body_sha256"]
                    .as_bool()
                    .unwrap_or(false)
                    .then_some(&[7; 32]),
                placeholders: placeholders.as_ref(),
            };
            check_and_apply(&forward, head, context, &values);
        }
    }
    Some(())
}

/// A request the route accepted, to `api.example.com`.
fn head(input: &Value) -> Option<RequestHead> {
    let port = input["port"].as_u64().unwrap_or(443);
    let request = input["request"].as_str().unwrap_or("/");
    let url = format!("https://api.example.com:{port}{request}");
    let mut head = RequestHead::from_url(Method::POST, &url).ok()?;
    canonical_path(&head.path).ok()?;
    let mut headers = HeaderMap::new();
    if let Some(fields) = input["headers"].as_object() {
        for (name, value) in fields {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value.as_str()?).ok()?,
            );
        }
    }
    head.headers = headers;
    Some(head)
}

fn decision(value: &Value) -> Option<Decision> {
    if let Some(deny) = value.get("deny") {
        return Some(Decision::Deny(Denial {
            status: u16::try_from(deny["status"].as_u64()?).ok()?,
            reason: deny["reason"].as_str().unwrap_or_default().to_owned(),
        }));
    }
    let forward = value.get("forward")?;
    let mut edits = Vec::new();
    for edit in forward["edits"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (kind, body) = edit.as_object()?.iter().next()?;
        let named = |body: &Value| -> Option<NamedValue> {
            Some(NamedValue {
                name: body[0].as_str()?.to_owned(),
                value: parts(&body[1])?,
            })
        };
        edits.push(match kind.as_str() {
            "set-header" => Edit::SetHeader(named(body)?),
            "append-header" => Edit::AppendHeader(named(body)?),
            "remove-header" => Edit::RemoveHeader(body.as_str()?.to_owned()),
            "set-query" => Edit::SetQuery(named(body)?),
            "remove-query" => Edit::RemoveQuery(body.as_str()?.to_owned()),
            "set-path" => Edit::SetPath(parts(body)?),
            _ => return None,
        });
    }
    let sign = match forward.get("sign") {
        None | Some(Value::Null) => None,
        Some(sign) => Some(Signer::AwsSigv4(sigv4(&sign["aws-sigv4"])?)),
    };
    Some(Decision::Forward(Forward { edits, sign }))
}

/// `[{"raw": ["text", {"slot": "token"}]}, {"base64": [...]}]`
fn parts(value: &Value) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    for part in value.as_array()? {
        let (encoding, atoms) = part.as_object()?.iter().next()?;
        let encoding = match encoding.as_str() {
            "raw" => Encoding::Raw,
            "base64" => Encoding::Base64,
            "base64url" => Encoding::Base64url,
            "hex" => Encoding::Hex,
            "percent" => Encoding::Percent,
            _ => return None,
        };
        let atoms = atoms
            .as_array()?
            .iter()
            .map(|atom| match atom {
                Value::String(text) => Some(Atom::Text(text.clone())),
                other => Some(Atom::Credential(other["slot"].as_str()?.to_owned())),
            })
            .collect::<Option<Vec<Atom>>>()?;
        parts.push(Part { atoms, encoding });
    }
    Some(parts)
}

fn sigv4(value: &Value) -> Option<AwsSigv4> {
    let text = |field: &str, default: &str| value[field].as_str().unwrap_or(default).to_owned();
    let flag = |field: &str, default: bool| value[field].as_bool().unwrap_or(default);
    Some(AwsSigv4 {
        access_key_id: text("access-key-id", "user"),
        secret_access_key: text("secret-access-key", "pass"),
        session_token: value["session-token"].as_str().map(str::to_owned),
        sign_session_token: flag("sign-session-token", true),
        region: text("region", "us-east-1"),
        service: text("service", "s3"),
        placement: match value["placement"].as_str() {
            Some("query") => Sigv4Placement::Query,
            _ => Sigv4Placement::Header,
        },
        expires_seconds: u32::try_from(value["expires-seconds"].as_u64().unwrap_or(3600)).ok()?,
        normalize_path: flag("normalize-path", true),
        payload: match value["payload"].as_str() {
            Some("unsigned") => Sigv4Payload::Unsigned,
            _ => Sigv4Payload::Auto,
        },
    })
}

fn check_deny(denial: &Denial) {
    if check_denial(denial).is_ok() {
        assert!((400..=499).contains(&denial.status), "{}", denial.status);
        assert!(!matches!(denial.status, 401 | 407), "{}", denial.status);
        assert!(denial.reason.len() <= MAX_REASON_LEN);
        assert!(
            !denial.reason.chars().any(char::is_control),
            "{:?}",
            denial.reason
        );
    }
}

fn check_and_apply(
    forward: &Forward,
    head: RequestHead,
    context: ApplyContext<'_>,
    values: &[Vec<u8>],
) {
    let plan = match check_forward(forward.clone(), context.credentials) {
        Ok(plan) => plan,
        Err(error) => {
            assert_no_secret(&error.to_string(), values, forward, &head);
            return;
        }
    };
    let before = head.clone();
    let mut after = head;
    let mut masks = Masks::default();
    match fill::apply(&plan, &mut after, context, Some(&mut masks)) {
        Ok(()) => {}
        Err(error) => {
            let unbound = matches!(
                error,
                ApplyError::Render(RenderError::Unbound(_))
                    | ApplyError::Sign(SignError::Unbound(_))
                    | ApplyError::Sign(SignError::Render(RenderError::Unbound(_)))
            );
            assert!(
                !unbound,
                "an accepted decision reached an unbound slot: {error}"
            );
            assert_no_secret(&error.to_string(), values, forward, &before);
            return;
        }
    }

    assert_eq!(after.method, before.method);
    assert_eq!(after.scheme, before.scheme);
    assert_eq!(after.host, before.host);
    assert_eq!(after.port, before.port);

    let names: Vec<HeaderName> = before
        .headers
        .keys()
        .chain(after.headers.keys())
        .cloned()
        .collect();
    for name in names {
        if reference::protected_header(name.as_str()) {
            let was: Vec<&HeaderValue> = before.headers.get_all(&name).iter().collect();
            let is: Vec<&HeaderValue> = after.headers.get_all(&name).iter().collect();
            assert_eq!(
                was, is,
                "the decision or a placeholder changed the protected header {name}"
            );
        }
    }

    assert!(after.path.starts_with('/'), "path {:?}", after.path);
    if after.path != before.path {
        assert!(
            canonical_path(&after.path).is_ok(),
            "the route would refuse the path {:?} the decision made",
            after.path
        );
    }
    let target = after.path_and_query();
    assert!(!target.contains('#'), "{target:?}");
    match target.parse::<http::uri::PathAndQuery>() {
        Ok(parsed) => {
            assert_eq!(parsed.path(), after.path, "{target:?}");
            assert_eq!(parsed.query(), after.query.as_deref(), "{target:?}");
        }
        // Longer than `http` can carry: the forwarder refuses it before anything is sent.
        Err(_) if target.len() >= MAX_URI_LEN => {}
        Err(error) => panic!("{target:?} is not a request target: {error}"),
    }

    for value in distinctive(values, forward, &before) {
        for (name, header) in after.headers.iter() {
            if reference::contains(header.as_bytes(), value) {
                assert!(
                    header.is_sensitive(),
                    "{name} carries a credential, not marked sensitive"
                );
            }
        }
        let mut shown: Vec<String> = masks.path().map(str::to_owned).into_iter().collect();
        for name in after.headers.keys() {
            shown.extend(masks.header_values(name).map(str::to_owned));
        }
        for name in query_names(forward) {
            shown.extend(masks.query_value(&name).map(str::to_owned));
        }
        for text in shown {
            assert!(
                !reference::contains(text.as_bytes(), value),
                "a mask shows a credential: {text:?}"
            );
        }
    }
}

/// Credential values long enough to look for, and that the request or the decision does not
/// already hold in plain sight (a plugin may write any text or slot name, an agent any
/// header).
fn distinctive<'a>(values: &'a [Vec<u8>], forward: &Forward, head: &RequestHead) -> Vec<&'a [u8]> {
    let mut public = head.path_and_query().into_bytes();
    for (name, value) in head.headers.iter() {
        public.extend_from_slice(name.as_str().as_bytes());
        public.push(0);
        public.extend_from_slice(value.as_bytes());
        public.push(0);
    }
    let mut add = |text: &str| {
        public.extend_from_slice(text.as_bytes());
        public.push(0);
    };
    let add_value = |value: &[Part], add: &mut dyn FnMut(&str)| {
        let host: Vec<agent_vault::fill::plan::Part> =
            value.iter().cloned().map(Into::into).collect();
        add(&render::masked(&host));
        for atom in value.iter().flat_map(|part| &part.atoms) {
            match atom {
                Atom::Text(text) | Atom::Credential(text) => add(text),
            }
        }
    };
    for edit in &forward.edits {
        match edit {
            Edit::SetHeader(named) | Edit::AppendHeader(named) | Edit::SetQuery(named) => {
                add(&named.name);
                add_value(&named.value, &mut add);
            }
            Edit::RemoveHeader(name) | Edit::RemoveQuery(name) => add(name),
            Edit::SetPath(value) => add_value(value, &mut add),
        }
    }
    if let Some(Signer::AwsSigv4(sigv4)) = &forward.sign {
        add(&sigv4.region);
        add(&sigv4.service);
        add(&sigv4.access_key_id);
        add(&sigv4.secret_access_key);
        add(sigv4.session_token.as_deref().unwrap_or_default());
    }
    values
        .iter()
        .filter(|value| value.len() >= 8 && !reference::contains(&public, value))
        .map(Vec::as_slice)
        .collect()
}

fn assert_no_secret(message: &str, values: &[Vec<u8>], forward: &Forward, head: &RequestHead) {
    for value in distinctive(values, forward, head) {
        assert!(
            !reference::contains(message.as_bytes(), value),
            "an error shows a credential: {message:?}"
        );
    }
}

fn query_names(forward: &Forward) -> Vec<String> {
    let mut names: Vec<String> = ["X-Amz-Credential", "X-Amz-Security-Token"]
        .map(str::to_owned)
        .to_vec();
    for edit in &forward.edits {
        if let Edit::SetQuery(named) = edit {
            names.push(named.name.clone());
        }
    }
    names
}
