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
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use sprayer_shared::model::{AppId, UserId};
use sprayer_shared::personal::profile::{Category, Preferences};
use sprayer_shared::personal::store::{self, StoreError};

use crate::hub::Hub;
use crate::user_routes::{Refused, bearer, decoded};

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
    Router::new()
        .route("/v1/users/{user}/preferences", get(read).put(write))
        .layer(crate::user_routes::cors())
        .with_state(hub)
}

/// The app and user of the bearer token, which must be `user`'s.
fn authorised(hub: &Hub, headers: &HeaderMap, user: &str) -> Result<(AppId, UserId), Refused> {
    let (app, owner) = bearer(hub, headers)?;
    if owner.as_str() != user {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a user token opens its own user's preferences only",
        )
        .at("user"));
    }
    Ok((app, owner))
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
        let preferences: Preferences = decoded(&body)?;
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
