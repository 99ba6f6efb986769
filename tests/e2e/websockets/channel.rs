//! The WebSocket channel: durable inboxes, acknowledged delivery, order, expiry, tokens,
//! heartbeats and draining, against the real deliverer, Redis and RabbitMQ.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sprayer_shared::model::{AppId, UserId, now_ms};

use crate::support::app::TestApp;
use crate::support::stack::serve_ws;
use crate::support::wait::wait_until;
use crate::support::ws_client::{Frame, WsClient};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(600);

async fn spawn() -> TestApp {
    TestApp::spawn_with(serve_ws).await
}

/// Sends a marker message and checks it is the first message the socket gets: nothing older
/// is left for it.
async fn assert_nothing_old(app: &TestApp, client: &mut WsClient, user: &str) {
    let marker = app.send_ws(user, "marker").await;
    let first = client.next_message(WAIT).await.expect("the marker arrives");
    assert_eq!(
        first["id"],
        marker.as_str(),
        "an old message came first: {first}"
    );
    client.ack(&[marker]).await;
}

#[tokio::test]
async fn an_offline_user_receives_on_connect_on_every_device_and_an_ack_ends_it() {
    let app = spawn().await;
    let token = app.ws_token("alice").await;
    let id = app.send_ws("alice", "while you were away").await;
    app.wait_for_status(&id, "ws", "queued", 1, WAIT).await;

    let mut laptop = WsClient::open(&app.ws_url(&token)).await;
    let mut phone = WsClient::open(&app.ws_url(&token)).await;
    for device in [&mut laptop, &mut phone] {
        let message = device
            .next_message(WAIT)
            .await
            .expect("the backlog arrives");
        assert_eq!(message["id"], id.as_str());
        assert_eq!(message["body"], "while you were away");
        assert_eq!(message["title"], "t");
    }
    app.wait_for_status(&id, "ws", "sent", 1, WAIT).await;

    // Live: both devices get a message sent while they are connected.
    let live = app.send_ws("alice", "live").await;
    for device in [&mut laptop, &mut phone] {
        let message = device
            .next_message(WAIT)
            .await
            .expect("the live message arrives");
        assert_eq!(message["id"], live.as_str());
    }

    laptop.ack(&[id.clone(), live.clone()]).await;
    app.wait_for_status(&id, "ws", "delivered", 1, WAIT).await;
    app.wait_for_status(&live, "ws", "delivered", 1, WAIT).await;
    laptop.close().await;
    phone.close().await;

    let mut again = WsClient::open(&app.ws_url(&token)).await;
    assert_nothing_old(&app, &mut again, "alice").await;
}

#[tokio::test]
async fn an_unacked_message_comes_again_on_the_next_connect() {
    let app = spawn().await;
    let token = app.ws_token("bob").await;
    let mut first = WsClient::open(&app.ws_url(&token)).await;
    let id = app.send_ws("bob", "ack me").await;
    let message = first.next_message(WAIT).await.expect("arrives");
    assert_eq!(message["id"], id.as_str());
    first.close().await;

    let mut second = WsClient::open(&app.ws_url(&token)).await;
    let again = second.next_message(WAIT).await.expect("comes again");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["seq"], message["seq"], "same place in the inbox");
    second.ack(std::slice::from_ref(&id)).await;
    app.wait_for_status(&id, "ws", "delivered", 1, WAIT).await;
    second.close().await;

    let mut third = WsClient::open(&app.ws_url(&token)).await;
    assert_nothing_old(&app, &mut third, "bob").await;
}

#[tokio::test]
async fn an_expired_message_never_arrives_and_is_reported_expired() {
    let app = spawn().await;
    let token = app.ws_token("carol").await;
    let id = app
        .send_ok(&json!({
            "to": {"user": "carol"}, "channels": ["ws"], "ttl": 1,
            "content": {"body": "too late"},
        }))
        .await;
    app.wait_for_status(&id, "ws", "queued", 1, WAIT).await;
    // Nobody connects: the sweeper finds it expired.
    app.wait_for_status(&id, "ws", "expired", 1, WAIT).await;
    let mut client = WsClient::open(&app.ws_url(&token)).await;
    assert_nothing_old(&app, &mut client, "carol").await;
}

#[tokio::test]
async fn messages_to_users_without_an_inbox_are_not_stored() {
    let app = spawn().await;
    let _ = app.ws_token("dora").await;
    let id = app
        .send_ok(&json!({
            "to": {"users": ["dora", "nobody"]}, "channels": ["ws"],
            "content": {"body": "hi"},
        }))
        .await;
    let summary = app.wait_for_status(&id, "ws", "queued", 1, WAIT).await;
    assert_eq!(
        summary["summary"]["ws"]
            .as_object()
            .map(|statuses| statuses.len()),
        Some(1)
    );
}

#[tokio::test]
async fn a_thousand_messages_to_one_user_arrive_in_sending_order() {
    let app = spawn().await;
    let token = app.ws_token("erin").await;
    let mut sent = Vec::new();
    // The first 300 wait in the inbox; the rest arrive live.
    for n in 0..300 {
        sent.push(app.send_ws("erin", &n.to_string()).await);
    }
    let mut client = WsClient::open(&app.ws_url(&token)).await;
    let reader = tokio::spawn(async move {
        let mut received = Vec::new();
        while received.len() < 1_000 {
            let Some(message) = client.next_message(Duration::from_secs(60)).await else {
                break;
            };
            received.push(message["id"].as_str().unwrap_or_default().to_owned());
            if received.len() % 100 == 0 {
                assert!(client.ack_later(&received[received.len() - 100..]).await);
            }
        }
        received
    });
    for n in 300..1_000 {
        sent.push(app.send_ws("erin", &n.to_string()).await);
    }
    let received = reader.await.expect("reader");
    assert_eq!(received.len(), 1_000, "every message arrives");
    let out_of_order = received
        .iter()
        .zip(&sent)
        .position(|(got, want)| got != want);
    assert_eq!(out_of_order, None, "messages arrive in sending order");
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused_with_their_close_codes() {
    let app = TestApp::spawn_with(|settings| {
        serve_ws(settings);
        settings.deliverer.auth_timeout = Duration::from_millis(500);
    })
    .await;
    let token = app.ws_token("frank").await;

    // Forged: the signature changed.
    let mut forged = token.clone();
    let last = forged
        .pop()
        .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    forged.push(last);
    let mut client = WsClient::connect(&app.ws_url(&forged)).await;
    assert_eq!(client.close_code(WAIT).await, Some(4001), "forged");

    // Expired: minted with the installation's secret, but an hour ago for a minute.
    use secrecy::ExposeSecret;
    let secret = app
        .settings
        .deliverer
        .token_secret
        .as_ref()
        .expect("secret");
    let an_hour_ago = now_ms() / 1000 - 3600;
    let expired = sprayer_shared::wstoken::mint(
        secret.expose_secret().as_bytes(),
        &AppId::parse(app.app.as_str()).expect("app id"),
        &UserId::parse("frank").expect("user"),
        an_hour_ago,
        an_hour_ago + 60,
    )
    .expect("minted");
    let mut client = WsClient::connect(&app.ws_url(&expired)).await;
    assert_eq!(client.close_code(WAIT).await, Some(4002), "expired");

    // Another app's: a page of app B handed a token of app A.
    let (other_app, other_key) = app.create_app("other").await;
    let other_token = app.ws_token_as(&other_key, "frank").await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let url = format!("{}&app={}", app.ws_url(&other_token), app.app);
    let mut client = WsClient::connect(&url).await;
    assert_eq!(
        client.close_code(WAIT).await,
        Some(4003),
        "another app's token"
    );

    // No token and no auth frame in time.
    let base = app.ws.as_deref().expect("ws");
    let mut client = WsClient::connect(&format!("{base}/v1/ws")).await;
    assert_eq!(client.close_code(WAIT).await, Some(4001), "unauthenticated");

    // The token in the first frame instead of the URL works.
    let mut client = WsClient::connect(&format!("{base}/v1/ws")).await;
    client.send(&json!({"type": "auth", "token": token})).await;
    match client.next(WAIT).await {
        Some(Frame::Json(hello)) => assert_eq!(hello["user"], "frank"),
        other => panic!("expected hello: {other:?}"),
    }

    // The same user name in two apps: each token reaches its own app's inbox only.
    let mine = app.send_ws("frank", "for app A").await;
    let theirs = app
        .http
        .post(format!("{}/v1/messages", app.base))
        .bearer_auth(&other_key)
        .json(
            &json!({"to": {"user": "frank"}, "channels": ["ws"], "content": {"body": "for app B"}}),
        )
        .send()
        .await
        .expect("answers");
    assert_eq!(theirs.status(), StatusCode::ACCEPTED);
    let message = client.next_message(WAIT).await.expect("A's message");
    assert_eq!(message["id"], mine.as_str());
    assert!(
        client.next_message(QUIET).await.is_none(),
        "B's message reached A's socket"
    );
    let mut other_client = WsClient::open(&app.ws_url(&other_token)).await;
    let message = other_client.next_message(WAIT).await.expect("B's message");
    assert_eq!(message["body"], "for app B");
    assert_ne!(other_app, app.app);
}

#[tokio::test]
async fn bad_frames_get_an_error_and_the_socket_stays_open() {
    let app = spawn().await;
    let token = app.ws_token("gina").await;
    let mut client = WsClient::open(&app.ws_url(&token)).await;
    client.send(&json!({"type": "shout"})).await;
    match client.next(WAIT).await {
        Some(Frame::Json(frame)) => {
            assert_eq!(frame["type"], "error");
            assert_eq!(frame["code"], "bad_frame");
        }
        other => panic!("expected an error frame: {other:?}"),
    }
    client
        .send(&json!({"type": "ack", "ids": ["not-a-message-id!"]}))
        .await;
    match client.next(WAIT).await {
        Some(Frame::Json(frame)) => assert_eq!(frame["type"], "error"),
        other => panic!("expected an error frame: {other:?}"),
    }
    client.send(&json!({"type": "ping"})).await;
    match client.next(WAIT).await {
        Some(Frame::Json(frame)) => assert_eq!(frame["type"], "pong"),
        other => panic!("expected pong: {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_socket_is_closed_as_idle() {
    let app = TestApp::spawn_with(|settings| {
        serve_ws(settings);
        settings.deliverer.heartbeat = Duration::from_millis(200);
        settings.deliverer.idle_timeout = Duration::from_millis(700);
    })
    .await;
    let token = app.ws_token("hank").await;
    let mut client = WsClient::open(&app.ws_url(&token)).await;
    // The test client answers pings only while it reads: sleeping keeps it silent.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(client.close_code(WAIT).await, Some(4009));
}

#[tokio::test]
async fn a_stopping_node_tells_its_sockets_to_reconnect_elsewhere() {
    let app = spawn().await;
    let mut settings = app.settings.clone();
    settings.deliverer.node_id = Some(crate::support::stack::unique("leaving-"));
    let node = sprayer_deliverer::Deliverer::build(settings)
        .await
        .expect("a second node starts");
    let url = format!(
        "ws://{}/v1/ws?token={}",
        node.address(),
        app.ws_token("ivy").await
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(node.run_until_stopped(stop.clone()));
    let mut client = WsClient::open(&url).await;
    stop.cancel();
    match client.next(WAIT).await {
        Some(Frame::Json(frame)) => assert_eq!(frame["type"], "reconnect"),
        other => panic!("expected reconnect: {other:?}"),
    }
    assert_eq!(client.close_code(WAIT).await, Some(1012));
    let stopped = tokio::time::timeout(WAIT, running).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the node stops cleanly: {stopped:?}"
    );
    // The user is no longer listed on the stopped node.
    let redis = redis::Client::open(crate::support::stack::REDIS_URL)
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = format!("conn:{{{}:ivy}}", app.app);
    let gone = wait_until(WAIT, || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            let nodes: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .ok()?;
            nodes
                .keys()
                .all(|node| !node.starts_with("leaving-"))
                .then_some(())
        }
    })
    .await;
    assert!(gone.is_some());
}

#[tokio::test]
async fn a_plain_get_of_the_socket_url_is_a_problem_not_a_crash() {
    let app = spawn().await;
    let base = app
        .ws
        .as_deref()
        .expect("ws")
        .replacen("ws://", "http://", 1);
    let response = reqwest::get(format!("{base}/v1/ws"))
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let demo = reqwest::get(format!("{base}/demo")).await.expect("answers");
    assert_eq!(demo.status(), StatusCode::OK);
    assert!(
        demo.text()
            .await
            .expect("page")
            .contains("sprayer-client.js")
    );
    let token = app.ws_token_as(&app.key, "jack").await;
    assert!(token["expires_at"].as_str().is_some());
    let bad = app
        .request(reqwest::Method::POST, "/v1/users/jack/ws-token")
        .json(&json!({"ttl": 0}))
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: serde_json::Value = bad.json().await.expect("problem");
    assert_eq!(problem["field"], "/ttl", "{problem}");
    // serde reads a struct from an array of its fields; the API takes objects only.
    let array = app
        .request(reqwest::Method::POST, "/v1/users/jack/ws-token")
        .json(&json!([null]))
        .send()
        .await
        .expect("answers");
    assert_eq!(array.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: serde_json::Value = array.json().await.expect("problem");
    assert_eq!(problem["field"], "/", "{problem}");
}
