//! A broker that cannot be reached: the API answers 503 and never 202.

use std::time::Duration;

use serde_json::json;
use sprayer_accepter::Accepter;
use tokio_util::sync::CancellationToken;

use crate::support::app::TestApp;
use crate::support::stack::{require_servers, test_settings};

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
