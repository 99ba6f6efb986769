//! Preferences: a group of 1,000 with 100 opted out of a category gets exactly 900 deliveries
//! and 100 `skipped`; a required category reaches all 1,000.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use super::put_ok;
use crate::support::app::TestApp;
use crate::support::receiver::{Receiver, register_group, webhook_secret};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opted_out_users_are_skipped_and_required_categories_reach_everyone() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let users = register_group(&app, &receiver, &webhook_secret(), 1_000, "all").await;
    put_ok(
        &app,
        "/v1/categories/marketing",
        &json!({"description": "offers"}),
    )
    .await;
    put_ok(&app, "/v1/categories/security", &json!({"required": true})).await;
    futures::stream::iter(users.iter().take(100))
        .for_each_concurrent(32, |user| {
            let app = &app;
            async move {
                put_ok(app, &format!("/v1/users/{user}/preferences"),
                    &json!({"categories": {"marketing": {"enabled": false}, "security": {"enabled": false}}})).await;
            }
        })
        .await;
    // One more user turns http off for every category, but for security alerts.
    put_ok(
        &app,
        "/v1/users/u500/preferences",
        &json!({"channels": {"http": false}}),
    )
    .await;

    let offer = app
        .send_ok(
            &json!({"to": {"group": "all"}, "category": "marketing", "content": {"body": "sale"}}),
        )
        .await;
    let summary = app
        .wait_for_status(&offer, "http", "delivered", 899, WAIT)
        .await;
    let summary = if summary["summary"]["http"]["skipped"] == 101 {
        summary
    } else {
        app.wait_for_status(&offer, "http", "skipped", 101, WAIT)
            .await
    };
    assert_eq!(summary["total"], 1_000, "{summary}");
    assert_eq!(summary["category"], "marketing");
    let (_, skipped) = app
        .get(&format!("/v1/messages/{offer}/recipients/u3"))
        .await;
    assert!(skipped.to_string().contains("preference"), "{skipped}");

    let alert = app
        .send_ok(&json!({"to": {"group": "all"}, "category": "security", "content": {"body": "new login"}}))
        .await;
    let summary = app
        .wait_for_status(&alert, "http", "delivered", 1_000, WAIT)
        .await;
    assert!(
        summary["summary"]["http"].get("skipped").is_none(),
        "{summary}"
    );
    let offers = receiver
        .hits()
        .iter()
        .filter(|hit| hit.message_id() == offer)
        .count();
    assert_eq!(offers, 899, "nobody opted out got the offer");
}
