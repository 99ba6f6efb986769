//! Receiver failures: passing ones are retried through the retry tiers, permanent ones are not,
//! and nothing is sent after the message expires.

use std::time::Duration;

use serde_json::json;

use crate::support::app::TestApp;
use crate::support::receiver::{Behavior, Receiver, signature_valid, webhook_secret};
use crate::support::wait::wait_until;

async fn delivery(app: &TestApp, id: &str) -> serde_json::Value {
    let deliveries = app.all_deliveries(id, 10).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    deliveries[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_500s_then_200_end_delivered_after_three_attempts_with_one_webhook_id() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    app.put_webhook("carol", "d1", &receiver.url("carol"), &secret)
        .await;
    receiver.plan("carol", &[Behavior::Status(500), Behavior::Status(503)]);
    let id = app
        .send_ok(&json!({ "to": { "user": "carol" }, "content": { "body": "retry me" } }))
        .await;
    app.wait_for_status(&id, "http", "delivered", 1, Duration::from_secs(30))
        .await;
    let delivered = delivery(&app, &id).await;
    assert_eq!(delivered["attempts"], 3, "{delivered}");
    assert_eq!(
        delivered["error"], "receiver answered 503",
        "the last error is kept"
    );
    let hits = receiver.hits_for("carol");
    assert_eq!(hits.len(), 3);
    assert!(
        hits.iter().all(|hit| hit.id == hits[0].id),
        "webhook-id is stable across retries"
    );
    assert!(hits.iter().all(|hit| signature_valid(&secret, hit)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gone_and_bad_request_fail_after_one_attempt() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    for (user, code) in [("gone", 410), ("bad", 400)] {
        app.put_webhook(user, "d1", &receiver.url(user), &secret)
            .await;
        receiver.plan(user, &[Behavior::Status(code)]);
    }
    let id = app
        .send_ok(&json!({ "to": { "users": ["gone", "bad"] }, "content": { "body": "x" } }))
        .await;
    app.wait_for_status(&id, "http", "failed", 2, Duration::from_secs(20))
        .await;
    // Longer than every retry tier: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (user, code) in [("gone", 410), ("bad", 400)] {
        assert_eq!(receiver.hits_for(user).len(), 1, "{user} tried once");
        let deliveries = app.all_deliveries(&id, 10).await;
        let failed = deliveries
            .iter()
            .find(|d| d["user"] == user)
            .expect("delivery");
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["attempts"], 1);
        assert_eq!(failed["error"], format!("receiver answered {code}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_never_answers_within_the_ttl_ends_expired() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    app.put_webhook("dave", "d1", &receiver.url("dave"), &secret)
        .await;
    receiver.plan("dave", &[Behavior::Hang(Duration::from_secs(60)); 5]);
    let id = app
        .send_ok(&json!({ "to": { "user": "dave" }, "content": { "body": "late" }, "ttl": 2 }))
        .await;
    app.wait_for_status(&id, "http", "expired", 1, Duration::from_secs(20))
        .await;
    let expired = delivery(&app, &id).await;
    assert_eq!(expired["status"], "expired");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.hits_for("dave").len(),
        1,
        "nothing is sent after the TTL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_failing_past_the_last_tier_ends_failed_and_dead_lettered() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = webhook_secret();
    app.put_webhook("erin", "d1", &receiver.url("erin"), &secret)
        .await;
    receiver.plan("erin", &[Behavior::Status(500); 10]);
    let id = app
        .send_ok(&json!({ "to": { "user": "erin" }, "content": { "body": "doomed" } }))
        .await;
    app.wait_for_status(&id, "http", "failed", 1, Duration::from_secs(30))
        .await;
    let failed = delivery(&app, &id).await;
    // Three retry tiers in the test settings: four attempts in all.
    assert_eq!(failed["attempts"], 4, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .expect("error")
            .starts_with("gave up after 4 attempts")
    );
    assert_eq!(receiver.hits_for("erin").len(), 4);
    let dead = format!("{}jobs.http.dead", app.settings.amqp.prefix);
    let depth = wait_until(Duration::from_secs(5), || async {
        let depth = crate::support::stack::queue_depth(&dead).await;
        (depth == 1).then_some(depth)
    })
    .await;
    assert_eq!(depth, Some(1), "the given-up delivery is kept in {dead}");
}
