//! A user's endpoints: `PUT|DELETE /v1/users/{user}/endpoints/{channel}/{device}`,
//! `GET /v1/users/{user}/endpoints`, and `POST /v1/endpoints` to register many at once (an
//! import). Registering or removing an endpoint keeps the user's groups' per-channel sets right.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{
    AppId, Channel, DeviceId, GroupId, IdError, SmsEndpoint, UserId, WebhookAddress,
};
use sprayer_shared::netguard::AddressGuard;
use sprayer_shared::redis::{
    endpoints_key, group_channel_key, msisdn_owner_key, shard_of, user_groups_key,
};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::problem::{ApiError, Problem};
use crate::state::{AppState, Caller};

/// An endpoint as listed: the secret is never shown in full.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointView {
    /// The channel.
    pub channel: String,
    /// The device id.
    pub device: String,
    /// The address, with secrets redacted.
    #[schema(value_type = Object)]
    pub address: serde_json::Value,
}

/// A page of endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointPage {
    /// The endpoints, ordered by channel then device.
    pub items: Vec<EndpointView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

impl PageQuery {
    /// The page size, checked.
    pub fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if (1..=1000).contains(&limit) {
            Ok(limit as usize)
        } else {
            Err(ApiError::validation("limit", "must be between 1 and 1000"))
        }
    }

    /// The cursor's text, checked.
    pub fn cursor_text(&self) -> Result<Option<String>, ApiError> {
        self.cursor
            .as_deref()
            .map(|cursor| {
                URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| ApiError::validation("cursor", "not a cursor this API gave"))
            })
            .transpose()
    }
}

/// Encodes a cursor's text.
pub fn cursor(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text.as_bytes())
}

/// Parses a path identifier, naming the parameter when it is refused.
pub fn checked_id<T: TryFrom<String, Error = IdError>>(
    name: &str,
    value: &str,
) -> Result<T, ApiError> {
    T::try_from(value.to_owned()).map_err(|error| {
        ApiError::validation(name, format!("{} {error}", name.trim_start_matches('/')))
    })
}

/// Checks each user id of a list (errors name `{field}/{index}`); the distinct ones, in order.
pub fn checked_users(field: &str, values: &[String]) -> Result<Vec<UserId>, ApiError> {
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    let mut users = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let user = checked_id::<UserId>(&format!("{field}/{index}"), value)?;
        if seen.insert(user.clone()) {
            users.push(user);
        }
    }
    Ok(users)
}

/// Parses a channel this installation serves; `field` names it when it is refused.
fn served_channel(state: &AppState, field: &str, name: &str) -> Result<Channel, ApiError> {
    let channel: Channel = name
        .parse()
        .map_err(|error| ApiError::validation(field, format!("{error}")))?;
    if !state.settings.accepter.channels.contains(&channel) {
        return Err(ApiError::validation(
            field,
            format!("channel {channel} is not served by this installation"),
        ));
    }
    Ok(channel)
}

/// Checks an address for `channel` and returns what is stored; `at` is the JSON Pointer of the
/// address in the body (empty when the body is the address), under which a refused field is
/// named. A webhook URL whose host is a literal address outside the public internet is refused
/// unless `webhook.allow_networks` holds it (names are checked by the dispatcher each time
/// they are resolved).
fn stored_address(
    state: &AppState,
    channel: Channel,
    raw: &[u8],
    at: &str,
) -> Result<String, ApiError> {
    let stored = sprayer_shared::model::parse_address(channel, raw).map_err(|error| {
        let field = match error.field {
            "/" if !at.is_empty() => at.to_owned(),
            field if field.starts_with('/') => format!("{at}{field}"),
            field => format!("{at}/{field}"),
        };
        ApiError::validation(field, error.reason)
    })?;
    if channel == Channel::Http {
        let url = serde_json::from_str::<WebhookAddress>(&stored)
            .map(|address| address.url)
            .unwrap_or_default();
        reachable_url(state, &url, &format!("{at}/url"))?;
    }
    Ok(stored)
}

/// Refuses a webhook URL (at `field`) whose host is a literal address outside the public
/// internet, unless `webhook.allow_networks` holds it; names are checked each time they are
/// resolved.
pub fn reachable_url(state: &AppState, url: &str, field: &str) -> Result<(), ApiError> {
    let guard = AddressGuard::new(&state.settings.webhook.allow_networks);
    let url = url::Url::parse(url).ok();
    if let Some(host) = url.as_ref().and_then(url::Url::host)
        && !guard.permits_host(&host)
    {
        return Err(ApiError::validation(
            field,
            format!(
                "{host} is not a public address; webhooks may reach it only when the operator allows its network (webhook.allow_networks)"
            ),
        ));
    }
    Ok(())
}

fn redacted(channel: Channel, stored: &str) -> serde_json::Value {
    sprayer_shared::model::redacted_address(channel, stored)
}

/// Register or replace an endpoint.
#[utoipa::path(
    put, path = "/v1/users/{user}/endpoints/{channel}/{device}", tag = "endpoints",
    params(("user" = String, Path), ("channel" = String, Path), ("device" = String, Path)),
    request_body(content = Object, description = "The address; its shape depends on the channel: http {url, secret}, email {address}, apns and fcm {token}, webpush (a PushSubscription), sms {msisdn}, ws {} (opens the user's inbox)"),
    responses(
        (status = 201, description = "Registered", body = EndpointView),
        (status = 200, description = "Replaced", body = EndpointView),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((user, channel, device)): PathParams<(String, String, String)>,
    body: JsonBody<serde_json::Value>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let channel = served_channel(&state, "channel", &channel)?;
    let device = checked_id::<DeviceId>("device", &device)?;
    let registration = Registration {
        stored: stored_address(&state, channel, &body.raw, "")?,
        user,
        channel,
        device,
    };
    let created = register_all(&state, &caller.app, std::slice::from_ref(&registration)).await?;
    let status = if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(registration.view())))
}

/// Endpoints to register in one request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoints {
    /// 1 to 1,000 endpoints, each of a different user, channel and device.
    pub endpoints: Vec<NewEndpoint>,
}

/// One endpoint of [`NewEndpoints`]: what `PUT /v1/users/{user}/endpoints/{channel}/{device}`
/// takes in its path and body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// The user id.
    pub user: String,
    /// The channel.
    pub channel: String,
    /// The device id.
    pub device: String,
    /// The address, shaped as the channel asks (see the `PUT`).
    #[schema(value_type = Object)]
    pub address: serde_json::Value,
}

/// What registering several endpoints did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegisteredEndpoints {
    /// Endpoints that were not registered before.
    pub created: u64,
    /// Endpoints whose address was replaced.
    pub replaced: u64,
}

/// Endpoints one `POST /v1/endpoints` registers at most.
pub const MAX_NEW_ENDPOINTS: usize = 1000;

/// Register up to 1,000 endpoints of any users at once.
#[utoipa::path(
    post, path = "/v1/endpoints", tag = "endpoints",
    request_body = NewEndpoints,
    responses(
        (status = 200, description = "Every endpoint is registered now", body = RegisteredEndpoints),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid value, named as `/endpoints/<index>/...`; none was registered", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<NewEndpoints>,
) -> Result<Json<RegisteredEndpoints>, ApiError> {
    let requested = body.value.endpoints;
    if requested.is_empty() || requested.len() > MAX_NEW_ENDPOINTS {
        return Err(ApiError::validation(
            "/endpoints",
            format!("give 1 to {MAX_NEW_ENDPOINTS} endpoints"),
        ));
    }
    let mut first_of = HashMap::with_capacity(requested.len());
    let mut registrations = Vec::with_capacity(requested.len());
    for (index, endpoint) in requested.iter().enumerate() {
        let at = format!("/endpoints/{index}");
        let user = checked_id::<UserId>(&format!("{at}/user"), &endpoint.user)?;
        let channel = served_channel(&state, &format!("{at}/channel"), &endpoint.channel)?;
        let device = checked_id::<DeviceId>(&format!("{at}/device"), &endpoint.device)?;
        let address = serde_json::to_vec(&endpoint.address).unwrap_or_default();
        let stored = stored_address(&state, channel, &address, &format!("{at}/address"))?;
        match first_of.entry((user.clone(), channel, device.clone())) {
            Entry::Occupied(first) => {
                return Err(ApiError::validation(
                    at,
                    format!(
                        "names the same user, channel and device as /endpoints/{}",
                        first.get()
                    ),
                ));
            }
            Entry::Vacant(slot) => slot.insert(index),
        };
        registrations.push(Registration {
            user,
            channel,
            device,
            stored,
        });
    }
    let created = register_all(&state, &caller.app, &registrations).await?;
    Ok(Json(RegisteredEndpoints {
        created,
        replaced: registrations.len() as u64 - created,
    }))
}

/// An endpoint checked and ready to store.
#[derive(Debug)]
pub struct Registration {
    /// Whose it is.
    pub user: UserId,
    /// Its channel.
    pub channel: Channel,
    /// The device id.
    pub device: DeviceId,
    /// The address as stored in Redis.
    pub stored: String,
}

impl Registration {
    /// The endpoint as answered: its secrets redacted.
    fn view(&self) -> EndpointView {
        EndpointView {
            channel: self.channel.to_string(),
            device: self.device.to_string(),
            address: redacted(self.channel, &self.stored),
        }
    }
}

/// Stores endpoints and adds each user to their groups' sets of the endpoint's channel, in two
/// Redis pipelines whatever their number; returns how many are new.
pub async fn register_all(
    state: &AppState,
    app: &AppId,
    registrations: &[Registration],
) -> Result<u64, ApiError> {
    let mut users: Vec<&UserId> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut pipe = redis::pipe();
    for registration in registrations {
        pipe.hset(
            endpoints_key(app, &registration.user, registration.channel),
            registration.device.as_str(),
            &registration.stored,
        );
        if registration.channel == Channel::Sms
            && let Ok(sms) = serde_json::from_str::<SmsEndpoint>(&registration.stored)
        {
            pipe.hset(
                msisdn_owner_key(app),
                sms.msisdn,
                registration.user.as_str(),
            )
            .ignore();
        }
        if seen.insert(&registration.user) {
            users.push(&registration.user);
        }
    }
    for user in &users {
        pipe.smembers(user_groups_key(app, user));
    }
    let mut redis = state.redis.clone();
    let reply: Vec<redis::Value> = pipe
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let mut values = reply.into_iter();
    let created: u64 = values
        .by_ref()
        .take(registrations.len())
        .map(|value| redis::from_redis_value::<u64>(value).unwrap_or(0))
        .sum();
    let groups: HashMap<&UserId, Vec<GroupId>> = users
        .into_iter()
        .zip(values)
        .map(|(user, value)| {
            let names = redis::from_redis_value::<Vec<String>>(value).unwrap_or_default();
            let groups = names
                .into_iter()
                .filter_map(|name| GroupId::parse(name).ok())
                .collect();
            (user, groups)
        })
        .collect();
    let shards = state.settings.redis.group_shards;
    let mut pipe = redis::pipe();
    let mut writes = 0;
    for registration in registrations {
        let user = &registration.user;
        for group in groups.get(user).into_iter().flatten() {
            pipe.sadd(
                group_channel_key(app, group, registration.channel, shard_of(user, shards)),
                user.as_str(),
            )
            .ignore();
            writes += 1;
        }
    }
    if writes > 0 {
        pipe.query_async::<()>(&mut redis)
            .await
            .map_err(|error| ApiError::unavailable("redis", &error))?;
    }
    Ok(created)
}

/// Remove an endpoint.
#[utoipa::path(
    delete, path = "/v1/users/{user}/endpoints/{channel}/{device}", tag = "endpoints",
    params(("user" = String, Path), ("channel" = String, Path), ("device" = String, Path)),
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
    PathParams((user, channel, device)): PathParams<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let channel: Channel = channel
        .parse()
        .map_err(|error| ApiError::validation("channel", format!("{error}")))?;
    let device = checked_id::<DeviceId>("device", &device)?;
    let shards = state.settings.redis.group_shards;
    let mut redis = state.redis.clone();
    let removed = sprayer_shared::redis::remove_endpoint(
        &mut redis,
        &caller.app,
        &user,
        channel,
        &device,
        shards,
    )
    .await
    .map_err(|error| ApiError::unavailable("redis", &error))?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "user {user} has no {channel} endpoint {device}"
        )))
    }
}

/// List a user's endpoints.
#[utoipa::path(
    get, path = "/v1/users/{user}/endpoints", tag = "endpoints",
    params(("user" = String, Path), PageQuery),
    responses(
        (status = 200, body = EndpointPage),
        (status = 404, description = "The user has no endpoints", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<EndpointPage>, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let limit = page.limit()?;
    let after = page.cursor_text()?;
    let mut redis = state.redis.clone();
    let mut pipe = redis::pipe();
    for channel in Channel::ALL {
        pipe.hgetall(endpoints_key(&caller.app, &user, channel));
    }
    let per_channel: Vec<HashMap<String, String>> = pipe
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let mut all: Vec<(String, Channel, String, String)> = Channel::ALL
        .into_iter()
        .zip(per_channel)
        .flat_map(|(channel, devices)| {
            devices.into_iter().map(move |(device, stored)| {
                (format!("{channel}/{device}"), channel, device, stored)
            })
        })
        .collect();
    if all.is_empty() {
        return Err(ApiError::not_found(format!("user {user} has no endpoints")).at("user"));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let start = after.map_or(0, |after| all.partition_point(|entry| entry.0 <= after));
    let rest = &all[start.min(all.len())..];
    let items: Vec<EndpointView> = rest
        .iter()
        .take(limit)
        .map(|(_, channel, device, stored)| EndpointView {
            channel: channel.to_string(),
            device: device.clone(),
            address: redacted(*channel, stored),
        })
        .collect();
    let next_cursor = (rest.len() > limit).then(|| cursor(&rest[limit - 1].0));
    Ok(Json(EndpointPage { items, next_cursor }))
}
