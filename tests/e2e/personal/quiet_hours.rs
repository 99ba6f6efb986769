//! Quiet hours: a message to a user in them is held until they end (`defer`), dropped
//! (`drop`), or sent at once when `critical`.

use std::time::Duration;

use chrono::{Timelike, Utc};
use serde_json::json;

use super::put_ok;
use crate::support::app::TestApp;
use crate::support::receiver::{Receiver, webhook_secret};
use crate::support::wait::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_until_the_quiet_hours_end_dropped_or_sent_at_once_when_critical() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    // Quiet hours from a minute ago to the next minute boundary at least 5 s away, in UTC.
    let mut now = Utc::now();
    if now.second() >= 55 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        now = Utc::now();
    }
    let hm = |minutes: i64| {
        let at = now + chrono::Duration::minutes(minutes);
        format!("{:02}:{:02}", at.hour(), at.minute())
    };
    let quiet = json!({"from": hm(-1), "to": hm(1)});
    let end_ms = (now + chrono::Duration::minutes(1))
        .with_second(0)
        .and_then(|at| at.with_nanosecond(0))
        .expect("a time")
        .timestamp_millis();
    for user in ["sleeper", "dropper", "oncall"] {
        put_ok(
            &app,
            &format!("/v1/users/{user}"),
            &json!({"timezone": "UTC", "quiet_hours": quiet}),
        )
        .await;
        app.put_webhook(user, "d1", &receiver.url(user), &webhook_secret())
            .await;
    }
    let held = app
        .send_ok(&json!({"to": {"user": "sleeper"}, "content": {"body": "morning"}}))
        .await;
    let dropped = app
        .send_ok(&json!({"to": {"user": "dropper"}, "quiet_hours": "drop", "content": {"body": "later"}}))
        .await;
    let critical = app
        .send_ok(&json!({"to": {"user": "oncall"}, "priority": "critical", "content": {"body": "outage"}}))
        .await;
    app.wait_for_status(&critical, "http", "delivered", 1, Duration::from_secs(20))
        .await;
    app.wait_for_status(&dropped, "http", "skipped", 1, Duration::from_secs(20))
        .await;
    app.wait_for_status(&held, "http", "queued", 1, Duration::from_secs(20))
        .await;
    assert!(
        receiver.hits_for("sleeper").is_empty(),
        "nothing during quiet hours"
    );

    let hit = wait_until(Duration::from_secs(90), || async {
        receiver.hits_for("sleeper").into_iter().next()
    })
    .await
    .expect("the held message is sent once the quiet hours end");
    assert!(
        hit.received_ms >= end_ms,
        "sent {} ms before the end",
        end_ms - hit.received_ms
    );
    assert!(
        hit.received_ms < end_ms + 10_000,
        "sent {} ms after the end",
        hit.received_ms - end_ms
    );
    app.wait_for_status(&held, "http", "delivered", 1, Duration::from_secs(20))
        .await;
    assert!(receiver.hits_for("dropper").is_empty());
    assert_eq!(receiver.hits_for("sleeper").len(), 1);
}
