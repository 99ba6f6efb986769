//! `GET /v1/users/{user}/presence`: whether a user has a WebSocket open on any deliverer node,
//! from the counts the nodes keep in `pres:{app:user}` (see the deliverer's presence module).

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{UserId, now_ms};
use sprayer_shared::redis::presence_key;
use utoipa::ToSchema;

use crate::extract::PathParams;
use crate::problem::{ApiError, Problem};
use crate::routes::endpoints::checked_id;
use crate::state::{AppState, Caller};

/// Where a user stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceView {
    /// Whether the user is online: a socket is open, or the last one closed less than
    /// `deliverer.presence_debounce` ago.
    pub online: bool,
    /// Sockets open now, on every node.
    pub sockets: u64,
    /// Deliverer nodes holding them.
    pub nodes: u64,
    /// Since when the user has been online (RFC 3339), when online.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// A user's presence across every deliverer node.
#[utoipa::path(
    get, path = "/v1/users/{user}/presence", tag = "events",
    params(("user" = String, Path)),
    responses(
        (status = 200, body = PresenceView),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("app_key" = []))
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(user): PathParams<String>,
) -> Result<Json<PresenceView>, ApiError> {
    let user = checked_id::<UserId>("user", &user)?;
    let mut redis = state.redis.clone();
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(presence_key(&caller.app, &user))
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    let now = now_ms();
    let (mut sockets, mut nodes) = (0, 0);
    for (field, count) in &fields {
        let Some(node) = field.strip_prefix("n:") else {
            continue;
        };
        let alive = fields
            .get(&format!("u:{node}"))
            .and_then(|until| until.parse::<i64>().ok())
            .is_some_and(|until| until > now);
        if alive {
            sockets += count.parse::<u64>().unwrap_or(0);
            nodes += 1;
        }
    }
    let online = fields.get("online").is_some_and(|flag| flag == "1");
    let since = fields
        .get("since")
        .and_then(|since| since.parse::<i64>().ok())
        .filter(|_| online)
        .map(|since| sprayer_shared::feed::rfc3339(sprayer_shared::mongo::date(since)));
    Ok(Json(PresenceView {
        online,
        sockets,
        nodes,
        since,
    }))
}
