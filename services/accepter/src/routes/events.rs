//! Events pushed to apps: the app's event endpoints (`/v1/event-endpoints`: create, list,
//! read, change, delete, rotate the secret, test, replay) and its event feed (`GET /v1/events`),
//! written by the events service (see the book's Events page).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sprayer_shared::feed::{CursorError, EndpointDoc, Feed, decode_cursor, encode_cursor, rfc3339};
use sprayer_shared::model::{Channel, TypeFilter, WebhookAddress, now_ms};
use sprayer_shared::mongo::date;
use sprayer_shared::signing::signed_headers;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::reachable_url;
use crate::state::{AppState, Caller};

/// A new event endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEventEndpoint {
    /// Where batches of events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Event types: names (`inbound.sms`), prefixes (`delivery.*`) or `*`; all when absent.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only delivery events of these channels (all when absent).
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// A note for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// A change to an event endpoint: the fields given replace the stored ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventEndpointChange {
    /// A new URL.
    pub url: Option<String>,
    /// New type patterns.
    pub events: Option<Vec<String>>,
    /// New channels (`null` for all).
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub channels: Option<Option<Vec<String>>>,
    /// A new note.
    pub description: Option<String>,
    /// `false` pauses it; `true` resumes it from its cursor.
    pub enabled: Option<bool>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// An event endpoint as the API shows it (the secret only when it is made or rotated).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventEndpointView {
    /// `ep_…`.
    pub id: String,
    /// Where batches go.
    pub url: String,
    /// The type patterns.
    pub events: Vec<String>,
    /// The channels, when filtered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// The note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether batches are sent.
    pub enabled: bool,
    /// The signing secret: shown once, when made or rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The secret, redacted.
    pub secret_hint: String,
    /// The cursor of the last event taken (or passed over by the filters).
    pub cursor: String,
    /// The app's events after its cursor, not yet taken or passed over (counted up to 1,000).
    pub lag: u64,
    /// Since when batches have been failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When a batch was last taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// Why Sprayer disabled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// When it was made.
    pub created: String,
}

/// The app's event endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventEndpointList {
    /// Oldest first.
    pub items: Vec<EventEndpointView>,
}

/// Where to resend from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// A cursor of the feed: events after it are sent again (absent: from the oldest kept).
    pub after: Option<String>,
}

/// What the test sent and how the receiver answered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestResult {
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    /// The receiver's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it was not delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `ping` event sent.
    #[schema(value_type = Object)]
    pub event: Value,
}

/// `GET /v1/events` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// A cursor from an event or a page's `next`: events after it (absent: from the oldest kept).
    pub after: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Comma-separated type names or prefixes (`delivery.*,inbound.sms`); all when absent.
    pub types: Option<String>,
}

/// A page of the feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// Events in feed order: `{id, type, timestamp, cursor, data}`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Pass as `after` for what follows (also when this page is empty).
    pub next: String,
    /// Whether the feed goes on after `next` (this page may hold fewer than `limit` events
    /// and still have more after it: follow `next` until this is false).
    pub has_more: bool,
}

fn store(error: &mongodb::error::Error) -> ApiError {
    ApiError::unavailable("mongodb", error)
}

fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn checked_types(field: &str, patterns: &[String]) -> Result<TypeFilter, ApiError> {
    TypeFilter::parse(patterns).map_err(|error| ApiError::validation(field, error.to_string()))
}

fn checked_channels(field: &str, channels: &[String]) -> Result<(), ApiError> {
    for (index, channel) in channels.iter().enumerate() {
        channel
            .parse::<Channel>()
            .map_err(|error| ApiError::validation(format!("{field}/{index}"), error.to_string()))?;
    }
    if channels.is_empty() {
        return Err(ApiError::validation(
            field,
            "name at least one channel, or leave it out for all",
        ));
    }
    Ok(())
}

fn checked_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    WebhookAddress {
        url: url.to_owned(),
        secret: new_secret(),
    }
    .validate()
    .map_err(|error| ApiError::validation(format!("/{}", error.field), error.reason))?;
    reachable_url(state, url, "/url")
}

fn checked_description(description: Option<&String>) -> Result<(), ApiError> {
    match description {
        Some(text) if text.chars().count() > 500 => Err(ApiError::validation(
            "/description",
            "at most 500 characters",
        )),
        _ => Ok(()),
    }
}

async fn view(feed: &Feed, endpoint: EndpointDoc, secret: bool) -> EventEndpointView {
    let lag = lag(feed, &endpoint).await;
    EventEndpointView {
        secret_hint: WebhookAddress {
            url: String::new(),
            secret: endpoint.secret.clone(),
        }
        .redacted_secret(),
        secret: secret.then_some(endpoint.secret),
        cursor: encode_cursor(&endpoint.app, endpoint.cursor),
        lag,
        id: endpoint.id,
        url: endpoint.url,
        events: endpoint.events,
        channels: endpoint.channels,
        description: endpoint.description,
        enabled: endpoint.enabled,
        failing_since: endpoint.failing_since.map(rfc3339),
        last_error: endpoint.last_error,
        last_success: endpoint.last_success.map(rfc3339),
        disabled_reason: endpoint.disabled_reason,
        created: rfc3339(endpoint.created),
    }
}

/// The app's events after the endpoint's cursor, counted up to 1,000 (whatever their type:
/// a count by type costs the database a scan of the rest of the feed).
pub async fn lag(feed: &Feed, endpoint: &EndpointDoc) -> u64 {
    let Ok(head) = feed.head().await else {
        return 0;
    };
    feed.events
        .count_documents(
            doc! { "app": &endpoint.app, "seq": { "$gt": endpoint.cursor, "$lte": head.seq } },
        )
        .limit(1_000)
        .await
        .unwrap_or(0)
}

async fn owned(state: &AppState, caller: &Caller, id: &str) -> Result<EndpointDoc, ApiError> {
    Feed::new(&state.mongo)
        .endpoints
        .find_one(doc! { "_id": id, "app": caller.app.as_str() })
        .await
        .map_err(|error| store(&error))?
        .ok_or_else(|| ApiError::not_found(format!("no event endpoint {id}")).at("id"))
}

/// Create an event endpoint.
#[utoipa::path(
    post, path = "/v1/event-endpoints", tag = "events",
    request_body = NewEventEndpoint,
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = EventEndpointView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The app has as many event endpoints as it may", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid value", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<NewEventEndpoint>,
) -> Result<(StatusCode, Json<EventEndpointView>), ApiError> {
    let new = body.value;
    checked_url(&state, &new.url)?;
    checked_types("/events", &new.events)?;
    if let Some(channels) = &new.channels {
        checked_channels("/channels", channels)?;
    }
    checked_description(new.description.as_ref())?;
    let feed = Feed::new(&state.mongo);
    let count = feed
        .endpoints
        .count_documents(doc! { "app": caller.app.as_str() })
        .await
        .map_err(|error| store(&error))?;
    let most = state.settings.events.max_endpoints;
    if count >= most as u64 {
        return Err(ApiError::conflict(format!(
            "an app may have {most} event endpoints (events.max_endpoints); delete one first"
        )));
    }
    // A new endpoint gets the events from now on; replay reaches back.
    let head = feed.head().await.map_err(|error| store(&error))?;
    let now = date(now_ms());
    let endpoint = EndpointDoc {
        id: format!("ep_{}", hex::encode(rand::random::<[u8; 12]>())),
        app: caller.app.as_str().to_owned(),
        url: new.url,
        events: if new.events.is_empty() {
            vec!["*".to_owned()]
        } else {
            new.events
        },
        channels: new.channels,
        description: new.description,
        enabled: true,
        secret: new_secret(),
        previous_secret: None,
        previous_until: None,
        cursor: head.seq,
        created: now,
        updated: now,
        failing_since: None,
        last_error: None,
        last_success: None,
        disabled_reason: None,
    };
    feed.endpoints
        .insert_one(&endpoint)
        .await
        .map_err(|error| store(&error))?;
    Ok((StatusCode::CREATED, Json(view(&feed, endpoint, true).await)))
}

/// List the app's event endpoints.
#[utoipa::path(
    get, path = "/v1/event-endpoints", tag = "events",
    responses(
        (status = 200, body = EventEndpointList),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EventEndpointList>, ApiError> {
    use futures::TryStreamExt;
    let feed = Feed::new(&state.mongo);
    let endpoints: Vec<EndpointDoc> = feed
        .endpoints
        .find(doc! { "app": caller.app.as_str() })
        .sort(doc! { "created": 1 })
        .await
        .map_err(|error| store(&error))?
        .try_collect()
        .await
        .map_err(|error| store(&error))?;
    let mut items = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        items.push(view(&feed, endpoint, false).await);
    }
    Ok(Json(EventEndpointList { items }))
}

/// Read one event endpoint, with its state and lag.
#[utoipa::path(
    get, path = "/v1/event-endpoints/{id}", tag = "events",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = EventEndpointView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<EventEndpointView>, ApiError> {
    let endpoint = owned(&state, &caller, &id).await?;
    Ok(Json(view(&Feed::new(&state.mongo), endpoint, false).await))
}

/// Change an event endpoint's URL, filters, note, or pause and resume it.
#[utoipa::path(
    patch, path = "/v1/event-endpoints/{id}", tag = "events",
    params(("id" = String, Path)),
    request_body = EventEndpointChange,
    responses(
        (status = 200, body = EventEndpointView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid value", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    body: JsonBody<EventEndpointChange>,
) -> Result<Json<EventEndpointView>, ApiError> {
    let change = body.value;
    owned(&state, &caller, &id).await?;
    let mut set = doc! { "updated": date(now_ms()) };
    let mut unset = doc! {};
    if let Some(url) = &change.url {
        checked_url(&state, url)?;
        set.insert("url", url);
    }
    if let Some(events) = &change.events {
        checked_types("/events", events)?;
        let events = if events.is_empty() {
            vec!["*".to_owned()]
        } else {
            events.clone()
        };
        set.insert("events", events);
    }
    match &change.channels {
        Some(Some(channels)) => {
            checked_channels("/channels", channels)?;
            set.insert("channels", channels.clone());
        }
        Some(None) => {
            unset.insert("channels", "");
        }
        None => {}
    }
    if let Some(description) = &change.description {
        checked_description(Some(description))?;
        set.insert("description", description);
    }
    if let Some(enabled) = change.enabled {
        set.insert("enabled", enabled);
        if enabled {
            // Resumed: failing starts counting again, from its cursor.
            unset.insert("failing_since", "");
            unset.insert("disabled_reason", "");
        }
    }
    let mut update = doc! { "$set": set };
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    let feed = Feed::new(&state.mongo);
    feed.endpoints
        .update_one(doc! { "_id": &id, "app": caller.app.as_str() }, update)
        .await
        .map_err(|error| store(&error))?;
    let endpoint = owned(&state, &caller, &id).await?;
    Ok(Json(view(&feed, endpoint, false).await))
}

/// Delete an event endpoint.
#[utoipa::path(
    delete, path = "/v1/event-endpoints/{id}", tag = "events",
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let deleted = Feed::new(&state.mongo)
        .endpoints
        .delete_one(doc! { "_id": &id, "app": caller.app.as_str() })
        .await
        .map_err(|error| store(&error))?;
    if deleted.deleted_count == 0 {
        return Err(ApiError::not_found(format!("no event endpoint {id}")).at("id"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate an event endpoint's secret: the new one is shown once; the old one keeps signing
/// beside it for `events.rotation_overlap` (24 h).
#[utoipa::path(
    post, path = "/v1/event-endpoints/{id}/rotate-secret", tag = "events",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Rotated; the new secret is shown this once", body = EventEndpointView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<EventEndpointView>, ApiError> {
    let endpoint = owned(&state, &caller, &id).await?;
    let overlap =
        i64::try_from(state.settings.events.rotation_overlap.as_millis()).unwrap_or(i64::MAX);
    let secret = new_secret();
    let feed = Feed::new(&state.mongo);
    feed.endpoints
        .update_one(
            doc! { "_id": &id, "app": caller.app.as_str() },
            doc! { "$set": {
                "secret": &secret,
                "previous_secret": &endpoint.secret,
                "previous_until": date(now_ms().saturating_add(overlap)),
                "updated": date(now_ms()),
            }},
        )
        .await
        .map_err(|error| store(&error))?;
    let endpoint = owned(&state, &caller, &id).await?;
    Ok(Json(view(&feed, endpoint, true).await))
}

/// Send a `ping` event to an event endpoint now, signed as its batches are, and say how the
/// receiver answered.
#[utoipa::path(
    post, path = "/v1/event-endpoints/{id}/test", tag = "events",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = TestResult),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<TestResult>, ApiError> {
    let endpoint = owned(&state, &caller, &id).await?;
    let now = now_ms();
    let event = json!({
        "id": format!("evt_ping_{}", hex::encode(rand::random::<[u8; 8]>())),
        "type": "ping",
        "timestamp": rfc3339(date(now)),
        "data": { "endpoint_id": endpoint.id },
    });
    let body = json!({
        "type": "events",
        "timestamp": rfc3339(date(now)),
        "data": { "endpoint_id": endpoint.id, "events": [event] },
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let keys = endpoint.signing_keys(now);
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let batch = format!("evb_ping_{}", hex::encode(rand::random::<[u8; 8]>()));
    let headers = signed_headers(&batch, now / 1000, &body, &keys)
        .ok_or_else(|| ApiError::conflict("the endpoint's secret cannot sign"))?;
    let sent = state
        .event_client
        .post(&endpoint.url)
        .headers(headers)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let result = match sent {
        Ok(response) => TestResult {
            delivered: response.status().is_success(),
            status: Some(response.status().as_u16()),
            error: (!response.status().is_success())
                .then(|| format!("receiver answered {}", response.status().as_u16())),
            event,
        },
        Err(error) => TestResult {
            delivered: false,
            status: None,
            error: Some(match sprayer_shared::netguard::refused_by_guard(&error) {
                Some(refused) => refused.to_string(),
                None if error.is_timeout() => "the receiver did not answer in time".to_owned(),
                None => format!("cannot reach the receiver: {error}"),
            }),
            event,
        },
    };
    Ok(Json(result))
}

/// Send events again from a point of the feed: the endpoint's cursor moves back to `after`.
#[utoipa::path(
    post, path = "/v1/event-endpoints/{id}/replay", tag = "events",
    params(("id" = String, Path)),
    request_body = Replay,
    responses(
        (status = 200, body = EventEndpointView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor has expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a cursor of this app's feed", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    body: JsonBody<Replay>,
) -> Result<Json<EventEndpointView>, ApiError> {
    owned(&state, &caller, &id).await?;
    let feed = Feed::new(&state.mongo);
    let head = feed.head().await.map_err(|error| store(&error))?;
    let after = match &body.value.after {
        Some(cursor) => {
            decode_cursor(caller.app.as_str(), cursor, head).map_err(|error| match error {
                CursorError::Unknown => ApiError::validation("/after", error.to_string()),
                CursorError::Expired => {
                    ApiError::gone("cursor-expired", "/after", error.to_string())
                }
            })?
        }
        None => head.trimmed,
    };
    feed.endpoints
        .update_one(
            doc! { "_id": &id, "app": caller.app.as_str() },
            doc! { "$set": { "cursor": after, "updated": date(now_ms()) } },
        )
        .await
        .map_err(|error| store(&error))?;
    let endpoint = owned(&state, &caller, &id).await?;
    Ok(Json(view(&feed, endpoint, false).await))
}

/// Read the app's events in feed order, after a cursor.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(FeedQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "A parameter is not acceptable (an unknown type, a cursor this feed never issued, a limit out of range)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor has expired (events.retention)", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<FeedQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_parameter("limit", "must be 1 to 1000"));
    }
    let patterns: Vec<String> = query
        .types
        .as_deref()
        .map(|types| types.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let types = TypeFilter::parse(&patterns)
        .map_err(|error| ApiError::bad_parameter("types", error.to_string()))?;
    let feed = Feed::new(&state.mongo);
    let head = feed.head().await.map_err(|error| store(&error))?;
    let app = caller.app.as_str();
    let after = match &query.after {
        Some(cursor) => decode_cursor(app, cursor, head).map_err(|error| match error {
            CursorError::Unknown => ApiError::bad_parameter("after", error.to_string()),
            CursorError::Expired => ApiError::gone("cursor-expired", "after", error.to_string()),
        })?,
        None => head.trimmed,
    };
    let page = feed
        .read(app, after, head.seq, limit as usize, &types, None)
        .await
        .map_err(|error| store(&error))?;
    Ok(Json(EventPage {
        events: page.events.iter().map(|event| event.to_json()).collect(),
        next: encode_cursor(app, page.through),
        has_more: page.through < head.seq,
    }))
}
