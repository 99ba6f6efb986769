//! Profiles' preferences and the app's categories in Redis, read and written one way by every
//! service that changes them: the accepter (the app's key), the deliverer (the user's own
//! token, from the browser) and the dispatchers (STOP and START by SMS).

use std::collections::BTreeMap;

use redis::AsyncCommands;

use crate::model::{AppId, UserId};
use crate::redis::RedisConnection;

use super::profile::{
    Category, Preferences, categories_key, preference_channel, profile_key, profiles_in_use_key,
};

/// Why preferences were not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A value is not acceptable: the JSON Pointer of the field and why.
    #[error("{field}: {detail}")]
    Invalid {
        /// The field at fault (`/categories/news`).
        field: String,
        /// Why.
        detail: String,
    },
    /// Redis did not answer.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

fn invalid(field: String, detail: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        detail: detail.into(),
    }
}

const CHANNEL_NAMES: &str = "a channel (sms, email, apns, fcm, webpush, http, ws) or push";

/// The app's categories, by key (one that does not read is left out).
pub async fn categories(
    redis: &mut RedisConnection,
    app: &AppId,
) -> redis::RedisResult<BTreeMap<String, Category>> {
    let all: BTreeMap<String, String> = redis.hgetall(categories_key(app)).await?;
    Ok(all
        .into_iter()
        .filter_map(|(key, json)| Some((key, serde_json::from_str(&json).ok()?)))
        .collect())
}

/// Checks `preferences`: channel names (or `push`) and categories the app has.
pub async fn check_preferences(
    redis: &mut RedisConnection,
    app: &AppId,
    preferences: &Preferences,
) -> Result<(), StoreError> {
    if let Some(name) = preferences
        .channels
        .keys()
        .find(|name| !preference_channel(name))
    {
        return Err(invalid(format!("/channels/{name}"), CHANNEL_NAMES));
    }
    if preferences.categories.is_empty() {
        return Ok(());
    }
    let known = categories(redis, app).await?;
    for (key, chosen) in &preferences.categories {
        if !known.contains_key(key) {
            return Err(invalid(
                format!("/categories/{key}"),
                format!("no category {key}; create it with PUT /v1/categories/{{key}}"),
            ));
        }
        if let Some(name) = chosen
            .channels
            .keys()
            .find(|name| !preference_channel(name))
        {
            return Err(invalid(
                format!("/categories/{key}/channels/{name}"),
                CHANNEL_NAMES,
            ));
        }
    }
    Ok(())
}

/// Checks and stores `user`'s preferences.
pub async fn store_preferences(
    redis: &mut RedisConnection,
    app: &AppId,
    user: &UserId,
    preferences: &Preferences,
) -> Result<(), StoreError> {
    check_preferences(redis, app, preferences).await?;
    write_preferences(redis, app, user, preferences).await?;
    Ok(())
}

async fn write_preferences(
    redis: &mut RedisConnection,
    app: &AppId,
    user: &UserId,
    preferences: &Preferences,
) -> redis::RedisResult<()> {
    let json = serde_json::to_string(preferences).unwrap_or_else(|_| "{}".into());
    redis
        .hset::<_, _, _, ()>(profile_key(app, user), "preferences", json)
        .await?;
    mark_in_use(redis, app).await
}

/// Marks the app as one whose messages read profiles (see [`profiles_in_use_key`]).
pub async fn mark_in_use(redis: &mut RedisConnection, app: &AppId) -> redis::RedisResult<()> {
    redis.set::<_, _, ()>(profiles_in_use_key(app), 1).await
}

/// `user`'s preferences (none stored: everything on).
pub async fn load_preferences(
    redis: &mut RedisConnection,
    app: &AppId,
    user: &UserId,
) -> redis::RedisResult<Preferences> {
    let json: Option<String> = redis.hget(profile_key(app, user), "preferences").await?;
    Ok(json
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default())
}

/// What a STOP or START by SMS changed: `sms` for the channel as a whole, else the categories
/// whose `sms` it set.
pub async fn set_sms(
    redis: &mut RedisConnection,
    app: &AppId,
    user: &UserId,
    on: bool,
) -> redis::RedisResult<Vec<String>> {
    let stoppable: Vec<String> = categories(redis, app)
        .await?
        .into_iter()
        .filter(|(_, category)| category.stop_by_sms && !category.required)
        .map(|(key, _)| key)
        .collect();
    let mut preferences = load_preferences(redis, app, user).await?;
    let changed = if stoppable.is_empty() {
        preferences.channels.insert("sms".into(), on);
        vec!["sms".to_owned()]
    } else {
        for key in &stoppable {
            let chosen = preferences.categories.entry(key.clone()).or_default();
            chosen.channels.insert("sms".into(), on);
        }
        stoppable
    };
    write_preferences(redis, app, user, &preferences).await?;
    Ok(changed)
}
