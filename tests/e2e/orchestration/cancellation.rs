//! Cancellation: by id before `send_at`, by key for one user of a group, and after sending.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sprayer_shared::feed::rfc3339_ms;
use sprayer_shared::model::now_ms;

use crate::support::app::TestApp;
use crate::support::receiver::{Receiver, register_group, register_users};
use crate::support::wait::wait_until;

async fn call(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = app.request(method, path);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_cancelled_before_send_at_sends_nothing_and_ends_cancelled() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    register_users(
        &app,
        &receiver,
        &crate::support::receiver::webhook_secret(),
        1,
    )
    .await;
    let id = app
        .send_ok(&json!({ "to": { "user": "u0" }, "content": { "body": "later" }, "send_at": rfc3339_ms(now_ms() + 3_000) }))
        .await;
    let (status, answer) = call(&app, Method::DELETE, &format!("/v1/messages/{id}"), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            answer["cancelled"].as_bool(),
            answer["scheduled"].as_bool(),
            answer["already_sent"].as_bool()
        ),
        (Some(true), Some(true), Some(false)),
        "{answer}"
    );
    app.wait_for_status(&id, "http", "cancelled", 1, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(receiver.hits().is_empty(), "nothing sent");
    let (_, chain) = app.get(&format!("/v1/messages/{id}/recipients/u0")).await;
    assert_eq!(chain["steps"][0]["state"], "cancelled", "{chain}");
    assert_eq!(chain["steps"][0]["reason"], "cancelled by the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_key_spares_one_user_of_a_group_and_a_sent_message_says_so() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    register_group(
        &app,
        &receiver,
        &crate::support::receiver::webhook_secret(),
        5,
        "buyers",
    )
    .await;
    let id = app
        .send_ok(&json!({ "to": { "group": "buyers" }, "content": { "body": "order 7" }, "send_at": rfc3339_ms(now_ms() + 3_000), "cancel_key": "order-7" }))
        .await;
    let (status, answer) = call(
        &app,
        Method::POST,
        "/v1/cancellations",
        Some(&json!({ "cancel_key": "order-7", "users": ["u3"] })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["messages"][0]["id"], id.as_str());
    assert_eq!(answer["messages"][0]["scheduled"], true);
    let hits = wait_until(Duration::from_secs(20), || async {
        let hits = receiver.hits();
        (hits.len() >= 4).then_some(hits)
    })
    .await
    .expect("the others get it");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut paths: Vec<String> = receiver.hits().iter().map(|hit| hit.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["u0", "u1", "u2", "u4"],
        "only u3 is spared: {hits:?}"
    );
    app.wait_for_status(&id, "http", "cancelled", 1, Duration::from_secs(20))
        .await;

    // Sent at once, nothing left to cancel: the answer says it was sent.
    let now = app
        .send_ok(&json!({ "to": { "user": "u0" }, "content": { "body": "now" }, "cancel_key": "order-8" }))
        .await;
    app.wait_for_status(&now, "http", "delivered", 1, Duration::from_secs(20))
        .await;
    let (status, answer) = call(&app, Method::DELETE, &format!("/v1/messages/{now}"), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            answer["cancelled"].as_bool(),
            answer["already_sent"].as_bool()
        ),
        (Some(false), Some(true)),
        "{answer}"
    );
    let (status, answer) = call(
        &app,
        Method::POST,
        "/v1/cancellations",
        Some(&json!({ "cancel_key": "order-8" })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["messages"][0]["already_sent"], true, "{answer}");
    // A message of another id is not found.
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/v1/messages/0190a0a0a0a07000800000000000abcd",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_running_chain_stops_its_next_step_at_once() {
    let app = TestApp::spawn_with(crate::support::stack::serve_ws).await;
    let receiver = Receiver::start().await;
    register_users(
        &app,
        &receiver,
        &crate::support::receiver::webhook_secret(),
        1,
    )
    .await;
    app.ws_token("u0").await;
    let id = app
        .send_ok(&json!({
            "to": { "user": "u0" },
            "content": { "body": "escalating" },
            "delivery": { "steps": [
                { "channels": ["ws"], "wait": "3s", "until": "acked" },
                { "channels": ["http"] },
            ] },
        }))
        .await;
    app.wait_for_status(&id, "ws", "queued", 1, Duration::from_secs(20))
        .await;
    let (status, answer) = call(&app, Method::DELETE, &format!("/v1/messages/{id}"), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            answer["cancelled"].as_bool(),
            answer["already_sent"].as_bool(),
            answer["steps"][0]["started"].as_u64()
        ),
        (Some(true), Some(true), Some(1)),
        "{answer}"
    );
    // The webhook step is recorded cancelled at once, not after the wait, and never sent.
    let chain = wait_until(Duration::from_secs(2), || async {
        let (_, chain) = app.get(&format!("/v1/messages/{id}/recipients/u0")).await;
        (chain["steps"][1]["state"] == "cancelled").then_some(chain)
    })
    .await
    .expect("the next step is cancelled at once");
    assert_eq!(chain["steps"][1]["reason"], "cancelled by the app");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(receiver.hits().is_empty(), "the webhook step never ran");
}
