//! Group membership: `PUT|DELETE /v1/groups/{group}/members/{user}` and
//! `GET /v1/groups/{group}/members`. Members are kept in `group_shards` sets, once for all
//! members and once per channel for the members that registered on it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{Channel, GroupId, UserId};
use sprayer_shared::redis::{
    endpoints_key, group_channel_key, group_members_key, group_size_key, shard_of, user_groups_key,
};
use utoipa::ToSchema;

use crate::extract::{PathParams, QueryParams};
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::{PageQuery, checked_id, cursor};
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
    let app = &caller.app;
    let shard = shard_of(&user, state.settings.redis.group_shards);
    let mut redis = state.redis.clone();
    // The count is checked before the add: adds racing each other may pass the limit by as
    // many as run at once.
    let max = state
        .settings
        .accepter
        .limits(app.as_str())
        .max_group_members;
    let (member, count): (bool, Option<u64>) = redis::pipe()
        .sismember(group_members_key(app, &group, shard), user.as_str())
        .get(group_size_key(app, &group))
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    if !member && count.unwrap_or(0) >= max {
        return Err(ApiError::conflict(format!(
            "{group} has {max} members, as many as this app may put in one group"
        ))
        .at("group"));
    }
    let mut pipe = redis::pipe();
    pipe.sadd(user_groups_key(app, &user), group.as_str())
        .ignore();
    pipe.sadd(group_members_key(app, &group, shard), user.as_str());
    for channel in Channel::ALL {
        pipe.exists(endpoints_key(app, &user, channel));
    }
    let (added, has): (i64, Vec<bool>) = {
        let reply: Vec<redis::Value> = pipe
            .query_async(&mut redis)
            .await
            .map_err(|error| ApiError::unavailable("redis", &error))?;
        let mut values = reply.into_iter();
        let added = values
            .next()
            .map(|value| redis::from_redis_value::<i64>(value).unwrap_or(0))
            .unwrap_or(0);
        (
            added,
            values
                .map(|value| redis::from_redis_value::<bool>(value).unwrap_or(false))
                .collect(),
        )
    };
    let registered: Vec<Channel> = Channel::ALL
        .into_iter()
        .zip(has)
        .filter_map(|(channel, has)| has.then_some(channel))
        .collect();
    if added > 0 || !registered.is_empty() {
        let mut pipe = redis::pipe();
        if added > 0 {
            pipe.incr(group_size_key(app, &group), 1).ignore();
        }
        for channel in registered {
            pipe.sadd(
                group_channel_key(app, &group, channel, shard),
                user.as_str(),
            )
            .ignore();
        }
        pipe.query_async::<()>(&mut redis)
            .await
            .map_err(|error| ApiError::unavailable("redis", &error))?;
    }
    Ok(if added > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
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
