//! `GET` and `PUT /v1/users/{user}/preferences` for the user's own browser, authorised by the
//! user's WebSocket token (`Authorization: Bearer <token>`) and by nothing else: a token opens
//! its own user's preferences and no other route. The body of both answers is the user's
//! preferences and the app's categories (what a preferences panel shows); a `PUT` takes
//! preferences as the app's own `PUT /v1/users/{user}/preferences` does, with the same checks
//! and the same problems. Cross-origin pages may call these routes: they carry no cookie.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;
use serde::Serialize;
use sprayer_shared::model::json::{self, JsonError};
use sprayer_shared::model::{AppId, UserId};
use sprayer_shared::personal::profile::{Category, Preferences};
use sprayer_shared::personal::store::{self, StoreError};
use sprayer_shared::wstoken::{self, TokenError};
use tower_http::cors::CorsLayer;

use crate::hub::Hub;

/// One of the app's categories, as a preferences panel lists it.
#[derive(Debug, Serialize)]
struct CategoryView {
    key: String,
    required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

/// What both routes answer.
#[derive(Debug, Serialize)]
struct PreferencesView {
    user: String,
    preferences: Preferences,
    categories: Vec<CategoryView>,
}

/// The routes, with their CORS answers.
pub fn router(hub: Arc<Hub>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::PUT])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600));
    Router::new()
        .route("/v1/users/{user}/preferences", get(read).put(write))
        .layer(cors)
        .with_state(hub)
}

/// A refusal, answered as RFC 9457 problem+json naming the field at fault when there is one.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    field: Option<String>,
}

impl Refused {
    fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Refused {
        Refused {
            status,
            kind,
            detail: detail.into(),
            field: None,
        }
    }

    fn at(mut self, field: impl Into<String>) -> Refused {
        self.field = Some(field.into());
        self
    }

    fn unauthorized(detail: &str) -> Refused {
        Refused::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).at("Authorization")
    }

    fn invalid(field: String, detail: String) -> Refused {
        Refused::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail).at(field)
    }

    fn unavailable(error: &redis::RedisError) -> Refused {
        tracing::warn!(%error, "preferences: redis did not answer");
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the preferences store is not answering; try again shortly",
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

/// The app and user of the bearer token, which must be `user`'s.
fn authorised(hub: &Hub, headers: &HeaderMap, user: &str) -> Result<(AppId, UserId), Refused> {
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
        .ok_or_else(|| {
            Refused::unauthorized("send the user's token as Authorization: Bearer <token>")
        })?;
    let claims = wstoken::verify(secret.expose_secret().as_bytes(), token).map_err(|error| {
        Refused::unauthorized(match error {
            TokenError::Expired => "the token has expired; mint another",
            TokenError::Invalid => "not a user token of this installation (an app key is not one)",
        })
    })?;
    if claims.sub.as_str() != user {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a user token opens its own user's preferences only",
        )
        .at("user"));
    }
    Ok((claims.app, claims.sub))
}

async fn view(hub: &Hub, app: &AppId, user: &UserId) -> Result<Response, Refused> {
    let mut redis = hub.redis.clone();
    let preferences = store::load_preferences(&mut redis, app, user)
        .await
        .map_err(|error| Refused::unavailable(&error))?;
    let categories = store::categories(&mut redis, app)
        .await
        .map_err(|error| Refused::unavailable(&error))?
        .into_iter()
        .map(
            |(
                key,
                Category {
                    required,
                    description,
                    ..
                },
            )| CategoryView {
                key,
                required,
                description,
            },
        )
        .collect();
    let body = PreferencesView {
        user: user.as_str().to_owned(),
        preferences,
        categories,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response())
}

async fn read(
    State(hub): State<Arc<Hub>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let outcome = async {
        let (app, user) = authorised(&hub, &headers, &user)?;
        view(&hub, &app, &user).await
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}

async fn write(
    State(hub): State<Arc<Hub>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = async {
        let (app, user) = authorised(&hub, &headers, &user)?;
        let preferences: Preferences = json::decode(&body).map_err(|error| match error {
            JsonError::Malformed(detail) => Refused::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("malformed JSON: {detail}"),
            ),
            JsonError::Invalid { field, detail } => Refused::invalid(field, detail),
        })?;
        let mut redis = hub.redis.clone();
        store::store_preferences(&mut redis, &app, &user, &preferences)
            .await
            .map_err(|error| match error {
                StoreError::Invalid { field, detail } => Refused::invalid(field, detail),
                StoreError::Redis(error) => Refused::unavailable(&error),
            })?;
        metrics::counter!("sprayer_ws_preferences_set_total").increment(1);
        view(&hub, &app, &user).await
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}
