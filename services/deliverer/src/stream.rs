//! The inbox without a WebSocket: Server-Sent Events and long-poll, with the same guarantees
//! as the socket (durable, acknowledged, ordered, on every node). Both register with the node
//! like a socket, so wake-ups reach them whichever node stored the message; acks go over HTTP
//! (`POST /v1/inbox/ack`, [`crate::center`]).
//!
//! - `GET /v1/sse?token=` (`EventSource`): `counts` first, then `message` events (`id:` the
//!   inbox sequence, `data:` the message), `state` and `counts` as the history changes, and a
//!   comment every `deliverer.heartbeat`. A reconnect with `Last-Event-ID` (or
//!   `?last_event_id=`) gets exactly what came after that event, in order.
//! - `GET /v1/poll?token=&after=`: the messages after `after` at once when there are any, else
//!   waits up to `deliverer.poll_timeout` for one; `{"messages": [{"seq", "message"}],
//!   "cursor", "more"}`. The next poll passes `cursor` as `after`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sprayer_shared::model::{AppId, DeliveryStatus, UserId};
use tokio::sync::mpsc;

use crate::hub::Hub;
use crate::inbox::{self, InboxKeys};
use crate::registry::Push;
use crate::reporter::ws_event;
use crate::user_routes::{Refused, bearer_token};

/// The routes, with their CORS answers.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/sse", get(sse))
        .route("/v1/poll", get(poll))
        .layer(crate::user_routes::cors())
        .with_state(hub)
}

/// The query parameters of both routes.
#[derive(Debug, Default)]
struct StreamQuery {
    token: Option<String>,
    after: Option<String>,
}

fn stream_query(raw: Option<&str>, cursor_name: &str) -> Result<StreamQuery, Refused> {
    let mut query = StreamQuery::default();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "token" => query.token = Some(value.into_owned()),
            name if name == cursor_name => query.after = Some(value.into_owned()),
            other => {
                return Err(Refused::invalid(
                    other.to_owned(),
                    format!("not a parameter of this route (token, {cursor_name})"),
                ));
            }
        }
    }
    Ok(query)
}

/// A cursor read and checked against the newest sequence number given (`field` names it).
async fn checked_cursor(hub: &Hub, text: Option<&str>, field: &str) -> Result<i64, Refused> {
    let Some(text) = text.filter(|text| !text.is_empty()) else {
        return Ok(0);
    };
    let after = text
        .parse::<i64>()
        .ok()
        .filter(|after| *after >= 0)
        .ok_or_else(|| {
            Refused::invalid(
                field.into(),
                "an inbox sequence number (an event's id, a poll's cursor)".into(),
            )
        })?;
    let mut redis = hub.redis.clone();
    let newest: Option<i64> = redis::cmd("GET")
        .arg(crate::startup::seq_key(&hub.settings))
        .query_async(&mut redis)
        .await
        .map_err(|error| Refused::unavailable(&error))?;
    if after > newest.unwrap_or(0) {
        return Err(Refused::invalid(
            field.into(),
            "beyond the newest message: pass an id or cursor this node gave".into(),
        ));
    }
    Ok(after)
}

/// Reports `sent` for what a stream handed out, and `expired` for what it found expired.
async fn report(hub: &Hub, app: &AppId, user: &UserId, read: &inbox::Read) {
    for id in &read.expired {
        hub.reporter
            .report(ws_event(app, user, id, DeliveryStatus::Expired, None))
            .await;
    }
    for entry in &read.entries {
        metrics::counter!("sprayer_ws_messages_sent_total").increment(1);
        hub.reporter
            .report(ws_event(app, user, &entry.id, DeliveryStatus::Sent, None))
            .await;
    }
}

/// A registration of a stream with the node, removed when dropped.
struct Registered {
    hub: Arc<Hub>,
    app: AppId,
    user: UserId,
    id: u64,
}

impl Registered {
    async fn new(
        hub: &Arc<Hub>,
        app: &AppId,
        user: &UserId,
    ) -> Result<(Registered, mpsc::Receiver<Push>), Refused> {
        let (sender, pushes) = mpsc::channel(hub.settings.deliverer.send_buffer);
        let id = hub
            .registry
            .register(app, user, sender)
            .await
            .map_err(|error| Refused::unavailable(&error))?;
        hub.presence.opened(app, user).await;
        Ok((
            Registered {
                hub: hub.clone(),
                app: app.clone(),
                user: user.clone(),
                id,
            },
            pushes,
        ))
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.hub.registry.unregister(&self.app, &self.user, self.id);
        let (hub, app, user) = (self.hub.clone(), self.app.clone(), self.user.clone());
        tokio::spawn(async move { hub.presence.closed(&app, &user).await });
    }
}

async fn sse(State(hub): State<Arc<Hub>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let outcome = async {
        let query = stream_query(raw.as_deref(), "last_event_id")?;
        let (app, user) = bearer_token(&hub, &headers, query.token.as_deref())?;
        let last = headers
            .get("last-event-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or(query.after);
        let cursor = checked_cursor(&hub, last.as_deref(), "Last-Event-ID").await?;
        if hub.draining.is_cancelled() {
            return Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this node is stopping; connect to another",
            ));
        }
        let (registered, pushes) = Registered::new(&hub, &app, &user).await?;
        metrics::counter!("sprayer_sse_connections_total").increment(1);
        let (events, mut stream) = mpsc::channel::<Result<Event, Infallible>>(64);
        tokio::spawn(pump(registered, pushes, events, cursor));
        let stream = futures::stream::poll_fn(move |context| stream.poll_recv(context));
        Ok::<_, Refused>(
            Sse::new(stream)
                .keep_alive(KeepAlive::new().interval(hub.settings.deliverer.heartbeat))
                .into_response(),
        )
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}

/// One SSE connection's events until the client goes (its receiver is dropped), the node
/// stops, or it cannot keep up (the registry dropped it).
async fn pump(
    registered: Registered,
    mut pushes: mpsc::Receiver<Push>,
    events: mpsc::Sender<Result<Event, Infallible>>,
    mut cursor: i64,
) {
    let hub = registered.hub.clone();
    let keys = InboxKeys::new(&registered.app, &registered.user);
    let send = async |event: Event| events.send(Ok(event)).await.is_ok();
    if hub.settings.deliverer.history_max > 0 {
        match crate::center::counts(&hub, &keys).await {
            Ok(counts) => {
                let data = crate::center::counts_frame(&counts);
                if !send(Event::default().event("counts").data(data)).await {
                    return;
                }
            }
            Err(error) => tracing::warn!(%error, "cannot count a history"),
        }
    }
    let mut catch_up = true;
    let draining = hub.draining.clone();
    loop {
        if catch_up {
            catch_up = false;
            let batch = hub.settings.deliverer.read_batch;
            loop {
                let mut redis = hub.redis.clone();
                let read = match inbox::read(&mut redis, &keys, cursor, batch).await {
                    Ok(read) => read,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read an inbox for an event stream");
                        return;
                    }
                };
                for entry in &read.entries {
                    let event = Event::default()
                        .event("message")
                        .id(entry.seq.to_string())
                        .data(&entry.message);
                    if !send(event).await {
                        return;
                    }
                }
                report(&hub, &registered.app, &registered.user, &read).await;
                cursor = cursor.max(read.cursor);
                if !read.more {
                    break;
                }
            }
        }
        let push = tokio::select! {
            _ = draining.cancelled() => {
                let _ = send(Event::default().event("reconnect").data(r#"{"reason":"the node is stopping"}"#)).await;
                return;
            }
            () = events.closed() => return,
            push = pushes.recv() => push,
        };
        match push {
            None => {
                metrics::counter!("sprayer_sse_closed_total", "reason" => "slow_consumer")
                    .increment(1);
                return;
            }
            Some(Push::Entry { seq, .. } | Push::Stored { seq }) if seq <= cursor => {}
            Some(Push::Entry {
                seq, id, message, ..
            }) => {
                let event = Event::default()
                    .event("message")
                    .id(seq.to_string())
                    .data(&*message);
                if !send(event).await {
                    return;
                }
                cursor = seq;
                metrics::counter!("sprayer_ws_messages_sent_total").increment(1);
                hub.reporter
                    .report(ws_event(
                        &registered.app,
                        &registered.user,
                        &id,
                        DeliveryStatus::Sent,
                        None,
                    ))
                    .await;
            }
            Some(Push::Stored { .. } | Push::CatchUp) => catch_up = true,
            Some(Push::Frame(frame)) => {
                let kind = serde_json::from_str::<Value>(&frame)
                    .ok()
                    .and_then(|value| value["type"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "state".into());
                if !send(Event::default().event(kind).data(&*frame)).await {
                    return;
                }
            }
        }
    }
}

async fn poll(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let outcome = async {
        let query = stream_query(raw.as_deref(), "after")?;
        let (app, user) = bearer_token(&hub, &headers, query.token.as_deref())?;
        let cursor = checked_cursor(&hub, query.after.as_deref(), "after").await?;
        let keys = InboxKeys::new(&app, &user);
        // Registered before the first read, so that a message stored between the read and the
        // wait wakes it.
        let (registered, mut pushes) = Registered::new(&hub, &app, &user).await?;
        let batch = hub.settings.deliverer.read_batch;
        let mut redis = hub.redis.clone();
        let mut read = inbox::read(&mut redis, &keys, cursor, batch)
            .await
            .map_err(|error| Refused::unavailable(&error))?;
        if read.entries.is_empty() {
            let deadline = tokio::time::Instant::now() + hub.settings.deliverer.poll_timeout;
            loop {
                let push = tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    _ = hub.draining.cancelled() => break,
                    push = pushes.recv() => push,
                };
                match push {
                    Some(Push::Frame(_)) => {}
                    Some(Push::Entry { seq, .. } | Push::Stored { seq }) if seq <= cursor => {}
                    _ => {
                        read = inbox::read(&mut redis, &keys, cursor, batch)
                            .await
                            .map_err(|error| Refused::unavailable(&error))?;
                        if !read.entries.is_empty() {
                            break;
                        }
                    }
                }
            }
        }
        drop(registered);
        report(&hub, &app, &user, &read).await;
        metrics::counter!("sprayer_poll_requests_total").increment(1);
        let messages: Vec<Value> = read
            .entries
            .iter()
            .map(|entry| {
                json!({"seq": entry.seq.to_string(), "message": serde_json::from_str::<Value>(&entry.message).unwrap_or(Value::Null)})
            })
            .collect();
        let body =
            json!({"messages": messages, "cursor": read.cursor.to_string(), "more": read.more});
        Ok::<_, Refused>(
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body.to_string(),
            )
                .into_response(),
        )
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}
