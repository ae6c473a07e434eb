//! `GET /health` and `GET /v1/status`: public, answered before an owner exists.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::json;

use super::{ApiError, ApiState, ok};

pub async fn health(_state: &ApiState) -> Result<Response<Full<Bytes>>, ApiError> {
    ok(&json!({ "status": "ok" }))
}

pub async fn status(state: &ApiState) -> Result<Response<Full<Bytes>>, ApiError> {
    let initialized = state.initialized().await?;
    ok(&json!({
        "initialized": initialized,
        "needs_first_user": !initialized,
        "base_url": state.base_url,
    }))
}
