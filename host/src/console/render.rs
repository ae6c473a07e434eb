//! How the console answers: an HTML page from a template with its security headers, the
//! stylesheet and script it may load, and the pages that say something went wrong.
//!
//! Every page carries a Content-Security-Policy that allows styles and scripts from this
//! site only (`/assets/console.css`, `/assets/console.js`), no inline script, no framing, and
//! forms that post only here. Templates (askama, `host/templates/console/`) escape every value
//! they print; nothing is marked safe unless this file built it.

use askama::Template;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// The one stylesheet.
const STYLESHEET: &str = include_str!("../../assets/console.css");
/// The one script.
const SCRIPT: &str = include_str!("../../assets/console.js");

/// The policy every console page is served with.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// An HTML answer.
pub(crate) fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// A template rendered to a page; a template that fails to render is a bug, answered with a
/// plain 500 rather than half a page.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response<Full<Bytes>> {
    match template.render() {
        Ok(body) => html(status, body),
        Err(error) => {
            tracing::error!(%error, "a console page failed to render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>This page failed to render.</p>".into(),
            )
        }
    }
}

/// The stylesheet or the script, by path; `None` for any other asset.
pub(crate) fn asset(name: &str) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match name {
        "console.css" => (STYLESHEET, "text/css; charset=utf-8"),
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Some(response)
}
