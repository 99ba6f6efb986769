//! Errors as RFC 9457 `application/problem+json`: one mapping from error kind to status and body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`/problems/validation`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for people.
    pub detail: String,
    /// A JSON Pointer (or header or parameter name) to the input at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An API error: its status, kind and the field at fault.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    field: Option<String>,
    /// Seconds to wait before trying again (`Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            title,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// A body that did not decode: 400 when it is not JSON, else 422 naming the field.
    pub fn from_json(error: sprayer_shared::model::json::JsonError) -> Self {
        use sprayer_shared::model::json::JsonError;
        match error {
            JsonError::Malformed(detail) => Self::malformed(format!("malformed JSON: {detail}")),
            JsonError::Invalid { field, detail } => Self::validation(field, detail),
        }
    }

    /// Names the input at fault.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 422: the request is well-formed but a value is not acceptable.
    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request",
            detail,
        )
        .at(field)
    }

    /// 400: the body is not JSON.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "Malformed request",
            detail,
        )
    }

    /// 401: no key, or a key that is not valid.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
        .at("Authorization")
    }

    /// 404: nothing of that name belongs to the caller.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 410: what the request points at existed but is gone for good (an expired cursor).
    pub fn gone(kind: &'static str, field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, kind, "Gone", detail).at(field)
    }

    /// 400: a query parameter is not acceptable.
    pub fn bad_parameter(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-parameter",
            "Bad parameter",
            detail,
        )
        .at(field)
    }

    /// 413: the body is larger than the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request too large",
            format!("the body must be at most {limit} bytes"),
        )
    }

    /// 415: the body is not declared as JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json",
        )
        .at("Content-Type")
    }

    /// 503: a store the request needs is unreachable; nothing was accepted.
    pub fn unavailable(store: &'static str, error: &dyn std::fmt::Display) -> Self {
        tracing::warn!(store, %error, "store unavailable");
        metrics::counter!("sprayer_store_errors_total", "store" => store).increment(1);
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            format!("{store} is unavailable; nothing was accepted, try again"),
        );
        error.retry_after = Some(1);
        error
    }

    /// 429: the app is above its request rate; nothing was accepted.
    pub fn rate_limited(per_second: u32, retry_after: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!(
                "this app may make {per_second} requests per second; nothing was accepted, try again after {retry_after} s"
            ),
        );
        error.retry_after = Some(retry_after);
        error
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("/problems/{}", self.kind),
            title: self.title,
            status: self.status.as_u16(),
            detail: self.detail,
            field: self.field,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Answers 404 as problem+json for routes that do not exist.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// Answers 405 as problem+json.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not take that method",
    )
}
