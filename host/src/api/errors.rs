//! The API's errors: [`ApiError`], what each domain error (store, authentication, access,
//! crypto) becomes, and [`ApiError::into_response`], the one place an error becomes a status
//! and a body (`{"error": message}`, with extra fields and `Retry-After` where set).

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::json_response;
use crate::auth::AuthError;
use crate::auth::access::{AccessError, Denied};
use crate::ratelimit::{self, SignInRefused};
use crate::store::StoreError;
use crate::vault::crypto::CryptoError;

/// An error on its way to becoming a response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Extra top-level fields of the JSON body.
    pub extra: Option<Value>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// 429 for a client over the AUTH tier's limit.
    pub fn too_many_attempts(limited: ratelimit::Limited) -> Self {
        let seconds = limited.retry_after().as_secs_f64().ceil().max(1.0);
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts from your address; try again in {seconds} s"),
        )
        .with(json!({ "code": "too_many_requests" }));
        error.retry_after = Some(limited.retry_after());
        error
    }

    /// 429 for a client that failed too often to sign in (at one account, or at many).
    pub fn too_many_sign_ins(refused: SignInRefused) -> Self {
        let seconds = refused.retry_after().as_secs_f64().ceil().max(1.0);
        let what = match refused {
            SignInRefused::Account { .. } => "to this account from your address",
            SignInRefused::Client { .. } => "from your address",
        };
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed sign-ins {what}; try again in {seconds} s"),
        )
        .with(json!({ "code": "too_many_requests" }));
        error.retry_after = Some(refused.retry_after());
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub(super) fn with(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// The one place an error becomes a status and a body.
    pub(super) fn into_response(self) -> Response<Full<Bytes>> {
        let mut body = json!({ "error": self.message });
        if let (Some(Value::Object(extra)), Value::Object(object)) = (self.extra, &mut body) {
            object.extend(extra);
        }
        let mut response = json_response(self.status, &body);
        if let Some(retry_after) = self.retry_after {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::LastOwner => {
                ApiError::conflict("This would leave the instance without an owner")
            }
            StoreError::LastAdmin => {
                ApiError::conflict("This would leave the vault without an admin")
            }
            StoreError::TooMany(what) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("Too many {what}"))
            }
            StoreError::Database(message) => {
                tracing::error!("store error: {message}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
            StoreError::Unavailable(message) => {
                tracing::error!("store error: {message}");
                ApiError {
                    retry_after: Some(std::time::Duration::from_secs(5)),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The database cannot be used right now (it is unreachable, another \
                         program holds it, or its disk is full); retry later",
                    )
                }
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Store(error) => error.into(),
            other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ApiError::forbidden(denied.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::Denied(denied) => denied.into(),
            AccessError::Store(error) => error.into(),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(error: CryptoError) -> Self {
        tracing::error!("crypto error: {error}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}
