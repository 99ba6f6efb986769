//! What the deliverer's user routes share: the user's own token as their credential
//! ([`bearer`]), bodies decoded naming the field at fault, and refusals as RFC 9457
//! problem+json ([`Refused`]), as the accepter answers them.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sprayer_shared::model::json::{self, JsonError};
use sprayer_shared::model::{AppId, UserId};
use sprayer_shared::wstoken::{self, TokenError};

use tower_http::cors::CorsLayer;

use crate::hub::Hub;

/// A refusal, answered as RFC 9457 problem+json naming the field at fault when there is one.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    field: Option<String>,
}

impl Refused {
    /// A refusal with `status`, `/problems/<kind>` and `detail`.
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Refused {
        Refused {
            status,
            kind,
            detail: detail.into(),
            field: None,
        }
    }

    /// Names the input at fault.
    pub fn at(mut self, field: impl Into<String>) -> Refused {
        self.field = Some(field.into());
        self
    }

    /// 401: no token, or not a valid one.
    pub fn unauthorized(detail: &str) -> Refused {
        Refused::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).at("Authorization")
    }

    /// 422: `field` is not acceptable.
    pub fn invalid(field: String, detail: String) -> Refused {
        Refused::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail).at(field)
    }

    /// 503: Redis did not answer.
    pub fn unavailable(error: &redis::RedisError) -> Refused {
        tracing::warn!(%error, "a user route: redis did not answer");
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store is not answering; try again shortly",
        )
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "type": format!("/problems/{}", self.kind),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The app and user of the request's bearer token (`Authorization: Bearer <token>`).
pub fn bearer(hub: &Hub, headers: &HeaderMap) -> Result<(AppId, UserId), Refused> {
    bearer_token(hub, headers, None)
}

/// The app and user of the request's token: `Authorization: Bearer <token>`, else `query`
/// (`?token=`, for `EventSource`, which cannot set headers).
pub fn bearer_token(
    hub: &Hub,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(AppId, UserId), Refused> {
    let Some(secret) = &hub.settings.deliverer.token_secret else {
        return Err(Refused::unauthorized(
            "user tokens are not configured on this installation",
        ));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .or(query)
        .ok_or_else(|| {
            Refused::unauthorized("send the user's token as Authorization: Bearer <token>")
        })?;
    let claims = wstoken::verify(secret.expose_secret().as_bytes(), token).map_err(|error| {
        Refused::unauthorized(match error {
            TokenError::Expired => "the token has expired; mint another",
            TokenError::Invalid => "not a user token of this installation (an app key is not one)",
        })
    })?;
    Ok((claims.app, claims.sub))
}

/// A body decoded, or the problem that names the field at fault.
pub fn decoded<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    json::decode(body).map_err(|error| match error {
        JsonError::Malformed(detail) => Refused::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("malformed JSON: {detail}"),
        ),
        JsonError::Invalid { field, detail } => Refused::invalid(field, detail),
    })
}

/// CORS answers for the user routes: any origin may call them, as they carry no cookie, only
/// the user's token.
pub fn cors() -> CorsLayer {
    use axum::http::Method;
    CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::PUT, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}
