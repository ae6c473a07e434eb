//! The plugins page (`/manage/plugins`): the plugins the server has loaded, what each needs
//! (configuration keys, credential slots, the body's hash), the plugin directory's load
//! errors (`GET /v1/plugins`), and a dry-run form (`POST /manage/plugins/test`, which calls
//! `POST /v1/plugins/test`) that shows the request a plugin would send, credentials masked.
//!
//! The dry run's credential values are made up by the person and never shown back: after a
//! run the form keeps everything else they typed, and the credential lines must be typed
//! again.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Chrome;
use crate::console::{Console, Fields};

/// How many hex digits of a sha256 the page shows (the whole one is in a `title` and copyable).
const SHORT_SHA256: usize = 12;

pub(in crate::console) async fn route(
    console: &Console<'_>,
    segments: &[&str],
) -> Option<Response<Full<Bytes>>> {
    Some(match (&console.request.method, segments) {
        (&Method::GET, ["manage", "plugins"]) => show(console, DryRunForm::default(), None).await,
        (&Method::POST, ["manage", "plugins", "test"]) => test(console).await,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct PluginList {
    plugins: Vec<ListedPlugin>,
    errors: Vec<LoadError>,
}

#[derive(Deserialize)]
struct ListedPlugin {
    name: String,
    version: String,
    sha256: String,
    origin: String,
    description: String,
    config: Vec<Key>,
    slots: Vec<Key>,
    body: String,
}

#[derive(Deserialize)]
struct Key {
    name: String,
    required: bool,
    description: String,
}

#[derive(Deserialize)]
struct LoadError {
    file: String,
    error: String,
}

impl ListedPlugin {
    fn short_sha256(&self) -> &str {
        self.sha256.get(..SHORT_SHA256).unwrap_or(&self.sha256)
    }
}

/// What the person typed in the dry-run form, but the credentials.
#[derive(Debug, Default)]
struct DryRunForm {
    plugin: String,
    method: String,
    url: String,
    headers: String,
    body: String,
    config: String,
}

impl DryRunForm {
    /// Whether `method` is the one chosen (GET until one is).
    fn method_is(&self, method: &str) -> bool {
        if self.method.is_empty() {
            method == "GET"
        } else {
            self.method.eq_ignore_ascii_case(method)
        }
    }
}

/// What the last dry run gave.
enum DryRunResult {
    Forward {
        line: String,
        headers: Vec<(String, String)>,
    },
    Deny {
        status: u64,
        reason: String,
    },
    Failed(String),
}

#[derive(askama::Template)]
#[template(path = "console/plugins.html")]
struct PluginsPage {
    chrome: Chrome,
    plugins: Vec<ListedPlugin>,
    errors: Vec<LoadError>,
    form: DryRunForm,
    result: Option<DryRunResult>,
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

async fn show(
    console: &Console<'_>,
    form: DryRunForm,
    result: Option<DryRunResult>,
) -> Response<Full<Bytes>> {
    let listed = match console.get::<PluginList>("/v1/plugins").await {
        Ok(listed) => listed,
        Err(error) => return console.refused(error),
    };
    let page = PluginsPage {
        chrome: console.chrome("Plugins", "plugins"),
        plugins: listed.plugins,
        errors: listed.errors,
        form,
        result,
    };
    console.page(&page)
}

async fn test(console: &Console<'_>) -> Response<Full<Bytes>> {
    let fields = match console.form() {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let field = |name: &str| {
        fields
            .get(name)
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default()
    };
    let form = DryRunForm {
        plugin: field("plugin"),
        method: field("method"),
        url: field("url").trim().to_owned(),
        headers: field("headers"),
        body: field("body"),
        config: field("config"),
    };
    let body = match request_body(&form, &fields) {
        Ok(body) => body,
        Err(problem) => return show(console, form, Some(DryRunResult::Failed(problem))).await,
    };
    let result = match console.send(Method::POST, "/v1/plugins/test", &body).await {
        Ok(answer) if answer["outcome"] == "deny" => DryRunResult::Deny {
            status: answer["status"].as_u64().unwrap_or_default(),
            reason: answer["reason"].as_str().unwrap_or_default().to_owned(),
        },
        Ok(answer) => DryRunResult::Forward {
            line: answer["request"]["line"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            headers: answer["request"]["headers"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|header| {
                    (
                        header["name"].as_str().unwrap_or_default().to_owned(),
                        header["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        },
        // Who may not run it gets the refusal page; a dry run that did not work is shown
        // next to the form, which keeps what was typed.
        Err(error)
            if error.status == StatusCode::FORBIDDEN
                || error.status == StatusCode::UNAUTHORIZED =>
        {
            return console.refused(error);
        }
        Err(error) => DryRunResult::Failed(error.message),
    };
    show(console, form, Some(result)).await
}

/// The body of `POST /v1/plugins/test` for the form, or what to fix (never quoting a
/// credential line: it holds a value).
fn request_body(form: &DryRunForm, fields: &Fields) -> Result<Value, String> {
    let headers: Vec<&str> = lines(&form.headers).collect();
    let mut config = Map::new();
    for (number, line) in lines(&form.config).enumerate() {
        let (key, value) = line.split_once('=').ok_or_else(|| {
            format!(
                "Configuration line {} must look like key=value: {line:?}",
                number + 1
            )
        })?;
        config.insert(key.trim().to_owned(), Value::from(value.trim()));
    }
    let mut credentials = Map::new();
    let typed = fields.get("credentials").map(|value| value.as_str());
    for (number, line) in lines(typed.unwrap_or_default()).enumerate() {
        let (slot, value) = line.split_once('=').ok_or_else(|| {
            format!(
                "Credential line {} must look like SLOT=made-up value (the line is not shown: \
                 it may hold a value); type the credentials again",
                number + 1
            )
        })?;
        credentials.insert(slot.trim().to_owned(), Value::from(value));
    }
    Ok(json!({
        "plugin": form.plugin,
        "method": if form.method.is_empty() { "GET" } else { &form.method },
        "url": form.url,
        "headers": headers,
        "body": form.body,
        "config": config,
        "credentials": credentials,
    }))
}

/// The non-empty lines of a textarea, without their line ends.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use askama::Template as _;

    use super::*;

    fn chrome() -> Chrome {
        Chrome {
            base: String::new(),
            title: "Plugins".to_owned(),
            section: "plugins",
            email: Some("owner@example.com".to_owned()),
            is_owner: true,
            csrf: "token".to_owned(),
            notice: None,
        }
    }

    /// A plugin file's describe is its author's text: every part of it is escaped.
    #[test]
    fn text_a_plugin_describes_itself_with_is_escaped() {
        let script = "<script>alert(1)</script>";
        let page = PluginsPage {
            chrome: chrome(),
            plugins: vec![ListedPlugin {
                name: "evil".to_owned(),
                version: script.to_owned(),
                sha256: "ab".repeat(32),
                origin: "file".to_owned(),
                description: script.to_owned(),
                config: vec![Key {
                    name: script.to_owned(),
                    required: true,
                    description: script.to_owned(),
                }],
                slots: vec![Key {
                    name: script.to_owned(),
                    required: false,
                    description: script.to_owned(),
                }],
                body: "none".to_owned(),
            }],
            errors: vec![LoadError {
                file: script.to_owned(),
                error: script.to_owned(),
            }],
            form: DryRunForm {
                url: script.to_owned(),
                ..DryRunForm::default()
            },
            result: Some(DryRunResult::Deny {
                status: 403,
                reason: script.to_owned(),
            }),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert_eq!(
            html.matches("&#60;script&#62;alert(1)").count(),
            10,
            "{html}"
        );
    }
}
