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

/// Decodes JSON: syntax errors are 400, wrong shapes are 422 naming the field. Every body of
/// the API is an object; serde would read a struct from an array of its fields in order
/// (`[null]` as `{"ttl": null}`), so an array is refused first.
pub fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::validation(
            "/",
            "must be a JSON object, not an array",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    match result {
        Ok(value) => {
            deserializer
                .end()
                .map_err(|error| ApiError::malformed(format!("malformed JSON: {error}")))?;
            Ok(value)
        }
        Err(error) => {
            let pointer = pointer(error.path());
            let inner = error.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                Err(ApiError::malformed(format!("malformed JSON: {inner}")))
            } else {
                Err(ApiError::validation(
                    pointer,
                    strip_position(&inner.to_string()),
                ))
            }
        }
    }
}

/// serde's path (`to.users[3]`) as a JSON Pointer (`/to/users/3`).
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                pointer.push_str(&format!("/{}", key.replace('~', "~0").replace('/', "~1")));
            }
            Segment::Enum { variant } => pointer.push_str(&format!("/{variant}")),
            Segment::Unknown => {}
        }
    }
    if pointer.is_empty() {
        "/".into()
    } else {
        pointer
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
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
