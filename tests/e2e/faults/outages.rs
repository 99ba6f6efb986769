//! A broker that cannot be reached: the API answers 503 and never 202.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::json;
use sprayer_accepter::Accepter;
use tokio_util::sync::CancellationToken;

use crate::support::helpers::{AMQP_URL, TestApp, require_servers, test_settings};

/// Messages ready in `queue` (0 when it does not exist).
pub async fn queue_depth(queue: &str) -> u32 {
    queue_depth_at(AMQP_URL, queue).await
}

/// Messages ready in `queue` of the broker at `url` (0 when it does not exist).
pub async fn queue_depth_at(url: &str, queue: &str) -> u32 {
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("rabbitmq");
    let channel = connection.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let depth = match channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
    {
        Ok(declared) => declared.message_count(),
        Err(_) => 0,
    };
    let _ = connection.close(200, "bye".into()).await;
    depth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rabbitmq_unreachable_messages_get_503_never_202() {
    require_servers().await;
    // A working installation makes the app; an accepter pointed at a closed port takes the calls.
    let app = TestApp::spawn().await;
    let mut settings = test_settings();
    settings.mongodb = app.settings.mongodb.clone();
    settings.amqp.url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let accepter = Accepter::build(settings)
        .await
        .expect("starts without the broker");
    let base = format!("http://{}", accepter.address());
    let shutdown = CancellationToken::new();
    tokio::spawn(accepter.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::new();
    for attempt in 0..5 {
        let response = client
            .post(format!("{base}/v1/messages"))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "same-key")
            .json(&json!({ "to": { "user": "u1" }, "content": { "body": "x" } }))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 503, "attempt {attempt}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(response.headers().contains_key("retry-after"));
        let problem: serde_json::Value = response.json().await.expect("json");
        assert_eq!(problem["status"], 503);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("answers");
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.expect("text").contains("rabbitmq"));

    // The idempotency key was released each time: the working installation accepts it now.
    let (status, _) = app
        .send(
            &json!({ "to": { "user": "u1" }, "content": { "body": "x" } }),
            Some("same-key"),
        )
        .await;
    assert_eq!(status, 202);
    shutdown.cancel();
}
