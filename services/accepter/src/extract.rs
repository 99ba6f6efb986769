//! Extractors that turn bad input into the same problem+json as every other error.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;
use crate::state::AppState;

/// A JSON body, read within the body limit, with unknown fields and type errors reported by
/// JSON Pointer. Also hands over the raw bytes (for idempotency fingerprints).
pub struct JsonBody<T> {
    /// The decoded value.
    pub value: T,
    /// The body as received.
    pub raw: Bytes,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                let essence = value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let limit = state.settings.accepter.max_body_bytes;
        let raw = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_error(&rejection, limit))?;
        let value = decode(&raw)?;
        Ok(JsonBody { value, raw })
    }
}

fn body_error(rejection: &BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit)
    } else {
        ApiError::malformed(format!("cannot read the body: {rejection}"))
    }
}

/// Decodes JSON: syntax errors are 400, wrong shapes are 422 naming the field
/// ([`sprayer_shared::model::json::decode`]).
pub fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    sprayer_shared::model::json::decode(raw).map_err(ApiError::from_json)
}

/// Path parameters, with a problem+json answer when they do not parse.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParams(value))
            .map_err(|rejection: PathRejection| ApiError::validation("path", rejection.body_text()))
    }
}

/// Query parameters, with a problem+json answer when they do not parse.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::validation("query", rejection.body_text())
            })
    }
}
