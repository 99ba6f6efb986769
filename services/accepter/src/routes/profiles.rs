//! User profiles, preferences and the app's categories: `PUT/GET/DELETE /v1/users/{user}`,
//! `PUT/GET /v1/users/{user}/preferences`, `PUT/GET/DELETE /v1/categories/{key}` and
//! `GET /v1/categories`. Profiles and preferences live in one Redis hash per user
//! (`prof:{app:user}`), read in batches by the dispatchers and the deliverer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{AppId, GroupId, UserId};
use sprayer_shared::personal::profile::{
    Category, Preferences, Profile, categories_key, profile_key,
};
use sprayer_shared::personal::store::{self, StoreError};
use sprayer_shared::personal::template::canonical_locale;
use utoipa::ToSchema;

use crate::extract::{JsonBody, PathParams};
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::checked_id;
use crate::state::{AppState, Caller};

/// A category as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryView {
    /// Its key.
    pub key: String,
    /// A required category reaches every user, whatever their preferences.
    pub required: bool,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A STOP by SMS opts users out of this category's SMS rather than of all SMS.
    #[serde(default)]
    pub stop_by_sms: bool,
}

impl CategoryView {
    /// The view of category `key`.
    pub fn of(key: String, category: Category) -> CategoryView {
        CategoryView {
            key,
            required: category.required,
            description: category.description,
            stop_by_sms: category.stop_by_sms,
        }
    }
}

/// The app's categories.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryList {
    /// Every category, by key.
    pub items: Vec<CategoryView>,
}

fn redis_down(error: &redis::RedisError) -> ApiError {
    ApiError::unavailable("redis", error)
}

/// A category key checked: the rules of ids.
pub fn checked_category(field: &str, key: &str) -> Result<String, ApiError> {
    checked_id::<GroupId>(field, key).map(|key| key.as_str().to_owned())
}

/// The app's category `key`, if it has one.
pub async fn category(
    state: &AppState,
    app: &AppId,
    key: &str,
) -> Result<Option<Category>, ApiError> {
    let mut redis = state.redis.clone();
    let json: Option<String> = redis
        .hget(categories_key(app), key)
        .await
        .map_err(|error| redis_down(&error))?;
    Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
}

/// A profile checked: the locale canonical, a known time zone, quiet hours that parse.
pub fn checked_profile(mut profile: Profile) -> Result<Profile, ApiError> {
    if let Some(locale) = &profile.locale {
        profile.locale = Some(
            canonical_locale(locale).map_err(|detail| ApiError::validation("/locale", detail))?,
        );
    }
    if let Some(zone) = &profile.timezone
        && zone.parse::<chrono_tz::Tz>().is_err()
    {
        return Err(ApiError::validation(
            "/timezone",
            format!("{zone:?} is not an IANA time zone such as Europe/Paris or America/Montreal"),
        ));
    }
    if let Some((field, detail)) = profile
        .quiet_hours
        .as_ref()
        .and_then(|quiet| quiet.problem())
    {
        return Err(ApiError::validation(
            format!("/quiet_hours/{field}"),
            detail,
        ));
    }
    Ok(profile)
}

/// A store's refusal as an API error.
pub fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Invalid { field, detail } => ApiError::validation(field, detail),
        StoreError::Redis(error) => redis_down(&error),
    }
}

/// Store a user's profile.
#[utoipa::path(
    put, path = "/v1/users/{user}", tag = "users",
    params(("user" = String, Path)),
    request_body = Profile,
    responses(
        (status = 200, description = "Stored", body = Profile),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad locale tag, time zone or quiet hours", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is down", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn put_profile(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
    body: JsonBody<Profile>,
) -> Result<Json<Profile>, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let profile = checked_profile(body.value)?;
    let json = serde_json::to_string(&profile)
        .map_err(|error| ApiError::validation("/", error.to_string()))?;
    let mut redis = state.redis.clone();
    redis
        .hset::<_, _, _, ()>(profile_key(&caller.app, &user), "profile", json)
        .await
        .map_err(|error| redis_down(&error))?;
    store::mark_in_use(&mut redis, &caller.app)
        .await
        .map_err(|error| redis_down(&error))?;
    Ok(Json(profile))
}

/// Read a user's profile.
#[utoipa::path(
    get, path = "/v1/users/{user}", tag = "users",
    params(("user" = String, Path)),
    responses(
        (status = 200, description = "The profile", body = Profile),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No profile stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn get_profile(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
) -> Result<Json<Profile>, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let mut redis = state.redis.clone();
    let json: Option<String> = redis
        .hget(profile_key(&caller.app, &user), "profile")
        .await
        .map_err(|error| redis_down(&error))?;
    json.and_then(|json| serde_json::from_str(&json).ok())
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no profile for user {user}")))
}

/// Delete a user's profile and preferences.
#[utoipa::path(
    delete, path = "/v1/users/{user}", tag = "users",
    params(("user" = String, Path)),
    responses(
        (status = 204, description = "Deleted (or there was none)"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn delete_profile(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let mut redis = state.redis.clone();
    redis
        .del::<_, ()>(profile_key(&caller.app, &user))
        .await
        .map_err(|error| redis_down(&error))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a user's preferences.
#[utoipa::path(
    put, path = "/v1/users/{user}/preferences", tag = "users",
    params(("user" = String, Path)),
    request_body = Preferences,
    responses(
        (status = 200, description = "Stored", body = Preferences),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown channel or category", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn put_preferences(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
    body: JsonBody<Preferences>,
) -> Result<Json<Preferences>, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let mut redis = state.redis.clone();
    store::store_preferences(&mut redis, &caller.app, &user, &body.value)
        .await
        .map_err(store_error)?;
    Ok(Json(body.value))
}

/// Read a user's preferences.
#[utoipa::path(
    get, path = "/v1/users/{user}/preferences", tag = "users",
    params(("user" = String, Path)),
    responses(
        (status = 200, description = "The preferences (empty: everything on)", body = Preferences),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn get_preferences(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
) -> Result<Json<Preferences>, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let mut redis = state.redis.clone();
    store::load_preferences(&mut redis, &caller.app, &user)
        .await
        .map(Json)
        .map_err(|error| redis_down(&error))
}

/// Store a category.
#[utoipa::path(
    put, path = "/v1/categories/{key}", tag = "users",
    params(("key" = String, Path)),
    request_body = Category,
    responses(
        (status = 200, description = "Stored", body = CategoryView),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad key, or too many categories", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn put_category(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(key): PathParams<String>,
    body: JsonBody<Category>,
) -> Result<Json<CategoryView>, ApiError> {
    let key = checked_category("key", &key)?;
    let json = serde_json::to_string(&body.value)
        .map_err(|error| ApiError::validation("/", error.to_string()))?;
    let mut redis = state.redis.clone();
    let hash = categories_key(&caller.app);
    let (exists, count): (bool, usize) = redis::pipe()
        .hexists(&hash, &key)
        .hlen(&hash)
        .query_async(&mut redis)
        .await
        .map_err(|error| redis_down(&error))?;
    let most = state.settings.accepter.max_categories;
    if !exists && count >= most {
        return Err(ApiError::validation(
            "key",
            format!("an app keeps at most {most} categories; delete one first"),
        ));
    }
    redis
        .hset::<_, _, _, ()>(&hash, &key, json)
        .await
        .map_err(|error| redis_down(&error))?;
    Ok(Json(CategoryView::of(key, body.value)))
}

/// Read a category.
#[utoipa::path(
    get, path = "/v1/categories/{key}", tag = "users",
    params(("key" = String, Path)),
    responses(
        (status = 200, description = "The category", body = CategoryView),
        (status = 404, description = "No such category", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn get_category(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(key): PathParams<String>,
) -> Result<Json<CategoryView>, ApiError> {
    let key = checked_category("key", &key)?;
    let found = category(&state, &caller.app, &key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no category {key}")))?;
    Ok(Json(CategoryView::of(key, found)))
}

/// List the app's categories.
#[utoipa::path(
    get, path = "/v1/categories", tag = "users",
    responses(
        (status = 200, description = "Every category", body = CategoryList),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn list_categories(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<CategoryList>, ApiError> {
    let mut redis = state.redis.clone();
    let items = store::categories(&mut redis, &caller.app)
        .await
        .map_err(|error| redis_down(&error))?
        .into_iter()
        .map(|(key, category)| CategoryView::of(key, category))
        .collect();
    Ok(Json(CategoryList { items }))
}

/// Delete a category; users' settings for it stay, unused, until they change them.
#[utoipa::path(
    delete, path = "/v1/categories/{key}", tag = "users",
    params(("key" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such category", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn delete_category(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(key): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let key = checked_category("key", &key)?;
    let mut redis = state.redis.clone();
    let removed: u64 = redis
        .hdel(categories_key(&caller.app), &key)
        .await
        .map_err(|error| redis_down(&error))?;
    if removed == 0 {
        return Err(ApiError::not_found(format!("no category {key}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
