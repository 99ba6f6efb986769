//! Delivery orchestration at the API: escalation steps and named policies (`delivery`),
//! scheduled sends (`send_at`), cancellation (`DELETE /v1/messages/{id}`,
//! `POST /v1/cancellations`). The scheduler runs what is planned here (see
//! [`sprayer_shared::schedule`]).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mongodb::bson::doc;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sprayer_shared::config::AccepterSettings;
use sprayer_shared::model::{Channel, MessageId, Plan, StatusBatch, Step, Until, UserId};
use sprayer_shared::schedule::{self, Keys, policies_key};
use utoipa::ToSchema;

use crate::extract::{JsonBody, PathParams};
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::{checked_id, checked_users};
use crate::state::{AppState, Caller};

/// How a message reaches each recipient: escalation `steps`, or a named `policy` holding them.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverySpec {
    /// The steps, in order: each runs on the channels where the user has an endpoint, and the
    /// next starts when `wait` ends unless `until` was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepSpec>>,
    /// A policy stored with `PUT /v1/policies/{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// One escalation step as given.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The channels of the step; a channel is in one step at most.
    pub channels: Vec<String>,
    /// How long to wait for `until` before the next step (`30s`, `2m`, `1h`); required on
    /// every step but the last, which has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    /// `sent`, `delivered` (the default) or `acked` (only on steps with `ws`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl StepSpec {
    /// The step as the API shows it.
    pub fn of(step: &Step) -> StepSpec {
        StepSpec {
            channels: step
                .channels
                .iter()
                .map(|channel| channel.as_str().to_owned())
                .collect(),
            wait: step
                .wait_ms
                .map(|ms| humantime::format_duration(Duration::from_millis(ms)).to_string()),
            until: Some(step.until.as_str().to_owned()),
        }
    }
}

/// Checks steps as given; errors name `{field}/{index}/...`.
pub fn checked_steps(
    specs: &[StepSpec],
    limits: &AccepterSettings,
    field: &str,
) -> Result<Vec<Step>, ApiError> {
    if specs.is_empty() {
        return Err(ApiError::validation(field, "give at least one step"));
    }
    if specs.len() > limits.max_steps {
        return Err(ApiError::validation(
            field,
            format!("at most {} steps", limits.max_steps),
        ));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let at = format!("{field}/{index}");
        if spec.channels.is_empty() {
            return Err(ApiError::validation(
                format!("{at}/channels"),
                "give at least one channel",
            ));
        }
        let mut channels = Vec::with_capacity(spec.channels.len());
        for (position, name) in spec.channels.iter().enumerate() {
            let channel_field = format!("{at}/channels/{position}");
            let channel: Channel = name
                .parse()
                .map_err(|error| ApiError::validation(&channel_field, format!("{error}")))?;
            if !limits.channels.contains(&channel) {
                return Err(ApiError::validation(
                    channel_field,
                    format!("channel {channel} is not served by this installation"),
                ));
            }
            if let Some(earlier) = steps
                .iter()
                .position(|step| step.channels.contains(&channel))
            {
                return Err(ApiError::validation(
                    channel_field,
                    format!(
                        "channel {channel} is in step {earlier} already; a channel is in one step at most"
                    ),
                ));
            }
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        let last = index + 1 == specs.len();
        let wait_ms = match (&spec.wait, last) {
            (None, true) => None,
            (Some(_), true) => {
                return Err(ApiError::validation(
                    format!("{at}/wait"),
                    "the last step has no wait: nothing follows it",
                ));
            }
            (None, false) => {
                return Err(ApiError::validation(
                    format!("{at}/wait"),
                    "give how long to wait before the next step (such as 2m)",
                ));
            }
            (Some(text), false) => {
                let wait = humantime::parse_duration(text).map_err(|error| {
                    ApiError::validation(
                        format!("{at}/wait"),
                        format!("not a duration such as 30s, 2m or 1h: {error}"),
                    )
                })?;
                if wait < Duration::from_secs(1) {
                    return Err(ApiError::validation(
                        format!("{at}/wait"),
                        "must be at least 1s",
                    ));
                }
                Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
            }
        };
        let until = match &spec.until {
            None => Until::default(),
            Some(name) => Until::parse(name).ok_or_else(|| {
                ApiError::validation(format!("{at}/until"), "must be sent, delivered or acked")
            })?,
        };
        if until == Until::Acked && !channels.contains(&Channel::Ws) {
            return Err(ApiError::validation(
                format!("{at}/until"),
                "acked is only met on ws: add ws to the step or wait for delivered",
            ));
        }
        steps.push(Step {
            channels,
            wait_ms,
            until,
        });
    }
    Ok(steps)
}

/// Checks that the steps' waits end before the message expires.
pub fn check_waits_fit(steps: &[Step], ttl: Duration, field: &str) -> Result<(), ApiError> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut total: u64 = 0;
    for (index, step) in steps.iter().enumerate() {
        let Some(wait) = step.wait_ms else { continue };
        total = total.saturating_add(wait);
        if total >= ttl_ms {
            return Err(ApiError::validation(
                format!("{field}/{index}/wait"),
                format!(
                    "the waits up to this step ({}) are not shorter than the message's TTL ({}): the next step could never run",
                    humantime::format_duration(Duration::from_millis(total)),
                    humantime::format_duration(ttl)
                ),
            ));
        }
    }
    Ok(())
}

/// A cancellation key as given: 1 to 255 visible ASCII characters.
pub fn checked_cancel_key(field: &str, key: &str) -> Result<String, ApiError> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(
            field,
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

/// The scheduler's key names for this installation.
pub fn keys(state: &AppState) -> Keys {
    Keys::new(&state.settings.amqp.prefix)
}

/// The steps of the app's policy `name`, if it has one.
pub async fn policy_steps(
    state: &AppState,
    app: &sprayer_shared::model::AppId,
    name: &str,
) -> Result<Option<Vec<Step>>, ApiError> {
    let mut redis = state.redis.clone();
    let json: Option<String> = redis
        .hget(policies_key(app), name)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
}

/// A named policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Its name (as in the path; absent in a request body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its steps.
    pub steps: Vec<StepSpec>,
}

/// The app's policies.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyList {
    /// Every policy, by name.
    pub items: Vec<Policy>,
}

fn checked_policy_name(name: &str) -> Result<String, ApiError> {
    checked_id::<sprayer_shared::model::GroupId>("name", name).map(|name| name.as_str().to_owned())
}

/// Store a policy.
#[utoipa::path(
    put, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)),
    request_body = Policy,
    responses(
        (status = 200, description = "Stored (created or replaced)", body = Policy),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid steps", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Redis is down", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
    body: JsonBody<Policy>,
) -> Result<Json<Policy>, ApiError> {
    let name = checked_policy_name(&name)?;
    if body.value.name.as_ref().is_some_and(|given| *given != name) {
        return Err(ApiError::validation(
            "/name",
            "the name in the body differs from the path; leave it out",
        ));
    }
    let steps = checked_steps(&body.value.steps, &state.settings.accepter, "/steps")?;
    let json = serde_json::to_string(&steps)
        .map_err(|error| ApiError::validation("/steps", error.to_string()))?;
    let mut redis = state.redis.clone();
    let key = policies_key(&caller.app);
    let (exists, count): (bool, usize) = redis::pipe()
        .hexists(&key, &name)
        .hlen(&key)
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let most = state.settings.accepter.max_policies;
    if !exists && count >= most {
        return Err(ApiError::validation(
            "name",
            format!("an app keeps at most {most} policies; delete one first"),
        ));
    }
    redis
        .hset::<_, _, _, ()>(&key, &name, json)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    Ok(Json(Policy {
        name: Some(name),
        steps: steps.iter().map(StepSpec::of).collect(),
    }))
}

/// Read a policy.
#[utoipa::path(
    get, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The policy", body = Policy),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<Json<Policy>, ApiError> {
    let name = checked_policy_name(&name)?;
    let steps = policy_steps(&state, &caller.app, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy named {name}")))?;
    Ok(Json(Policy {
        name: Some(name),
        steps: steps.iter().map(StepSpec::of).collect(),
    }))
}

/// List the app's policies.
#[utoipa::path(
    get, path = "/v1/policies", tag = "policies",
    responses(
        (status = 200, description = "Every policy", body = PolicyList),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn list_policies(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PolicyList>, ApiError> {
    let mut redis = state.redis.clone();
    let all: BTreeMap<String, String> = redis
        .hgetall(policies_key(&caller.app))
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let items = all
        .into_iter()
        .filter_map(|(name, json)| {
            let steps: Vec<Step> = serde_json::from_str(&json).ok()?;
            Some(Policy {
                name: Some(name),
                steps: steps.iter().map(StepSpec::of).collect(),
            })
        })
        .collect();
    Ok(Json(PolicyList { items }))
}

/// Delete a policy; messages sent with it keep their steps.
#[utoipa::path(
    delete, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let name = checked_policy_name(&name)?;
    let mut redis = state.redis.clone();
    let removed: u64 = redis
        .hdel(policies_key(&caller.app), &name)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    if removed == 0 {
        return Err(ApiError::not_found(format!("no policy named {name}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What a cancellation did to one message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelView {
    /// The message.
    pub id: String,
    /// Whether anything was still to send and is now cancelled (false when everything had
    /// gone already).
    pub cancelled: bool,
    /// The message was waiting for `send_at`: nothing of it was sent.
    pub scheduled: bool,
    /// Whether any step had begun for any recipient: that much was sent.
    pub already_sent: bool,
    /// Per step: how many users it had begun for (it was sent to them).
    pub steps: Vec<StepProgress>,
    /// Of the users named in a cancellation, those whose running chain stopped now (their
    /// later steps are cancelled). A cancellation of everyone answers 0: each running chain
    /// stops as its step's deadline comes up, which the cancellation makes due at once.
    pub stopped_users: u64,
}

/// How far one step had got when it was cancelled.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StepProgress {
    /// The step's index.
    pub index: usize,
    /// Its channels.
    pub channels: Vec<String>,
    /// Users it had begun for.
    pub started: u64,
}

/// Cancels `message` (for `users`, or everyone) and publishes the records of the chains that
/// stopped; `None` if it is not a planned message of `app`.
async fn cancel_planned(
    state: &AppState,
    app: &sprayer_shared::model::AppId,
    message: &MessageId,
    users: Option<&[UserId]>,
) -> Result<Option<CancelView>, ApiError> {
    let keys = keys(state);
    let mut redis = state.redis.clone();
    let plan: Option<Plan> = schedule::load_plan(&mut redis, &keys, message)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let Some(plan) = plan.filter(|plan| plan.app == *app) else {
        return Ok(None);
    };
    let found = schedule::cancel(
        &mut redis,
        &keys,
        message,
        schedule::keys_expire_at(&plan),
        users,
    )
    .await
    .map_err(|error| ApiError::unavailable("redis", &error))?;
    let Some(found) = found else {
        return Ok(None);
    };
    // The cancellation has taken effect; the records of the stopped chains are feedback, and a
    // broker that fails them does not undo it.
    let records = schedule::stopped_records(&plan, &found.stopped, "cancelled by the app");
    for chunk in records.chunks(1_000) {
        let published = match state.publisher.topology().status_message(&StatusBatch {
            steps: chunk.to_vec(),
            ..StatusBatch::default()
        }) {
            Ok(outgoing) => state
                .publisher
                .publish(outgoing)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = published {
            tracing::warn!(%error, message = %message, "cannot publish the records of cancelled steps");
            metrics::counter!("sprayer_cancellation_records_lost_total")
                .increment(chunk.len() as u64);
        }
    }
    metrics::counter!("sprayer_cancellations_total").increment(1);
    let already_sent = found.started.values().any(|count| *count > 0);
    let expired = sprayer_shared::model::now_ms() >= plan.expires_at;
    Ok(Some(CancelView {
        id: message.to_string(),
        cancelled: !expired && (found.scheduled || found.pending > 0 || !found.stopped.is_empty()),
        scheduled: found.scheduled,
        already_sent,
        steps: plan
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| StepProgress {
                index,
                channels: step
                    .channels
                    .iter()
                    .map(|channel| channel.as_str().to_owned())
                    .collect(),
                started: found.started.get(&index).copied().unwrap_or(0),
            })
            .collect(),
        stopped_users: found.stopped.len() as u64,
    }))
}

/// The answer for a message that was sent at once (nothing of it can be cancelled), if it is
/// one of the app's.
async fn sent_at_once(
    state: &AppState,
    app: &sprayer_shared::model::AppId,
    message: &MessageId,
) -> Result<Option<CancelView>, ApiError> {
    let found = state
        .mongo
        .database
        .collection::<mongodb::bson::Document>("messages")
        .find_one(doc! { "_id": message.as_str(), "app": app.as_str() })
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?;
    Ok(found.map(|_| CancelView {
        id: message.to_string(),
        cancelled: false,
        scheduled: false,
        already_sent: true,
        steps: Vec::new(),
        stopped_users: 0,
    }))
}

/// Cancel what of a message has not been sent.
#[utoipa::path(
    delete, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "What was cancelled and what was sent already", body = CancelView),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is down; nothing was cancelled", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn cancel_message(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<CancelView>, ApiError> {
    let message = checked_id::<MessageId>("id", &id)?;
    if let Some(view) = cancel_planned(&state, &caller.app, &message, None).await? {
        return Ok(Json(view));
    }
    sent_at_once(&state, &caller.app, &message)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no message {id}")))
}

/// A cancellation by key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    /// The `cancel_key` the messages were sent with.
    pub cancel_key: String,
    /// Only these users (at most `accepter.max_users`); everyone when left out.
    #[serde(default)]
    pub users: Option<Vec<String>>,
}

/// What a cancellation by key did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Cancellations {
    /// The key.
    pub cancel_key: String,
    /// Each message sent with it that has not expired.
    pub messages: Vec<CancelView>,
}

/// Cancel by key what has not been sent, for everyone or some users.
#[utoipa::path(
    post, path = "/v1/cancellations", tag = "messages",
    request_body = Cancellation,
    responses(
        (status = 200, description = "What was cancelled, per message", body = Cancellations),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid value", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is down", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn cancel_by_key(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<Cancellation>,
) -> Result<Json<Cancellations>, ApiError> {
    let cancel_key = checked_cancel_key("/cancel_key", &body.value.cancel_key)?;
    let users = match &body.value.users {
        None => None,
        Some(users) if users.is_empty() => {
            return Err(ApiError::validation(
                "/users",
                "give at least one user, or leave users out to cancel for everyone",
            ));
        }
        Some(users) => {
            let most = state
                .settings
                .accepter
                .limits(caller.app.as_str())
                .max_users;
            if users.len() > most {
                return Err(ApiError::validation(
                    "/users",
                    format!("at most {most} users per cancellation"),
                ));
            }
            Some(checked_users("/users", users)?)
        }
    };
    let mut redis = state.redis.clone();
    let ids: Vec<String> = redis
        .smembers(schedule::cancel_key_key(&caller.app, &cancel_key))
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let mut messages = Vec::with_capacity(ids.len());
    let mut ids: Vec<MessageId> = ids
        .into_iter()
        .filter_map(|id| MessageId::parse(id).ok())
        .collect();
    ids.sort();
    for message in ids {
        let view = match cancel_planned(&state, &caller.app, &message, users.as_deref()).await? {
            Some(view) => Some(view),
            None => sent_at_once(&state, &caller.app, &message).await?,
        };
        messages.extend(view);
    }
    Ok(Json(Cancellations {
        cancel_key,
        messages,
    }))
}
