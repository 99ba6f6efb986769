//! The administration API (`/admin/v1`, admin token): create apps, list them, rotate their keys.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{Channel, Providers};
use utoipa::ToSchema;

use crate::apps::AppsError;
use crate::extract::{JsonBody, PathParams};
use crate::problem::{ApiError, Problem};
use crate::state::{Admin, AppState};

/// An app to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// A name for people, 1 to 100 characters.
    pub name: String,
}

/// A created app and its first key (shown this once).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApp {
    /// The app id.
    pub id: String,
    /// The name.
    pub name: String,
    /// The API key: keep it, it is not shown again.
    pub key: String,
}

/// A new key (shown this once).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The key id, to revoke it later.
    pub key_id: String,
    /// The API key: keep it, it is not shown again.
    pub key: String,
}

/// An app as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    /// The app id.
    pub id: String,
    /// The name.
    pub name: String,
    /// Ids of the live keys.
    pub key_ids: Vec<String>,
}

fn apps_error(error: AppsError) -> ApiError {
    match error {
        AppsError::Store(error) => ApiError::unavailable("mongodb", &error),
        AppsError::UnknownApp(app) => ApiError::not_found(format!("no app {app}")).at("app"),
        error @ AppsError::UnknownKey { .. } => ApiError::not_found(error.to_string()).at("key_id"),
        error @ (AppsError::TooManyKeys | AppsError::LastKey) => {
            ApiError::conflict(error.to_string())
        }
        error @ AppsError::BadName => ApiError::validation("/name", error.to_string()),
    }
}

/// Create an app.
#[utoipa::path(
    post, path = "/admin/v1/apps", tag = "admin", request_body = CreateApp,
    responses(
        (status = 201, body = CreatedApp),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_token" = []))
)]
pub async fn create_app(
    State(state): State<AppState>,
    _admin: Admin,
    body: JsonBody<CreateApp>,
) -> Result<(StatusCode, Json<CreatedApp>), ApiError> {
    let (app, key) = state
        .apps
        .create(&body.value.name)
        .await
        .map_err(apps_error)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApp {
            id: app.id,
            name: app.name,
            key,
        }),
    ))
}

/// List apps.
#[utoipa::path(
    get, path = "/admin/v1/apps", tag = "admin",
    responses((status = 200, body = Vec<AppView>), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("admin_token" = []))
)]
pub async fn list_apps(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<AppView>>, ApiError> {
    let apps = state.apps.list().await.map_err(apps_error)?;
    Ok(Json(
        apps.into_iter()
            .map(|app| AppView {
                id: app.id,
                name: app.name,
                key_ids: app.keys.into_iter().map(|key| key.id).collect(),
            })
            .collect(),
    ))
}

/// Add a key to an app (at most two live keys, for rotation without downtime).
#[utoipa::path(
    post, path = "/admin/v1/apps/{app}/keys", tag = "admin",
    params(("app" = String, Path)),
    responses(
        (status = 201, body = CreatedKey),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Two keys are live already", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_token" = []))
)]
pub async fn add_key(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(app): PathParams<String>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let key = state.apps.add_key(&app).await.map_err(apps_error)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key_id: key.stored.id,
            key: key.key,
        }),
    ))
}

/// Revoke one of an app's keys (not its last).
#[utoipa::path(
    delete, path = "/admin/v1/apps/{app}/keys/{key_id}", tag = "admin",
    params(("app" = String, Path), ("key_id" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It is the app's last key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_token" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams((app, key_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .apps
        .revoke_key(&app, &key_id)
        .await
        .map_err(apps_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set an app's provider settings for a channel (credentials are stored, never shown again).
#[utoipa::path(
    put, path = "/admin/v1/apps/{app}/providers/{channel}", tag = "admin",
    params(("app" = String, Path), ("channel" = String, Path, description = "email, apns, fcm or webpush")),
    request_body(content = Object, description = "The channel's settings; see the book, Channels"),
    responses(
        (status = 200, description = "Set; the app's providers, redacted", body = Object),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_token" = []))
)]
pub async fn set_provider(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams((app, channel)): PathParams<(String, String)>,
    body: JsonBody<serde_json::Value>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let channel: Channel = channel
        .parse()
        .map_err(|error| ApiError::validation("channel", format!("{error}")))?;
    let settings = Providers::parse(channel, &body.value).map_err(|error| {
        let field = if error.field.starts_with('/') {
            error.field.to_owned()
        } else {
            format!("/{}", error.field)
        };
        ApiError::validation(field, error.reason)
    })?;
    state
        .apps
        .set_provider(&app, channel, settings)
        .await
        .map_err(apps_error)?;
    Ok(Json(state.apps.providers(&app).await.map_err(apps_error)?))
}

/// An app's provider settings, redacted.
#[utoipa::path(
    get, path = "/admin/v1/apps/{app}/providers", tag = "admin",
    params(("app" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("admin_token" = []))
)]
pub async fn providers(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(app): PathParams<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(state.apps.providers(&app).await.map_err(apps_error)?))
}

/// Remove an app's provider settings for a channel.
#[utoipa::path(
    delete, path = "/admin/v1/apps/{app}/providers/{channel}", tag = "admin",
    params(("app" = String, Path), ("channel" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("admin_token" = []))
)]
pub async fn remove_provider(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams((app, channel)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let channel: Channel = channel
        .parse()
        .map_err(|error| ApiError::validation("channel", format!("{error}")))?;
    state
        .apps
        .remove_provider(&app, channel)
        .await
        .map_err(apps_error)?;
    Ok(StatusCode::NO_CONTENT)
}
