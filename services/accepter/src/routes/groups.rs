//! Group membership: `PUT|DELETE /v1/groups/{group}/members/{user}`, and
//! `POST|GET /v1/groups/{group}/members` to add many users at once or list them. Members are kept in `group_shards` sets, once for all
//! members and once per channel for the members that registered on it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{AppId, Channel, GroupId, UserId};
use sprayer_shared::redis::{
    endpoints_key, group_channel_key, group_members_key, group_size_key, shard_of, user_groups_key,
};
use utoipa::ToSchema;

use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::{PageQuery, checked_id, checked_users, cursor};
use crate::state::{AppState, Caller};

/// A page of group members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberPage {
    /// User ids; a page holds about `limit` of them, in no particular order.
    pub items: Vec<String>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Users to add to a group in one request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMembers {
    /// User ids, 1 to 1,000; a repeated id counts once.
    pub users: Vec<String>,
}

/// What adding several users did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddedMembers {
    /// Users that were not members before.
    pub added: u64,
    /// Users that already were.
    pub present: u64,
}

/// Users one `POST /v1/groups/{group}/members` adds at most.
pub const MAX_NEW_MEMBERS: usize = 1000;

/// Add a user to a group.
#[utoipa::path(
    put, path = "/v1/groups/{group}/members/{user}", tag = "groups",
    params(("group" = String, Path), ("user" = String, Path)),
    responses(
        (status = 201, description = "Added"),
        (status = 200, description = "Already a member"),
        (status = 409, description = "The group has as many members as the app may put in one", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((group, user)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let group = checked_id::<GroupId>("group", &group)?;
    let user = checked_id::<UserId>("user", &user)?;
    let added = add_members(&state, &caller.app, &group, &[user]).await?;
    Ok(if added > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

/// Add up to 1,000 users to a group at once.
#[utoipa::path(
    post, path = "/v1/groups/{group}/members", tag = "groups",
    params(("group" = String, Path)),
    request_body = NewMembers,
    responses(
        (status = 200, description = "Every user is a member now", body = AddedMembers),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new members would take the group past the app's limit; none was added", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid value; none was added", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(group): PathParams<String>,
    body: JsonBody<NewMembers>,
) -> Result<Json<AddedMembers>, ApiError> {
    let group = checked_id::<GroupId>("group", &group)?;
    let requested = body.value.users;
    if requested.is_empty() || requested.len() > MAX_NEW_MEMBERS {
        return Err(ApiError::validation(
            "/users",
            format!("give 1 to {MAX_NEW_MEMBERS} users"),
        ));
    }
    let users = checked_users("/users", &requested)?;
    let added = add_members(&state, &caller.app, &group, &users).await?;
    Ok(Json(AddedMembers {
        added,
        present: users.len() as u64 - added,
    }))
}

/// Adds distinct `users` to `group` (and to the group's set of each channel a user has
/// registered on), after checking that the new ones keep the group within the app's limit;
/// returns how many were new. Adds racing each other may pass the limit by as many as run at
/// once: the count is read before the add.
async fn add_members(
    state: &AppState,
    app: &AppId,
    group: &GroupId,
    users: &[UserId],
) -> Result<u64, ApiError> {
    let shards = state.settings.redis.group_shards;
    let max = state
        .settings
        .accepter
        .limits(app.as_str())
        .max_group_members;
    let mut redis = state.redis.clone();
    let mut pipe = redis::pipe();
    pipe.get(group_size_key(app, group));
    for user in users {
        pipe.sismember(
            group_members_key(app, group, shard_of(user, shards)),
            user.as_str(),
        );
    }
    let reply: Vec<redis::Value> = pipe
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let mut values = reply.into_iter();
    let count = values
        .next()
        .and_then(|value| redis::from_redis_value::<Option<u64>>(value).ok().flatten())
        .unwrap_or(0);
    let new = values
        .map(|value| redis::from_redis_value::<bool>(value).unwrap_or(false))
        .filter(|member| !member)
        .count() as u64;
    if new > 0 && count.saturating_add(new) > max {
        return Err(ApiError::conflict(format!(
            "{group} has {count} members and may have {max}; {new} more would pass that"
        ))
        .at("group"));
    }

    let mut pipe = redis::pipe();
    for user in users {
        pipe.sadd(user_groups_key(app, user), group.as_str())
            .ignore();
        pipe.sadd(
            group_members_key(app, group, shard_of(user, shards)),
            user.as_str(),
        );
        for channel in Channel::ALL {
            pipe.exists(endpoints_key(app, user, channel));
        }
    }
    let reply: Vec<redis::Value> = pipe
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let mut values = reply.into_iter();
    let mut added = 0u64;
    let mut pipe = redis::pipe();
    let mut writes = 0;
    for user in users {
        let shard = shard_of(user, shards);
        added += values
            .next()
            .map(|value| redis::from_redis_value::<u64>(value).unwrap_or(0))
            .unwrap_or(0);
        for channel in Channel::ALL {
            let has = values
                .next()
                .is_some_and(|value| redis::from_redis_value::<bool>(value).unwrap_or(false));
            if has {
                pipe.sadd(group_channel_key(app, group, channel, shard), user.as_str())
                    .ignore();
                writes += 1;
            }
        }
    }
    if added > 0 {
        pipe.incr(group_size_key(app, group), added).ignore();
        writes += 1;
    }
    if writes > 0 {
        pipe.query_async::<()>(&mut redis)
            .await
            .map_err(|error| ApiError::unavailable("redis", &error))?;
    }
    Ok(added)
}

/// Remove a user from a group.
#[utoipa::path(
    delete, path = "/v1/groups/{group}/members/{user}", tag = "groups",
    params(("group" = String, Path), ("user" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((group, user)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let group = checked_id::<GroupId>("group", &group)?;
    let user = checked_id::<UserId>("user", &user)?;
    let app = &caller.app;
    let shard = shard_of(&user, state.settings.redis.group_shards);
    let mut pipe = redis::pipe();
    pipe.srem(group_members_key(app, &group, shard), user.as_str());
    pipe.srem(user_groups_key(app, &user), group.as_str())
        .ignore();
    for channel in Channel::ALL {
        pipe.srem(
            group_channel_key(app, &group, channel, shard),
            user.as_str(),
        )
        .ignore();
    }
    let mut redis = state.redis.clone();
    let (removed,): (i64,) = pipe
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    if removed > 0 {
        redis::cmd("DECR")
            .arg(group_size_key(app, &group))
            .query_async::<()>(&mut redis)
            .await
            .map_err(|error| ApiError::unavailable("redis", &error))?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "{user} is not a member of {group}"
        )))
    }
}

/// List a group's members.
#[utoipa::path(
    get, path = "/v1/groups/{group}/members", tag = "groups",
    params(("group" = String, Path), PageQuery),
    responses(
        (status = 200, body = MemberPage),
        (status = 404, description = "The group has no members", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(group): PathParams<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let group = checked_id::<GroupId>("group", &group)?;
    let limit = page.limit()?;
    let shards = state.settings.redis.group_shards;
    let (mut shard, mut scan) = match page.cursor_text()? {
        None => (0u16, 0u64),
        Some(text) => text
            .split_once('.')
            .and_then(|(shard, scan)| Some((shard.parse().ok()?, scan.parse().ok()?)))
            .filter(|(shard, _)| *shard < shards)
            .ok_or_else(|| ApiError::validation("cursor", "not a cursor this API gave"))?,
    };
    let mut redis = state.redis.clone();
    if page.cursor.is_none() {
        let mut pipe = redis::pipe();
        for shard in 0..shards {
            pipe.scard(group_members_key(&caller.app, &group, shard));
        }
        let sizes: Vec<u64> = pipe
            .query_async(&mut redis)
            .await
            .map_err(|error| ApiError::unavailable("redis", &error))?;
        if sizes.iter().all(|&size| size == 0) {
            return Err(ApiError::not_found(format!("group {group} has no members")).at("group"));
        }
    }
    let mut items = Vec::new();
    while shard < shards && items.len() < limit {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(group_members_key(&caller.app, &group, shard))
            .arg(scan)
            .arg("COUNT")
            .arg(limit - items.len())
            .query_async(&mut redis)
            .await
            .map_err(|error| ApiError::unavailable("redis", &error))?;
        items.extend(batch);
        if next == 0 {
            shard += 1;
            scan = 0;
        } else {
            scan = next;
        }
    }
    let next_cursor = (shard < shards).then(|| cursor(&format!("{shard}.{scan}")));
    Ok(Json(MemberPage { items, next_cursor }))
}
