//! `GET /health` and `GET /v1/status`: public, answered before an owner exists.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::json;

use super::{ApiError, ApiState, Request, ok};

pub async fn health(_state: &ApiState) -> Result<Response<Full<Bytes>>, ApiError> {
    ok(&json!({ "status": "ok" }))
}

pub async fn status(
    state: &ApiState,
    request: &Request,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let initialized = state.initialized().await?;
    ok(&json!({
        "initialized": initialized,
        "needs_first_user": !initialized,
        "base_url": request.base_url,
    }))
}
