//! Feedback reads: a message's summary per channel and status, and its deliveries page by page.
//!
//! Summary counts are computed from the delivery records (one aggregation over the
//! `(app, message, status)` index), so they are exact however often or late events arrived.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{Channel, DeliveryStatus, MessageId, now_ms};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{PathParams, QueryParams};
use crate::problem::{ApiError, Problem};
use crate::routes::orchestration::StepSpec;
use crate::state::{AppState, Caller};

/// A message and how its deliveries stand.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// The message id.
    pub id: String,
    /// The target as given (`{"user"}`, `{"users": <count>}` or `{"group"}`).
    #[schema(value_type = Object)]
    pub to: serde_json::Value,
    /// The channels it was sent over.
    pub channels: Vec<String>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// Deliveries per channel and status.
    pub summary: BTreeMap<String, BTreeMap<String, u64>>,
    /// Deliveries in all.
    pub total: u64,
    /// When it was due, for a scheduled message (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    /// The cancellation key it was sent with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_key: Option<String>,
    /// The template it was rendered from, and the version used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<sprayer_shared::model::TemplateVersion>,
    /// Its category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Its escalation steps and how far they got, for a message sent with `delivery`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepSummary>,
}

/// One escalation step of a message, over all its recipients.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StepSummary {
    /// The step's index.
    pub index: usize,
    /// The step as sent.
    pub step: StepSpec,
    /// Deliveries on its channels.
    pub deliveries: u64,
    /// Recipients it was skipped for (no endpoint on its channels).
    pub skipped: u64,
    /// Recipients it was cancelled for (an earlier step met its `until`, the app cancelled,
    /// or the message expired).
    pub cancelled: u64,
}

/// One recipient's chain: per step, its deliveries or why it did not run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecipientView {
    /// The recipient.
    pub user: String,
    /// The steps, in order (a message without `delivery` has one, over its channels).
    pub steps: Vec<RecipientStep>,
}

/// One step for one recipient.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecipientStep {
    /// The step's index.
    pub index: usize,
    /// Its channels.
    pub channels: Vec<String>,
    /// `ran` (it has deliveries), `skipped`, `cancelled`, or `pending` (not begun, or begun
    /// and its feedback not in yet).
    pub state: String,
    /// Why it was skipped or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its deliveries to this recipient.
    pub deliveries: Vec<DeliveryView>,
}

/// One delivery: one device of one user on one channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// `message:channel:user:device`.
    pub id: String,
    /// The channel.
    pub channel: String,
    /// The recipient.
    pub user: String,
    /// The recipient's device.
    pub device: String,
    /// The status.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider's own code for the last status, when it answered (an APNs `reason`, an FCM
    /// `errorCode`, an HTTP status, an SMTP reply code, an SMPP status or receipt state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the status last changed (RFC 3339).
    pub updated_at: String,
}

/// A page of deliveries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    /// The deliveries, in id order.
    pub items: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Filters and paging of the deliveries list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries with this status.
    pub status: Option<String>,
    /// Only deliveries on this channel.
    pub channel: Option<String>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

async fn find_message(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<sprayer_shared::mongo::MessageDoc, ApiError> {
    let not_found = || ApiError::not_found(format!("no message {id}")).at("id");
    let id = MessageId::parse(id).map_err(|_| not_found())?;
    // The record of a message accepted a moment ago may still be on its way to MongoDB: for an
    // id minted in the last RECENT, look again for up to SETTLE before answering 404.
    let fresh = id
        .minted_ms()
        .is_some_and(|minted| (now_ms() - minted).abs() < RECENT.as_millis() as i64);
    let deadline = tokio::time::Instant::now() + if fresh { SETTLE } else { Duration::ZERO };
    loop {
        let found = state
            .mongo
            .messages
            .find_one(doc! { "_id": id.as_str(), "app": caller.app.as_str() })
            .await
            .map_err(|error| ApiError::unavailable("mongodb", &error))?;
        match found {
            Some(message) => return Ok(message),
            None if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => return Err(not_found()),
        }
    }
}

/// How young a message id must be for a missing record to be waited for.
const RECENT: Duration = Duration::from_secs(30);
/// How long a missing record of a young message is waited for.
const SETTLE: Duration = Duration::from_secs(3);

fn rfc3339(date: mongodb::bson::DateTime) -> String {
    date.try_to_rfc3339_string().unwrap_or_default()
}

/// A message's summary.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, body = MessageView),
        (status = 404, description = "No such message for this app (a message accepted in the last 30 s is waited for up to 3 s)", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn message(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<MessageView>, ApiError> {
    let message = find_message(&state, &caller, &id).await?;
    let pipeline = vec![
        doc! { "$match": { "app": caller.app.as_str(), "message": &message.id } },
        doc! { "$group": { "_id": { "channel": "$channel", "status": "$status" }, "count": { "$sum": 1 } } },
    ];
    let groups: Vec<Document> = state
        .mongo
        .deliveries
        .aggregate(pipeline)
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?
        .try_collect()
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?;
    let mut summary: BTreeMap<String, BTreeMap<String, u64>> = message
        .channels
        .iter()
        .map(|channel| (channel.clone(), BTreeMap::new()))
        .collect();
    let mut total = 0;
    for group in groups {
        let key = group.get_document("_id").ok();
        let channel = key
            .and_then(|key| key.get_str("channel").ok())
            .unwrap_or_default();
        let status = key
            .and_then(|key| key.get_str("status").ok())
            .unwrap_or_default();
        let count = count_of(&group);
        total += count;
        *summary
            .entry(channel.to_owned())
            .or_default()
            .entry(status.to_owned())
            .or_default() += count;
    }
    let steps = if message.steps.is_empty() {
        Vec::new()
    } else {
        step_summaries(&state, &caller, &message, &summary).await?
    };
    Ok(Json(MessageView {
        id: message.id,
        to: serde_json::to_value(&message.to).unwrap_or_default(),
        channels: message.channels,
        created_at: rfc3339(message.created),
        expires_at: rfc3339(message.expires),
        summary,
        total,
        send_at: message.send_at.map(rfc3339),
        cancel_key: message.cancel_key,
        template: message.template,
        category: message.category,
        steps,
    }))
}

/// The `count` of an aggregation group (an int32 or an int64, as the server chose).
fn count_of(group: &Document) -> u64 {
    let count = group
        .get_i32("count")
        .map(i64::from)
        .or_else(|_| group.get_i64("count"))
        .unwrap_or(0);
    u64::try_from(count).unwrap_or(0)
}

/// The steps of a message with their counts: deliveries from the summary, skipped and
/// cancelled recipients from the step records (one aggregation).
async fn step_summaries(
    state: &AppState,
    caller: &Caller,
    message: &sprayer_shared::mongo::MessageDoc,
    summary: &BTreeMap<String, BTreeMap<String, u64>>,
) -> Result<Vec<StepSummary>, ApiError> {
    let pipeline = vec![
        doc! { "$match": { "app": caller.app.as_str(), "message": &message.id } },
        doc! { "$group": { "_id": { "step": "$step", "state": "$state" }, "count": { "$sum": 1 } } },
    ];
    let groups: Vec<Document> = state
        .mongo
        .database
        .collection::<Document>("steps")
        .aggregate(pipeline)
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?
        .try_collect()
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?;
    let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for group in groups {
        let key = group.get_document("_id").ok();
        let step = key
            .and_then(|key| key.get_i32("step").ok())
            .map_or(-1, i64::from);
        let kind = key
            .and_then(|key| key.get_str("state").ok())
            .unwrap_or_default()
            .to_owned();
        counts.insert((step, kind), count_of(&group));
    }
    Ok(message
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let at = i64::try_from(index).unwrap_or(-1);
            StepSummary {
                index,
                step: StepSpec::of(step),
                deliveries: step
                    .channels
                    .iter()
                    .filter_map(|channel| summary.get(channel.as_str()))
                    .flat_map(|statuses| statuses.values())
                    .sum(),
                skipped: counts.get(&(at, "skipped".into())).copied().unwrap_or(0),
                cancelled: counts.get(&(at, "cancelled".into())).copied().unwrap_or(0),
            }
        })
        .collect())
}

/// One recipient's chain: each step's deliveries, or why it did not run.
#[utoipa::path(
    get, path = "/v1/messages/{id}/recipients/{user}", tag = "messages",
    params(("id" = String, Path, description = "The message id"), ("user" = String, Path)),
    responses(
        (status = 200, body = RecipientView),
        (status = 404, description = "No such message for this app", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn recipient(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, user)): PathParams<(String, String)>,
) -> Result<Json<RecipientView>, ApiError> {
    let user =
        crate::routes::endpoints::checked_id::<sprayer_shared::model::UserId>("user", &user)?;
    let message = find_message(&state, &caller, &id).await?;
    let filter = doc! { "app": caller.app.as_str(), "message": &message.id, "user": user.as_str() };
    let deliveries: Vec<sprayer_shared::mongo::DeliveryDoc> = state
        .mongo
        .deliveries
        .find(filter.clone())
        .sort(doc! { "_id": 1 })
        .limit(1_000)
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?
        .try_collect()
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?;
    let records: Vec<Document> = state
        .mongo
        .database
        .collection::<Document>("steps")
        .find(filter)
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?
        .try_collect()
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?;
    let steps: Vec<Vec<String>> = if message.steps.is_empty() {
        vec![message.channels.clone()]
    } else {
        message
            .steps
            .iter()
            .map(|step| {
                step.channels
                    .iter()
                    .map(|channel| channel.as_str().to_owned())
                    .collect()
            })
            .collect()
    };
    let mut views: Vec<Option<DeliveryView>> = deliveries
        .into_iter()
        .map(|delivery| Some(delivery_view(delivery)))
        .collect();
    let steps = steps
        .into_iter()
        .enumerate()
        .map(|(index, channels)| {
            let deliveries: Vec<DeliveryView> = views
                .iter_mut()
                .filter(|view| {
                    view.as_ref()
                        .is_some_and(|view| channels.contains(&view.channel))
                })
                .filter_map(Option::take)
                .collect();
            let record = records.iter().find(|record| {
                record
                    .get_i32("step")
                    .ok()
                    .and_then(|step| usize::try_from(step).ok())
                    == Some(index)
            });
            let (state, reason) = match record {
                Some(record) => (
                    record.get_str("state").unwrap_or("cancelled").to_owned(),
                    record.get_str("reason").ok().map(str::to_owned),
                ),
                None if !deliveries.is_empty() => ("ran".to_owned(), None),
                None => ("pending".to_owned(), None),
            };
            RecipientStep {
                index,
                channels,
                state,
                reason,
                deliveries,
            }
        })
        .collect();
    Ok(Json(RecipientView {
        user: user.to_string(),
        steps,
    }))
}

fn delivery_view(delivery: sprayer_shared::mongo::DeliveryDoc) -> DeliveryView {
    DeliveryView {
        id: delivery.id,
        channel: delivery.channel,
        user: delivery.user,
        device: delivery.device,
        status: delivery.status,
        attempts: delivery.attempts,
        error: delivery.error,
        code: delivery.code,
        updated_at: rfc3339(delivery.updated),
    }
}

/// A message's deliveries, filtered and paged.
#[utoipa::path(
    get, path = "/v1/messages/{id}/deliveries", tag = "messages",
    params(("id" = String, Path, description = "The message id"), DeliveryQuery),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 1000"));
    }
    let mut filter = doc! { "app": caller.app.as_str() };
    if let Some(status) = &query.status {
        let status = DeliveryStatus::parse(status)
            .ok_or_else(|| ApiError::validation("status", format!("unknown status {status:?}")))?;
        filter.insert("status", status.as_str());
    }
    if let Some(channel) = &query.channel {
        let channel: Channel = channel
            .parse()
            .map_err(|error| ApiError::validation("channel", format!("{error}")))?;
        filter.insert("channel", channel.as_str());
    }
    let after = match &query.cursor {
        None => None,
        Some(cursor) => Some(
            URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ApiError::validation("cursor", "not a cursor this API gave"))?,
        ),
    };
    let message = find_message(&state, &caller, &id).await?;
    filter.insert("message", &message.id);
    if let Some(after) = after {
        filter.insert("_id", doc! { "$gt": after });
    }
    let found: Vec<sprayer_shared::mongo::DeliveryDoc> = state
        .mongo
        .deliveries
        .find(filter)
        .sort(doc! { "_id": 1 })
        .limit(i64::from(limit) + 1)
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?
        .try_collect()
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?;
    let more = found.len() > limit as usize;
    let items: Vec<DeliveryView> = found
        .into_iter()
        .take(limit as usize)
        .map(delivery_view)
        .collect();
    let next_cursor = more
        .then(|| {
            items
                .last()
                .map(|last| URL_SAFE_NO_PAD.encode(last.id.as_bytes()))
        })
        .flatten();
    Ok(Json(DeliveryPage { items, next_cursor }))
}
