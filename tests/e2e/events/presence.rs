//! Presence across two deliverer nodes (one in its own process): online at the first socket on
//! either node, offline once the last one closed and the debounce passed, one event each; a
//! reconnect within the debounce makes none.

use std::time::Duration;

use serde_json::Value;

use super::support::{events_app, whole_feed};
use crate::support::app::TestApp;
use crate::support::owned::process::SprayerProcess;
use crate::support::stack::serve_ws;
use crate::support::wait::wait_until;
use crate::support::ws_client::WsClient;

async fn presence(app: &TestApp, user: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/users/{user}/presence")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_presence(app: &TestApp, user: &str, online: bool, sockets: u64, nodes: u64) {
    let reached = wait_until(Duration::from_secs(20), || async {
        let now = presence(app, user).await;
        (now["online"] == online && now["sockets"] == sockets && now["nodes"] == nodes)
            .then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "expected online={online} sockets={sockets} nodes={nodes}, saw {}",
        presence(app, user).await
    );
}

async fn presence_events(app: &TestApp, user: &str) -> Vec<String> {
    whole_feed(app, Some("user.*"))
        .await
        .into_iter()
        .filter(|event| event["data"]["user"] == user)
        .filter_map(|event| event["type"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_is_online_across_two_nodes_once_and_offline_once_after_the_debounce() {
    let app = events_app(|settings| {
        serve_ws(settings);
        settings.deliverer.presence_debounce = Duration::from_secs(3);
        settings.deliverer.conn_ttl = Duration::from_secs(3);
        settings.deliverer.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let node_a = SprayerProcess::start(&app.settings, "deliverer").await;
    let a = node_a.ws.clone().expect("node A's address");
    let b = app.ws.clone().expect("node B's address");
    let (status, before) = app.get("/v1/users/ada/presence").await;
    assert_eq!(status, 200);
    assert_eq!(before["online"], false, "{before}");

    let token = app.ws_token("ada").await;
    let on_a = WsClient::open(&format!("{a}/v1/ws?token={token}")).await;
    wait_presence(&app, "ada", true, 1, 1).await;
    let on_b = WsClient::open(&format!("{b}/v1/ws?token={token}")).await;
    wait_presence(&app, "ada", true, 2, 2).await;
    assert!(presence(&app, "ada").await["since"].is_string());
    on_a.close().await;
    wait_presence(&app, "ada", true, 1, 1).await;
    // The last socket closes and another opens within the debounce: still online, no event.
    on_b.close().await;
    let again = WsClient::open(&format!("{a}/v1/ws?token={token}")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_presence(&app, "ada", true, 1, 1).await;
    let online = wait_until(Duration::from_secs(20), || async {
        let events = presence_events(&app, "ada").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(online.as_deref(), Some(&["user.online".to_owned()][..]));
    // Now for good: offline once the debounce has passed, one event.
    again.close().await;
    wait_presence(&app, "ada", false, 0, 0).await;
    let events = wait_until(Duration::from_secs(20), || async {
        let events = presence_events(&app, "ada").await;
        (events.len() >= 2).then_some(events)
    })
    .await
    .expect("user.offline arrives");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events, ["user.online", "user.offline"]);
    assert_eq!(
        presence_events(&app, "ada").await,
        events,
        "nothing more came"
    );
    drop(node_a);
}
