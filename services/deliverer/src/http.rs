//! The deliverer's HTTP routes: `GET /v1/ws` (the WebSocket), the user's own preferences
//! ([`crate::preferences`]), the demo page and its client module, and the operations endpoints.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::hub::Hub;
use crate::socket::{self, Connect};

/// The demo page: connects, shows the inbox live, acks what it shows.
const DEMO_PAGE: &str = include_str!("../assets/demo.html");
/// The browser client, a plain ES module: the npm package `clients/js`.
const CLIENT_MODULE: &str = include_str!("../../../clients/js/sprayer-client.js");

/// The routes of one node (the operations routes are merged in by the caller).
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/ws", get(upgrade))
        .route("/demo", get(demo))
        .route("/sprayer-client.js", get(client_module))
        .with_state(hub.clone())
        .merge(crate::preferences::router(hub.clone()))
        .merge(crate::center::router(hub.clone()))
        .merge(crate::stream::router(hub))
}

fn parse_query(raw: Option<&str>) -> Connect {
    let mut connect = Connect::default();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "token" => connect.token = Some(value.into_owned()),
            "app" => connect.app = Some(value.into_owned()),
            _ => {}
        }
    }
    connect
}

async fn upgrade(
    State(hub): State<Arc<Hub>>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return not_a_websocket(&rejection),
    };
    if hub.draining.is_cancelled() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Node stopping",
            "this node is stopping; connect to another",
        );
    }
    let connect = parse_query(query.as_deref());
    let settings = &hub.settings.deliverer;
    upgrade
        .read_buffer_size(settings.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(settings.max_frame_bytes.max(64 * 1024) * 4)
        .max_message_size(settings.max_frame_bytes)
        .max_frame_size(settings.max_frame_bytes)
        .on_upgrade(move |websocket| socket::run(hub, websocket, connect))
}

fn not_a_websocket(rejection: &WebSocketUpgradeRejection) -> Response {
    problem(
        StatusCode::UPGRADE_REQUIRED,
        "WebSocket upgrade required",
        &format!("{rejection}; open this URL with a WebSocket client"),
    )
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn demo() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DEMO_PAGE,
    )
        .into_response()
}

async fn client_module() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CLIENT_MODULE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_decoded() {
        let connect = parse_query(Some("token=a%2Eb.c&app=app_1&x=y"));
        assert_eq!(connect.token.as_deref(), Some("a.b.c"));
        assert_eq!(connect.app.as_deref(), Some("app_1"));
        assert!(parse_query(None).token.is_none());
    }
}
