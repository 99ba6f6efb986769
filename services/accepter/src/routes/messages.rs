//! `POST /v1/messages`: validate, remember the idempotency key, publish one job per channel and
//! the message record, and answer 202 only once RabbitMQ confirmed them all.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::try_join_all;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sprayer_shared::config::AccepterSettings;
use sprayer_shared::model::{
    AppId, CategoryUse, Channel, Content, GroupId, Job, JobTarget, MessageId, MessageRecord,
    Personal, Plan, Priority, QuietMode, Step, TemplateUse, TemplateVersion, Until, UserId, now_ms,
};
use sprayer_shared::personal::profile::{
    Category, categories_key, profiles_in_use_key, templates_key,
};
use sprayer_shared::personal::template::{Compiled, canonical_locale};
use sprayer_shared::redis::idempotency_key;
use sprayer_shared::schedule;
use utoipa::ToSchema;

use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::{checked_id, checked_users};
use crate::routes::orchestration::{
    DeliverySpec, check_waits_fit, checked_cancel_key, checked_steps, keys, policy_steps,
};
use crate::state::{AppState, Caller};

/// Who a message is for: exactly one of `user`, `users` or `group`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipients {
    /// One user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A list of users (at most `accepter.max_users`, 10,000 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// A group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A message to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The recipients.
    pub to: Recipients,
    /// The channels to send over; all the installation serves when left out.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// What to send: at least one of `title`, `body`, `data`. With a `template`, only `data`
    /// (handed to the recipient as is), or nothing.
    #[serde(default)]
    pub content: Option<Content>,
    /// A template stored with `PUT /v1/templates/{name}`, rendered per recipient in their
    /// locale, in place of `content`'s title and body and of `overrides`.
    #[serde(default)]
    pub template: Option<String>,
    /// The data the template renders with (checked against its schema).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// The template locale for every recipient (BCP 47), ahead of their profile's.
    #[serde(default)]
    pub locale: Option<String>,
    /// The message's category (`PUT /v1/categories/{key}`), which users' preferences follow.
    #[serde(default)]
    pub category: Option<String>,
    /// What to do for recipients in their quiet hours: `defer` (the default), `drop`, `ignore`.
    #[serde(default)]
    pub quiet_hours: Option<QuietMode>,
    /// Per-channel objects that replace fields of `content` on that channel.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub overrides: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds the message stays deliverable (default `accepter.default_ttl`).
    #[serde(default)]
    pub ttl: Option<u64>,
    /// Delivery priority.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Escalation steps, or a named policy holding them (instead of `channels`).
    #[serde(default)]
    pub delivery: Option<DeliverySpec>,
    /// When to send (RFC 3339), up to `accepter.max_schedule` ahead; the TTL counts from it.
    #[serde(default)]
    pub send_at: Option<String>,
    /// A key of the app's choosing (an order id, say) to cancel this message by, with
    /// `POST /v1/cancellations`.
    #[serde(default)]
    pub cancel_key: Option<String>,
}

/// The answer to an accepted message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// Where to poll its feedback.
    pub status_url: String,
}

/// A message checked and ready to publish.
struct Checked {
    target: JobTarget,
    to: serde_json::Value,
    channels: Vec<Channel>,
    content: Content,
    overrides: serde_json::Map<String, serde_json::Value>,
    ttl: Duration,
    priority: Priority,
    /// Escalation steps (from `delivery`), if given.
    steps: Option<Vec<Step>>,
    /// When it is due (Unix ms), if scheduled.
    send_at: Option<i64>,
    cancel_key: Option<String>,
    /// Template, category and quiet hours, when the message has any of them or the app's
    /// users have profiles.
    personal: Option<Box<Personal>>,
}

/// What the send reads from Redis before checking: the template and category it names, and
/// whether the app's users have profiles.
#[derive(Debug, Default)]
pub struct Lookups {
    template: Option<crate::routes::templates::StoredTemplate>,
    category: Option<Category>,
    profiles_in_use: bool,
}

impl Checked {
    /// Whether the scheduler runs the message (steps or `send_at`), rather than the accepter
    /// publishing its jobs now.
    fn planned(&self) -> bool {
        self.steps.is_some() || self.send_at.is_some()
    }
}

/// Runs the checks of `POST /v1/messages` on a decoded body, as the route does with the
/// accepter's settings; for tests and fuzzing, which have no [`AppState`].
#[doc(hidden)]
pub fn validate(request: SendMessage, limits: &AccepterSettings) -> Result<(), ApiError> {
    check(request, limits, limits.max_users, None, Lookups::default()).map(drop)
}

/// Reads what `request` names (template, category) and the app's profile flag, in one round
/// trip.
async fn lookups(
    state: &AppState,
    app: &AppId,
    request: &SendMessage,
) -> Result<Lookups, ApiError> {
    let mut pipe = redis::pipe();
    pipe.exists(profiles_in_use_key(app));
    if let Some(name) = &request.template {
        pipe.hget(templates_key(app), name);
    }
    if let Some(key) = &request.category {
        pipe.hget(categories_key(app), key);
    }
    let mut redis = state.redis.clone();
    let answers: Vec<redis::Value> = match pipe.query_async(&mut redis).await {
        Ok(answers) => answers,
        // A plain send needs nothing from Redis now: it is accepted with profiles to be read
        // at delivery, which waits for Redis as every delivery does.
        Err(error) if request.template.is_none() && request.category.is_none() => {
            tracing::warn!(%error, "cannot tell whether the app's users have profiles; they are read at delivery");
            return Ok(Lookups {
                profiles_in_use: true,
                ..Lookups::default()
            });
        }
        Err(error) => return Err(ApiError::unavailable("redis", &error)),
    };
    let mut answers = answers.into_iter();
    let profiles_in_use = answers
        .next()
        .and_then(|value| redis::from_redis_value::<bool>(value).ok())
        .unwrap_or(false);
    let mut json = |asked: bool| -> Option<String> {
        if !asked {
            return None;
        }
        answers
            .next()
            .and_then(|value| redis::from_redis_value::<Option<String>>(value).ok())
            .flatten()
    };
    let template =
        json(request.template.is_some()).and_then(|json| serde_json::from_str(&json).ok());
    let category =
        json(request.category.is_some()).and_then(|json| serde_json::from_str(&json).ok());
    Ok(Lookups {
        template,
        category,
        profiles_in_use,
    })
}

/// The message's template (checked with its data for every channel it goes to), category
/// and quiet-hours mode; `content` as the jobs carry it.
fn checked_personal(
    request: &mut SendMessage,
    channels: &[Channel],
    lookups: Lookups,
) -> Result<(Content, Option<Box<Personal>>), ApiError> {
    let template = match request.template.take() {
        None => {
            if request.data.is_some() {
                return Err(ApiError::validation(
                    "/data",
                    "data renders a template; name the template, or put the data in content",
                ));
            }
            if request.locale.is_some() {
                return Err(ApiError::validation(
                    "/locale",
                    "a locale picks a template's texts; name the template",
                ));
            }
            None
        }
        Some(name) => {
            let Some(stored) = lookups.template else {
                return Err(ApiError::validation(
                    "/template",
                    format!("no template named {name:?}; store it with PUT /v1/templates/{{name}}"),
                ));
            };
            if let Some(content) = &request.content {
                let field = if content.title.is_some() {
                    Some("/content/title")
                } else if content.body.is_some() {
                    Some("/content/body")
                } else {
                    None
                };
                if let Some(field) = field {
                    return Err(ApiError::validation(
                        field,
                        "comes from the template; give only content.data beside a template",
                    ));
                }
            }
            if request.overrides.is_some() {
                return Err(ApiError::validation(
                    "/overrides",
                    "the template's per-channel fields take the place of overrides",
                ));
            }
            let locale = request
                .locale
                .as_deref()
                .map(canonical_locale)
                .transpose()
                .map_err(|detail| ApiError::validation("/locale", detail))?;
            let data = request.data.take().unwrap_or_default();
            let compiled = Compiled::new(&stored.source)
                .map_err(crate::routes::templates::template_problem)?;
            compiled
                .check_data(&data, channels)
                .map_err(crate::routes::templates::template_problem)?;
            if channels.contains(&Channel::Apns) {
                check_apns_sizes(&compiled, &data)?;
            }
            Some(TemplateUse {
                name,
                version: stored.version,
                locale,
                data,
                source: stored.source,
            })
        }
    };
    let category = match request.category.take() {
        None => None,
        Some(key) => {
            crate::routes::profiles::checked_category("/category", &key)?;
            let Some(found) = lookups.category else {
                return Err(ApiError::validation(
                    "/category",
                    format!("no category {key:?}; create it with PUT /v1/categories/{{key}}"),
                ));
            };
            Some(CategoryUse {
                key,
                required: found.required,
            })
        }
    };
    let content = match request.content.take() {
        Some(content) => content,
        None if template.is_some() => Content::default(),
        None => {
            return Err(ApiError::validation(
                "/content",
                "give content (title, body or data), or a template",
            ));
        }
    };
    if template.is_none()
        && content.title.is_none()
        && content.body.is_none()
        && content.data.is_none()
    {
        return Err(ApiError::validation(
            "/content",
            "give at least one of title, body or data",
        ));
    }
    let quiet_hours = request.quiet_hours.unwrap_or_default();
    let personal = (template.is_some()
        || category.is_some()
        || request.quiet_hours.is_some()
        || lookups.profiles_in_use)
        .then(|| {
            Box::new(Personal {
                template,
                category,
                quiet_hours,
            })
        });
    Ok((content, personal))
}

/// Every locale's APNs payload within APNs' limit (user fields empty).
fn check_apns_sizes(
    compiled: &Compiled,
    data: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ApiError> {
    for locale in compiled.source().locales.keys() {
        let Ok(rendered) =
            compiled.render(locale, Channel::Apns, data, Some(&serde_json::json!({})))
        else {
            continue;
        };
        let content = Content {
            title: rendered.title,
            body: rendered.body,
            data: None,
        };
        let payload = sprayer_shared::model::apns_payload(&content, rendered.overrides.as_ref());
        let size = serde_json::to_vec(&payload).map_or(usize::MAX, |bytes| bytes.len());
        if size > sprayer_shared::model::APNS_MAX_PAYLOAD {
            return Err(ApiError::validation(
                "/data",
                format!(
                    "the APNs payload of locale {locale} would be {size} bytes; APNs takes at most 4096"
                ),
            ));
        }
    }
    Ok(())
}

/// `send_at` checked: RFC 3339, not before now less `accepter.schedule_skew`, not after now
/// plus `accepter.max_schedule`. A time within the skew in the past is now.
fn checked_send_at(text: &str, limits: &AccepterSettings) -> Result<i64, ApiError> {
    let at = mongodb::bson::DateTime::parse_rfc3339_str(text).map_err(|error| {
        ApiError::validation(
            "/send_at",
            format!("not an RFC 3339 time such as 2026-12-24T18:00:00Z: {error}"),
        )
    })?;
    let at = at.timestamp_millis();
    let now = now_ms();
    let skew = i64::try_from(limits.schedule_skew.as_millis()).unwrap_or(0);
    let ahead = i64::try_from(limits.max_schedule.as_millis()).unwrap_or(i64::MAX / 2);
    if at < now - skew {
        return Err(ApiError::validation(
            "/send_at",
            format!(
                "is in the past (more than {} ago)",
                humantime::format_duration(limits.schedule_skew)
            ),
        ));
    }
    if at > now + ahead {
        return Err(ApiError::validation(
            "/send_at",
            format!(
                "is more than {} ahead (accepter.max_schedule)",
                humantime::format_duration(limits.max_schedule)
            ),
        ));
    }
    Ok(at.max(now))
}

fn check(
    mut request: SendMessage,
    limits: &AccepterSettings,
    max_users: usize,
    policy: Option<Vec<Step>>,
    lookups: Lookups,
) -> Result<Checked, ApiError> {
    let Recipients { user, users, group } = std::mem::replace(
        &mut request.to,
        Recipients {
            user: None,
            users: None,
            group: None,
        },
    );
    let target = match (user, users, group) {
        (Some(user), None, None) => JobTarget::User(checked_id::<UserId>("/to/user", &user)?),
        (None, Some(users), None) => {
            if users.is_empty() {
                return Err(ApiError::validation("/to/users", "give at least one user"));
            }
            if users.len() > max_users {
                return Err(ApiError::validation(
                    "/to/users",
                    format!("at most {max_users} users per message; send to a group instead"),
                ));
            }
            JobTarget::Users(checked_users("/to/users", &users)?)
        }
        (None, None, Some(group)) => JobTarget::Group(checked_id::<GroupId>("/to/group", &group)?),
        _ => {
            return Err(ApiError::validation(
                "/to",
                "give exactly one of user, users or group",
            ));
        }
    };
    let to = match &target {
        JobTarget::User(user) => serde_json::json!({ "user": user }),
        JobTarget::Users(users) => serde_json::json!({ "users": users.len() }),
        JobTarget::Group(group) => serde_json::json!({ "group": group }),
        _ => serde_json::Value::Null,
    };

    let steps = match (&request.delivery, &request.channels) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "/channels",
                "give channels or delivery, not both: the steps name their channels",
            ));
        }
        (
            Some(DeliverySpec {
                steps: Some(steps),
                policy: None,
            }),
            None,
        ) => Some(checked_steps(steps, limits, "/delivery/steps")?),
        (
            Some(DeliverySpec {
                steps: None,
                policy: Some(name),
            }),
            None,
        ) => match policy {
            Some(steps) => {
                // The policy was checked when stored; the installation may serve less since.
                let gone = steps.iter().enumerate().find_map(|(index, step)| {
                    let channel = step
                        .channels
                        .iter()
                        .find(|channel| !limits.channels.contains(channel))?;
                    Some((index, *channel))
                });
                if let Some((index, channel)) = gone {
                    return Err(ApiError::validation(
                        "/delivery/policy",
                        format!(
                            "policy {name:?} sends over {channel} in step {index}, which this installation does not serve now"
                        ),
                    ));
                }
                Some(steps)
            }
            None => {
                return Err(ApiError::validation(
                    "/delivery/policy",
                    format!("no policy named {name:?}; store it with PUT /v1/policies/{{name}}"),
                ));
            }
        },
        (Some(_), None) => {
            return Err(ApiError::validation(
                "/delivery",
                "give exactly one of steps or policy",
            ));
        }
    };
    let channels = match request.channels.take() {
        None if steps.is_some() => steps
            .iter()
            .flatten()
            .flat_map(|step| step.channels.iter().copied())
            .collect(),
        None => limits.channels.clone(),
        Some(names) if names.is_empty() => {
            return Err(ApiError::validation(
                "/channels",
                "give at least one channel, or leave channels out",
            ));
        }
        Some(names) => {
            let mut channels = Vec::with_capacity(names.len());
            for (index, name) in names.iter().enumerate() {
                let field = format!("/channels/{index}");
                let channel: Channel = name
                    .parse()
                    .map_err(|error| ApiError::validation(&field, format!("{error}")))?;
                if !limits.channels.contains(&channel) {
                    return Err(ApiError::validation(
                        field,
                        format!("channel {channel} is not served by this installation"),
                    ));
                }
                if !channels.contains(&channel) {
                    channels.push(channel);
                }
            }
            channels
        }
    };

    let (content, personal) = checked_personal(&mut request, &channels, lookups)?;
    let overrides = request.overrides.unwrap_or_default();
    for (name, value) in &overrides {
        let field = format!("/overrides/{name}");
        name.parse::<Channel>()
            .map_err(|error| ApiError::validation(&field, format!("{error}")))?;
        if !value.is_object() {
            return Err(ApiError::validation(field, "must be an object"));
        }
    }
    if channels.contains(&Channel::Apns) {
        let payload = sprayer_shared::model::apns_payload(&content, overrides.get("apns"));
        let size = serde_json::to_vec(&payload).map_or(usize::MAX, |bytes| bytes.len());
        if size > sprayer_shared::model::APNS_MAX_PAYLOAD {
            let field = if overrides.contains_key("apns") {
                "/overrides/apns"
            } else {
                "/content"
            };
            return Err(ApiError::validation(
                field,
                format!("the APNs payload would be {size} bytes; APNs takes at most 4096"),
            ));
        }
    }
    let ttl = match request.ttl {
        None => limits.default_ttl,
        Some(0) => return Err(ApiError::validation("/ttl", "must be at least 1 second")),
        Some(seconds) if Duration::from_secs(seconds) > limits.max_ttl => {
            return Err(ApiError::validation(
                "/ttl",
                format!("must be at most {} seconds", limits.max_ttl.as_secs()),
            ));
        }
        Some(seconds) => Duration::from_secs(seconds),
    };
    if let Some(steps) = &steps {
        let field = if request
            .delivery
            .as_ref()
            .is_some_and(|spec| spec.policy.is_some())
        {
            "/delivery/policy/steps"
        } else {
            "/delivery/steps"
        };
        check_waits_fit(steps, ttl, field)?;
    }
    let send_at = request
        .send_at
        .as_deref()
        .map(|text| checked_send_at(text, limits))
        .transpose()?;
    let cancel_key = request
        .cancel_key
        .as_deref()
        .map(|key| checked_cancel_key("/cancel_key", key))
        .transpose()?;
    Ok(Checked {
        steps,
        send_at,
        cancel_key,
        personal,
        target,
        to,
        channels,
        content,
        overrides,
        ttl,
        priority: request.priority.unwrap_or_default(),
    })
}

/// An idempotency key as given: 1 to 255 visible ASCII characters.
fn idempotency_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .filter(|text| {
            !text.is_empty() && text.len() <= 255 && text.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::validation(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
        })?;
    Ok(Some(text.to_owned()))
}

/// What a remembered idempotency key says.
enum Remembered {
    /// This request claimed the key.
    Claimed,
    /// A finished request used it: its message id and body fingerprint.
    Done { id: String, fingerprint: String },
    /// A request with the key is still being accepted.
    InProgress,
}

async fn claim_key(
    state: &AppState,
    key: &str,
    id: &MessageId,
    fingerprint: &str,
) -> Result<Remembered, ApiError> {
    let mut redis = state.redis.clone();
    let ttl = state.settings.accepter.idempotency_ttl.as_secs().max(1);
    let claimed: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(format!("pending {id} {fingerprint}"))
        .arg("NX")
        .arg("EX")
        .arg(ttl)
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    if claimed.is_some() {
        return Ok(Remembered::Claimed);
    }
    let value: Option<String> = redis
        .get(key)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let value = value.unwrap_or_default();
    let mut parts = value.split(' ');
    Ok(match (parts.next(), parts.next(), parts.next()) {
        (Some("done"), Some(id), Some(fingerprint)) => Remembered::Done {
            id: id.to_owned(),
            fingerprint: fingerprint.to_owned(),
        },
        _ => Remembered::InProgress,
    })
}

fn status_url(id: &str) -> String {
    format!("/v1/messages/{id}")
}

fn accepted(id: String, replayed: bool) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Accepted {
            status_url: status_url(&id),
            id,
        }),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// An accepted message encoded for the broker.
struct Encoded {
    /// One job per channel, JSON.
    jobs: Vec<(Channel, Vec<u8>)>,
    /// The message record, JSON.
    record: Vec<u8>,
}

/// The jobs (none for a planned message: the scheduler publishes them), the message record,
/// and the plan of a planned message.
fn outgoing(
    app: &AppId,
    id: &MessageId,
    checked: Checked,
) -> Result<(Encoded, Option<Plan>), ApiError> {
    let created_at = now_ms();
    let starts_at = checked.send_at.unwrap_or(created_at);
    let expires_at = starts_at + i64::try_from(checked.ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let planned = checked.planned();
    let plan = planned.then(|| Plan {
        id: id.clone(),
        app: app.clone(),
        target: checked.target.clone(),
        content: checked.content.clone(),
        overrides: checked
            .overrides
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        priority: checked.priority,
        created_at,
        send_at: starts_at,
        expires_at,
        steps: checked.steps.clone().unwrap_or_else(|| {
            vec![Step {
                channels: checked.channels.clone(),
                wait_ms: None,
                until: Until::default(),
            }]
        }),
        cancel_key: checked.cancel_key.clone(),
        personal: checked.personal.clone(),
    });
    let mut jobs = Vec::with_capacity(checked.channels.len());
    for channel in checked.channels.iter().filter(|_| !planned) {
        let job = Job {
            message_id: id.clone(),
            app: app.clone(),
            channel: *channel,
            target: checked.target.clone(),
            content: checked.content.clone(),
            overrides: checked.overrides.get(channel.as_str()).cloned(),
            priority: checked.priority,
            created_at,
            expires_at,
            personal: checked.personal.clone(),
        };
        let encoded = serde_json::to_vec(&job).map_err(|error| encode_error(&error))?;
        jobs.push((*channel, encoded));
    }
    let record = MessageRecord {
        id: id.clone(),
        app: app.clone(),
        to: checked.to,
        channels: checked.channels,
        created_at,
        expires_at,
        send_at: checked.send_at,
        steps: checked.steps.unwrap_or_default(),
        cancel_key: checked.cancel_key,
        template: checked.personal.as_ref().and_then(|personal| {
            let template = personal.template.as_ref()?;
            Some(TemplateVersion {
                name: template.name.clone(),
                version: template.version,
            })
        }),
        category: checked
            .personal
            .as_ref()
            .and_then(|personal| Some(personal.category.as_ref()?.key.clone())),
    };
    let record = serde_json::to_vec(&record).map_err(|error| encode_error(&error))?;
    Ok((Encoded { jobs, record }, plan))
}

/// Jobs and batches always serialize; this error arm is defensive.
fn encode_error(error: &serde_json::Error) -> ApiError {
    ApiError::validation("/", format!("cannot encode the message: {error}"))
}

/// Lets a retry with the same idempotency key in after a failed accept.
async fn release_key(state: &AppState, key: Option<&str>) {
    let Some(key) = key else { return };
    let mut redis = state.redis.clone();
    let released: redis::RedisResult<()> = redis.del(key).await;
    if let Err(error) = released {
        tracing::warn!(%error, "cannot release an idempotency key; it expires on its own");
    }
}

/// Stores a planned message's plan and start timer, and indexes a cancellation key.
async fn plan_and_index(
    state: &AppState,
    app: &AppId,
    id: &MessageId,
    plan: Option<&Plan>,
    cancel_key: Option<String>,
) -> Result<(), ApiError> {
    let mut redis = state.redis.clone();
    let stored = match plan {
        Some(plan) => {
            let stored = schedule::plan(&mut redis, &keys(state), plan).await;
            if stored.is_ok() {
                metrics::counter!("sprayer_messages_planned_total").increment(1);
            }
            stored.map(drop)
        }
        None => match cancel_key {
            Some(cancel_key) => {
                let expire_at = now_ms()
                    + i64::try_from(state.settings.accepter.max_ttl.as_millis()).unwrap_or(0);
                schedule::index_cancel_key(&mut redis, app, &cancel_key, id, expire_at).await
            }
            None => Ok(()),
        },
    };
    stored.map_err(|error| ApiError::unavailable("redis", &error))
}

/// Send a message.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    request_body = SendMessage,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this request safe for 24 h")),
    responses(
        (status = 202, description = "Accepted: the jobs are confirmed by the broker", body = Accepted),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same Idempotency-Key is being accepted", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The app's request rate is above its limit; try again after Retry-After seconds", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid value", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is down; nothing was accepted", body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<SendMessage>,
) -> Result<Response, ApiError> {
    let idempotency = idempotency_header(&headers)?;
    let accepter = &state.settings.accepter;
    let max_users = accepter.limits(caller.app.as_str()).max_users;
    let policy = match body
        .value
        .delivery
        .as_ref()
        .and_then(|spec| spec.policy.as_ref())
    {
        Some(name) => policy_steps(&state, &caller.app, name).await?,
        None => None,
    };
    let found = lookups(&state, &caller.app, &body.value).await?;
    let checked = check(body.value, accepter, max_users, policy, found)?;
    let id = MessageId::generate();
    let fingerprint = hex::encode(&Sha256::digest(&body.raw)[..16]);
    let idem_key = idempotency.map(|key| idempotency_key(&caller.app, &key));
    if let Some(key) = &idem_key {
        match claim_key(&state, key, &id, &fingerprint).await? {
            Remembered::Claimed => {}
            Remembered::Done {
                id,
                fingerprint: earlier,
            } if earlier == fingerprint => {
                metrics::counter!("sprayer_messages_replayed_total").increment(1);
                return Ok(accepted(id, true));
            }
            Remembered::Done { .. } => {
                return Err(ApiError::validation(
                    "Idempotency-Key",
                    "this Idempotency-Key was used with a different body",
                ));
            }
            Remembered::InProgress => {
                return Err(ApiError::conflict(
                    "a request with this Idempotency-Key is still being accepted; retry shortly",
                )
                .at("Idempotency-Key"));
            }
        }
    }
    let channels = checked.channels.clone();
    let cancel_key = checked.cancel_key.clone();
    let (Encoded { jobs, record }, plan) = outgoing(&caller.app, &id, checked)?;
    // A planned message is stored with its start timer before its record is published: the
    // scheduler sends it, and the record says it was accepted.
    if let Err(error) = plan_and_index(&state, &caller.app, &id, plan.as_ref(), cancel_key).await {
        release_key(&state, idem_key.as_deref()).await;
        return Err(error);
    }
    let jobs = jobs
        .into_iter()
        .map(|(channel, job)| state.commits.job(channel, job));
    let published = tokio::try_join!(try_join_all(jobs), state.commits.record(record));
    if let Err(error) = published {
        // A planned message whose record did not go out is taken back, unless the scheduler
        // has begun it: then it is sent, and the answer says it was accepted.
        let begun = match &plan {
            Some(plan) => {
                let mut redis = state.redis.clone();
                match schedule::retract(&mut redis, &keys(&state), plan).await {
                    Ok(taken) => !taken,
                    Err(redis_error) => {
                        tracing::warn!(error = %redis_error, message = %id, "cannot take back a planned message whose record did not go out; the scheduler sends it");
                        true
                    }
                }
            }
            None => false,
        };
        if !begun {
            release_key(&state, idem_key.as_deref()).await;
            return Err(ApiError::unavailable("rabbitmq", &error));
        }
        tracing::warn!(%error, message = %id, "a planned message's record did not go out; the scheduler had begun it, so it is sent");
    }
    if let Some(key) = &idem_key {
        let mut redis = state.redis.clone();
        let done: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key)
            .arg(format!("done {id} {fingerprint}"))
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut redis)
            .await;
        if let Err(error) = done {
            // The jobs are confirmed: answer 202. A retry meanwhile sees "in progress" until the key expires.
            tracing::warn!(%error, message = %id, "cannot mark an idempotency key done");
        }
    }
    for channel in channels {
        metrics::counter!("sprayer_messages_accepted_total", "channel" => channel.as_str())
            .increment(1);
    }
    tracing::debug!(app = %caller.app, message = %id, "message accepted");
    Ok(accepted(id.to_string(), false))
}
