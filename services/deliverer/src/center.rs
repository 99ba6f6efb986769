//! The notification centre: each user's history (the last `deliverer.history_max` messages,
//! acknowledged or not) with per-message `seen`, `read` and `archived` state, its counts, and
//! the same acks as the socket's, over HTTP with the user's token:
//!
//! - `GET /v1/inbox?state=&cursor=&limit=`: newest first; `state` is `active` (default: not
//!   archived), `unread`, `unseen`, `read`, `archived` or `all`; `next_cursor` pages on;
//! - `GET /v1/inbox/counts`: `{unread, unseen, total}` (archived messages are not counted
//!   unread or unseen);
//! - `POST /v1/inbox/ack {"ids"}`: out of the pending inbox, `delivered`, as a socket's ack;
//! - `POST /v1/inbox/state {"ids" | "all" | "before", "seen"?, "read"?, "archived"?}`.
//!
//! A socket may send the same `state` frame. Every change reaches every socket of the user, on
//! every node, as a `state` frame and a `counts` frame; a message that becomes read is reported
//! `read` (its delivery's lifecycle status).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sprayer_shared::model::{AppId, DeliveryStatus, MessageId, UserId};

use crate::hub::Hub;
use crate::inbox::{self, ARCHIVED, Counts, InboxKeys, READ_BIT, SEEN, StateChange, Targets};
use crate::reporter::ws_event;
use crate::user_routes::{Refused, bearer, decoded};

/// Most ids in one state change or ack.
pub const MAX_IDS: usize = 1_000;
/// Most messages in one page of history.
pub const MAX_PAGE: usize = 100;

/// A change of state, from HTTP or from a socket's `state` frame: which messages (exactly one
/// of `ids`, `all`, `before`) and what to set (at least one of `seen`, `read`, `archived`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRequest {
    /// These messages.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Every message of the history.
    #[serde(default)]
    pub all: Option<bool>,
    /// Every message older than this cursor (a message's `seq`).
    #[serde(default)]
    pub before: Option<String>,
    /// Seen (or not).
    #[serde(default)]
    pub seen: Option<bool>,
    /// Read (or not); read implies seen.
    #[serde(default)]
    pub read: Option<bool>,
    /// Archived (or not).
    #[serde(default)]
    pub archived: Option<bool>,
}

/// A request that does not hold: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// The JSON Pointer of the field.
    pub field: String,
    /// Why.
    pub detail: String,
}

fn bad(field: &str, detail: impl Into<String>) -> BadRequest {
    BadRequest {
        field: field.to_owned(),
        detail: detail.into(),
    }
}

/// A checked change: the bits to set and clear, and the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    set: u8,
    clear: u8,
    targets: Targets,
}

impl StateRequest {
    /// Checks the request.
    pub fn checked(&self) -> Result<Change, BadRequest> {
        let targets = match (&self.ids, self.all, &self.before) {
            (Some(ids), None, None) => {
                if ids.is_empty() {
                    return Err(bad("/ids", "name at least one message"));
                }
                if ids.len() > MAX_IDS {
                    return Err(bad("/ids", format!("at most {MAX_IDS} ids")));
                }
                if let Some(index) = ids.iter().position(|id| MessageId::parse(id).is_err()) {
                    return Err(bad(&format!("/ids/{index}"), "not a message id"));
                }
                Targets::Ids(ids.clone())
            }
            (None, Some(true), None) => Targets::All,
            (None, None, Some(before)) => Targets::Before(
                cursor(before).ok_or_else(|| bad("/before", "a cursor (a message's seq)"))?,
            ),
            (None, Some(false), None) => return Err(bad("/all", "true, or leave it out")),
            _ => {
                return Err(bad(
                    "/",
                    "name the messages with exactly one of ids, all or before",
                ));
            }
        };
        let mut set = 0;
        let mut clear = 0;
        for (value, bit) in [
            (self.seen, SEEN),
            (self.read, READ_BIT),
            (self.archived, ARCHIVED),
        ] {
            match value {
                Some(true) => set |= bit,
                Some(false) => clear |= bit,
                None => {}
            }
        }
        if self.seen == Some(false) && self.read != Some(true) {
            // Unseen is unread too.
            clear |= READ_BIT;
        }
        if set == 0 && clear == 0 {
            return Err(bad("/", "set at least one of seen, read or archived"));
        }
        Ok(Change {
            set,
            clear,
            targets,
        })
    }
}

/// A cursor (a sequence number) read.
fn cursor(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|seq| *seq > 0)
}

/// A message's state as the API shows it.
fn state_view(bits: u8) -> Value {
    json!({"seen": bits & SEEN != 0, "read": bits & READ_BIT != 0, "archived": bits & ARCHIVED != 0})
}

/// Each message that changed, as `{id, seen, read, archived}`.
fn changes_view(result: &StateChange) -> Vec<Value> {
    result
        .changed
        .iter()
        .map(|changed| {
            let mut view = state_view(changed.after);
            view["id"] = json!(changed.id);
            view
        })
        .collect()
}

/// The `counts` frame.
pub fn counts_frame(counts: &Counts) -> String {
    json!({"type": "counts", "unread": counts.unread, "unseen": counts.unseen, "total": counts.total})
        .to_string()
}

/// The user's counts.
pub async fn counts(hub: &Hub, keys: &InboxKeys) -> redis::RedisResult<Counts> {
    let mut redis = hub.redis.clone();
    let change = inbox::change_state(&mut redis, keys, 0, 0, &Targets::Ids(Vec::new())).await?;
    Ok(change.counts)
}

/// Why a change was not made.
#[derive(Debug)]
pub enum ChangeError {
    /// These ids are not in the user's history (nothing changed).
    NotFound(Vec<String>),
    /// Redis did not answer.
    Redis(redis::RedisError),
}

/// Applies `change` to `user`'s history: reports `read` for what became read and tells every
/// socket of the user.
pub async fn apply(
    hub: &Hub,
    app: &AppId,
    user: &UserId,
    change: &Change,
) -> Result<StateChange, ChangeError> {
    let keys = InboxKeys::new(app, user);
    let mut redis = hub.redis.clone();
    let result = inbox::change_state(&mut redis, &keys, change.set, change.clear, &change.targets)
        .await
        .map_err(ChangeError::Redis)?;
    if !result.missing.is_empty() {
        return Err(ChangeError::NotFound(result.missing));
    }
    metrics::counter!("sprayer_inbox_state_changes_total").increment(result.changed.len() as u64);
    for changed in &result.changed {
        if changed.after & READ_BIT != 0 && changed.before & READ_BIT == 0 {
            hub.reporter
                .report(ws_event(app, user, &changed.id, DeliveryStatus::Read, None))
                .await;
        }
    }
    if !result.changed.is_empty() {
        let changes = changes_view(&result);
        let frames = vec![
            json!({"type": "state", "changes": changes}).to_string(),
            counts_frame(&result.counts),
        ];
        if let Err(error) = crate::wake::publish_frames(&mut redis, app, user, frames).await {
            tracing::warn!(%error, "cannot tell the user's sockets of a state change");
        }
    }
    Ok(result)
}

/// The routes, with their CORS answers.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/inbox", get(list))
        .route("/v1/inbox/counts", get(read_counts))
        .route("/v1/inbox/ack", post(ack))
        .route("/v1/inbox/state", post(change_state))
        .layer(crate::user_routes::cors())
        .with_state(hub)
}

fn json_response(body: &Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The query of `GET /v1/inbox`.
struct ListQuery {
    state: String,
    cursor: Option<i64>,
    limit: usize,
}

fn list_query(raw: Option<&str>) -> Result<ListQuery, Refused> {
    let mut query = ListQuery {
        state: "active".into(),
        cursor: None,
        limit: 20,
    };
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "state" => {
                if !["active", "all", "unread", "unseen", "read", "archived"]
                    .contains(&value.as_ref())
                {
                    return Err(Refused::invalid(
                        "state".into(),
                        "one of active, all, unread, unseen, read, archived".into(),
                    ));
                }
                query.state = value.into_owned();
            }
            "cursor" => {
                query.cursor = Some(cursor(&value).ok_or_else(|| {
                    Refused::invalid("cursor".into(), "a next_cursor this route answered".into())
                })?);
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_PAGE).contains(limit))
                    .ok_or_else(|| {
                        Refused::invalid("limit".into(), format!("from 1 to {MAX_PAGE}"))
                    })?;
            }
            other => {
                return Err(Refused::invalid(
                    other.to_owned(),
                    "not a parameter of this route (state, cursor, limit)".into(),
                ));
            }
        }
    }
    Ok(query)
}

async fn list(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let outcome = async {
        let (app, user) = bearer(&hub, &headers)?;
        let query = list_query(raw.as_deref())?;
        let keys = InboxKeys::new(&app, &user);
        let mut redis = hub.redis.clone();
        let (page, next) =
            inbox::history(&mut redis, &keys, query.cursor, query.limit, &query.state)
                .await
                .map_err(|error| Refused::unavailable(&error))?;
        let counts = counts(&hub, &keys)
            .await
            .map_err(|error| Refused::unavailable(&error))?;
        let items: Vec<Value> = page
            .iter()
            .map(|past| {
                let mut item = state_view(past.bits);
                item["id"] = json!(past.id);
                item["seq"] = json!(past.seq.to_string());
                item["message"] = serde_json::from_str(&past.message).unwrap_or(Value::Null);
                item
            })
            .collect();
        Ok::<_, Refused>(json_response(&json!({
            "items": items,
            "next_cursor": next.map(|seq| seq.to_string()),
            "counts": counts,
        })))
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}

async fn read_counts(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let outcome = async {
        let (app, user) = bearer(&hub, &headers)?;
        let counts = counts(&hub, &InboxKeys::new(&app, &user))
            .await
            .map_err(|error| Refused::unavailable(&error))?;
        Ok::<_, Refused>(json_response(&json!(counts)))
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}

/// The body of `POST /v1/inbox/ack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    ids: Vec<String>,
}

/// Why an ack was not taken.
#[derive(Debug)]
pub enum AckError {
    /// Redis did not store it.
    Unstored(redis::RedisError),
    /// The broker did not confirm the `delivered` feedback.
    Unconfirmed(String),
}

/// Acknowledges `ids` for `user`: out of the inbox, `delivered` published with a confirm
/// before this returns (so an ack the client saw confirmed is recorded). An ack sent again
/// publishes again (the feeder keeps one record).
pub async fn acknowledge(
    hub: &Hub,
    app: &AppId,
    user: &UserId,
    keys: &InboxKeys,
    ids: &[String],
) -> Result<inbox::Acked, AckError> {
    let mut redis = hub.redis.clone();
    let acked = inbox::acknowledge(&mut redis, keys, ids)
        .await
        .map_err(AckError::Unstored)?;
    metrics::counter!("sprayer_ws_acks_total").increment(acked.removed.len() as u64);
    let events: Vec<_> = acked
        .removed
        .iter()
        .chain(&acked.before)
        .filter_map(|id| ws_event(app, user, id, DeliveryStatus::Delivered, None))
        .collect();
    hub.publish_events(events)
        .await
        .map_err(|error| AckError::Unconfirmed(error.to_string()))?;
    Ok(acked)
}

async fn ack(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let outcome = async {
        let (app, user) = bearer(&hub, &headers)?;
        let request: AckRequest = decoded(&body)?;
        if request.ids.is_empty() || request.ids.len() > MAX_IDS {
            return Err(Refused::invalid(
                "/ids".into(),
                format!("from 1 to {MAX_IDS} ids"),
            ));
        }
        if let Some(index) = request
            .ids
            .iter()
            .position(|id| MessageId::parse(id).is_err())
        {
            return Err(Refused::invalid(
                format!("/ids/{index}"),
                "not a message id".into(),
            ));
        }
        let keys = InboxKeys::new(&app, &user);
        acknowledge(&hub, &app, &user, &keys, &request.ids)
            .await
            .map_err(|error| match error {
                AckError::Unstored(error) => Refused::unavailable(&error),
                AckError::Unconfirmed(detail) => {
                    tracing::warn!(detail, "cannot publish delivered events");
                    Refused::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the acks were not confirmed; send them again",
                    )
                }
            })?;
        Ok(json_response(&json!({"acked": request.ids})))
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}

/// What `POST /v1/inbox/state` answers.
#[derive(Debug, Serialize)]
struct ChangeView {
    changed: Vec<Value>,
    counts: Counts,
}

async fn change_state(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let outcome = async {
        let (app, user) = bearer(&hub, &headers)?;
        let request: StateRequest = decoded(&body)?;
        let change = request
            .checked()
            .map_err(|bad| Refused::invalid(bad.field, bad.detail))?;
        let result = apply(&hub, &app, &user, &change)
            .await
            .map_err(|error| change_refused(error, request.ids.as_deref()))?;
        let changed = changes_view(&result);
        Ok::<_, Refused>(json_response(&json!(ChangeView {
            changed,
            counts: result.counts,
        })))
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}

/// A failed change as a refusal: a 404 naming the first id not in the user's history.
pub fn change_refused(error: ChangeError, ids: Option<&[String]>) -> Refused {
    match error {
        ChangeError::Redis(error) => Refused::unavailable(&error),
        ChangeError::NotFound(missing) => {
            let index = ids
                .and_then(|ids| ids.iter().position(|id| missing.contains(id)))
                .unwrap_or(0);
            Refused::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{} is not in this user's history", missing[0]),
            )
            .at(format!("/ids/{index}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> StateRequest {
        serde_json::from_value(value).expect("a request")
    }

    #[test]
    fn a_state_request_names_its_messages_once_and_sets_something() {
        let read = request(json!({"ids": ["m1"], "read": true})).checked();
        assert_eq!(
            read,
            Ok(Change {
                set: READ_BIT,
                clear: 0,
                targets: Targets::Ids(vec!["m1".into()])
            })
        );
        let unseen = request(json!({"all": true, "seen": false})).checked();
        assert_eq!(unseen.map(|change| change.clear), Ok(SEEN | READ_BIT));
        let older = request(json!({"before": "1763790000000000", "archived": true})).checked();
        assert_eq!(
            older.map(|change| change.targets),
            Ok(Targets::Before(1_763_790_000_000_000))
        );
        let field = |value: Value| request(value).checked().map_err(|bad| bad.field);
        assert_eq!(field(json!({"read": true})), Err("/".into()));
        assert_eq!(
            field(json!({"ids": ["m1"], "all": true, "read": true})),
            Err("/".into())
        );
        assert_eq!(field(json!({"ids": ["m1"]})), Err("/".into()));
        assert_eq!(field(json!({"ids": [], "read": true})), Err("/ids".into()));
        assert_eq!(
            field(json!({"ids": ["ok", "no way"], "read": true})),
            Err("/ids/1".into())
        );
        assert_eq!(
            field(json!({"before": "soon", "read": true})),
            Err("/before".into())
        );
        assert_eq!(
            field(json!({"all": false, "read": true})),
            Err("/all".into())
        );
    }

    #[test]
    fn list_queries_are_checked() {
        assert!(list_query(None).is_ok_and(|query| query.state == "active" && query.limit == 20));
        assert!(
            list_query(Some("state=unread&limit=5&cursor=17"))
                .is_ok_and(|query| query.cursor == Some(17))
        );
        for bad in ["state=new", "limit=0", "limit=101", "cursor=x", "page=2"] {
            assert!(list_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
