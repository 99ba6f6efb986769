//! WebSocket inboxes on a Redis Cluster of the test's own: live, on connect and for a group whose
//! inboxes lie on every node, and past a stopped first seed; and a cluster speaking TLS only
//! (`rediss://`, its CA in `redis.ca_file`) serving a group and WebSocket inboxes the same way.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use super::redis_cluster::{assert_delivered_once, on_cluster};
use crate::support::app::TestApp;
use crate::support::certificates::TestCa;
use crate::support::owned::redis::OwnedRedisCluster;
use crate::support::receiver::{Receiver, register_group, webhook_secret};
use crate::support::stack::serve_ws;
use crate::support::wait::wait_until;
use crate::support::ws_client::{Frame, WsClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_ws_inboxes_deliver_live_on_connect_and_past_a_stopped_seed() {
    const WAIT: Duration = Duration::from_secs(20);
    const OFFLINE: usize = 30;
    let mut cluster = OwnedRedisCluster::start(3).await;
    let app = TestApp::spawn_with(|settings| {
        on_cluster(settings, &cluster);
        serve_ws(settings);
    })
    .await;

    // Live: alice is connected when her message is sent.
    let alice_token = app.ws_token("alice").await;
    let mut alice = WsClient::open(&app.ws_url(&alice_token)).await;
    let started = Instant::now();
    let live = app.send_ws("alice", "live").await;
    let got = alice.next_message(WAIT).await.expect("the live message");
    let live_took = started.elapsed();
    assert_eq!(got["id"], live.as_str());
    alice.ack(std::slice::from_ref(&live)).await;
    app.wait_for_status(&live, "ws", "delivered", 1, WAIT).await;

    // Offline: bob's inbox keeps his message until he connects.
    let bob_token = app.ws_token("bob").await;
    let offline = app.send_ws("bob", "while you were away").await;
    app.wait_for_status(&offline, "ws", "queued", 1, WAIT).await;
    let mut bob = WsClient::open(&app.ws_url(&bob_token)).await;
    let got = bob.next_message(WAIT).await.expect("the backlog");
    assert_eq!(got["id"], offline.as_str());
    assert_eq!(got["body"], "while you were away");
    bob.ack(std::slice::from_ref(&offline)).await;
    app.wait_for_status(&offline, "ws", "delivered", 1, WAIT)
        .await;

    // A group over ws: its users' inboxes lie on every node. Alice and Bob get it live, the
    // others when they connect.
    let mut tokens = Vec::new();
    for index in 0..OFFLINE {
        let user = format!("w{index}");
        tokens.push((user.clone(), app.ws_token(&user).await));
        app.add_member("room", &user).await;
    }
    app.add_member("room", "alice").await;
    app.add_member("room", "bob").await;
    let everyone = OFFLINE as u64 + 2;
    let group = app
        .send_ok(&json!({ "to": { "group": "room" }, "channels": ["ws"], "content": { "title": "t", "body": "room" } }))
        .await;
    for socket in [&mut alice, &mut bob] {
        let got = socket.next_message(WAIT).await.expect("the group message");
        assert_eq!(got["id"], group.as_str());
        assert!(socket.ack_later(std::slice::from_ref(&group)).await);
    }
    app.wait_for_status(&group, "ws", "queued", OFFLINE as u64, WAIT)
        .await;
    for (user, token) in &tokens {
        let mut socket = WsClient::open(&app.ws_url(token)).await;
        let got = socket
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("{user} gets the group message on connect"));
        assert_eq!(got["id"], group.as_str(), "{user}");
        socket.ack(std::slice::from_ref(&group)).await;
        socket.close().await;
    }
    let summary = app
        .wait_for_status(&group, "ws", "delivered", everyone, WAIT)
        .await;
    assert_eq!(summary["total"].as_u64(), Some(everyone), "{summary}");
    let keys = cluster.keys_per_node().await;
    alice.close().await;
    bob.close().await;

    // The node's wake-up subscription lives on the first seed; when that node stops it moves to
    // another seed, and once the cluster is back a socket gets a message sent after it opened.
    let channels: Vec<String> = cluster.nodes[0]
        .command(
            &redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg("node:*")
                .to_owned(),
        )
        .await
        .unwrap_or_default();
    assert_eq!(
        channels.len(),
        1,
        "subscribed on the first seed: {channels:?}"
    );
    let channel = channels[0].clone();
    cluster.nodes[0].stop().await;
    let stopped = Instant::now();
    let moved = wait_until(Duration::from_secs(30), || async {
        for node in &cluster.nodes[1..] {
            let numsub = node
                .command::<(String, i64)>(
                    &redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).to_owned(),
                )
                .await;
            if numsub.is_some_and(|(_, count)| count > 0) {
                return Some(stopped.elapsed());
            }
        }
        None
    })
    .await
    .expect("the subscription moved to another seed node");
    cluster.nodes[0].up().await;
    let healed = cluster
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect("the cluster is healthy again within 60 s");
    let back = Instant::now();
    let live_again = wait_until(Duration::from_secs(90), || async {
        let mut socket = try_open(&app.ws_url(&alice_token)).await?;
        let id = app.send_ws("alice", "after the stop").await;
        let got = receives(&mut socket, &id, Duration::from_secs(15)).await;
        socket.close().await;
        got.then(|| back.elapsed())
    })
    .await
    .expect("a live message after the first seed came back");
    eprintln!(
        "redis cluster figures: ws on 3 nodes (keys per node {keys:?}): a live message in {live_took:?}, an offline one on connect, a group of {everyone} (2 live, {OFFLINE} on connect) all delivered; first seed stopped: the wake-up subscription moved in {moved:?}, healthy {healed:?} after its restart, live messages again {live_again:?} after that"
    );
}

/// Opens a socket and waits for `hello`; `None` when it is refused or closed (Redis away).
async fn try_open(url: &str) -> Option<WsClient> {
    let (stream, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let mut client = WsClient::from_stream(stream);
    match client.next(Duration::from_secs(15)).await {
        Some(Frame::Json(hello)) if hello["type"] == "hello" => Some(client),
        _ => None,
    }
}

/// Whether message `id` comes on `socket` within `within` (older messages are skipped).
async fn receives(socket: &mut WsClient, id: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.next(left).await {
            Some(Frame::Json(frame)) if frame["type"] == "message" => {
                if frame["message"]["id"] == id {
                    return true;
                }
            }
            Some(Frame::Json(_)) => {}
            _ => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_over_tls_a_group_and_ws_inboxes_work() {
    const MEMBERS: usize = 300;
    const WAIT: Duration = Duration::from_secs(30);
    let ca = TestCa::new();
    let cluster = OwnedRedisCluster::start_tls(3, ca.dir.path()).await;
    assert!(cluster.url().starts_with("rediss://"), "{}", cluster.url());
    let app = TestApp::spawn_with(|settings| {
        serve_ws(settings);
        on_cluster(settings, &cluster);
        settings.redis.ca_file = Some(ca.ca_file());
    })
    .await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    let users: HashSet<String> = register_group(&app, &receiver, &secret, MEMBERS, "secure")
        .await
        .into_iter()
        .collect();
    let id = app
        .send_ok(&json!({ "to": { "group": "secure" }, "content": { "body": "over TLS" } }))
        .await;
    assert_delivered_once(&app, &receiver, &secret, &id, &users).await;

    // An inbox read on connect and a live message woken through pub/sub, both over TLS.
    let token = app.ws_token("alice").await;
    let stored = app.send_ws("alice", "kept for later").await;
    app.wait_for_status(&stored, "ws", "queued", 1, WAIT).await;
    let mut socket = WsClient::open(&app.ws_url(&token)).await;
    assert!(receives(&mut socket, &stored, WAIT).await, "the inbox");
    let live = app.send_ws("alice", "live").await;
    assert!(receives(&mut socket, &live, WAIT).await, "the live message");
    socket.ack(&[stored, live.clone()]).await;
    app.wait_for_status(&live, "ws", "delivered", 1, WAIT).await;
    socket.close().await;

    let keys = cluster.keys_per_node().await;
    assert!(keys.iter().all(|count| *count > 0), "{keys:?}");
    eprintln!(
        "redis cluster tls figures: 3 nodes over rediss:// (keys per node {keys:?}); a group of {MEMBERS} delivered once each, an inbox and a live ws message"
    );
}
