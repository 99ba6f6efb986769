//! Scheduled sends: on time to the second under a burst, and a step that survives the
//! scheduler that held it being killed.

use std::time::Duration;

use serde_json::json;
use sprayer::Role;
use sprayer_shared::feed::rfc3339_ms;
use sprayer_shared::model::now_ms;

use crate::support::app::TestApp;
use crate::support::owned::process::SprayerProcess;
use crate::support::receiver::{Receiver, register_users};
use crate::support::wait::wait_until;

/// Timers of the test's installation not yet fired (acked).
async fn pending_timers(app: &TestApp) -> u64 {
    let client = redis::Client::open(app.settings.redis.url.as_str()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys = sprayer_shared::schedule::Keys::new(&app.settings.amqp.prefix);
    let mut pipe = redis::pipe();
    for shard in 0..sprayer_shared::schedule::SHARDS {
        pipe.zcard(keys.timers(shard));
    }
    let counts: Vec<u64> = pipe.query_async(&mut redis).await.expect("zcard");
    counts.into_iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_messages_due_at_one_second_fire_none_early_and_all_within_a_second() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let users = register_users(
        &app,
        &receiver,
        &crate::support::receiver::webhook_secret(),
        1_000,
    )
    .await;
    // Due 20 s ahead: the 1,000 sends are accepted before then even with the whole suite
    // running beside this test.
    let due = (now_ms() + 20_000) / 1_000 * 1_000;
    let send_at = rfc3339_ms(due);
    use futures::StreamExt;
    let ids: Vec<String> = futures::stream::iter(users.iter())
        .map(|user| {
            let app = &app;
            let send_at = send_at.clone();
            async move {
                app.send_ok(&json!({ "to": { "user": user }, "content": { "body": "due" }, "send_at": send_at }))
                    .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        now_ms() < due,
        "every message was accepted before it was due"
    );
    assert_eq!(pending_timers(&app).await, 1_000, "one timer per message");
    // A timer is gone once its jobs are confirmed by the broker: that is when it fired.
    let fired_at = wait_until(Duration::from_secs(40), || async {
        (pending_timers(&app).await == 0).then(now_ms)
    })
    .await
    .expect("every timer fires");
    eprintln!(
        "the last of 1,000 timers fired {} ms after it was due",
        fired_at - due
    );
    assert!(
        fired_at - due <= 1_000,
        "the last timer fired {} ms after it was due",
        fired_at - due
    );
    let hits = wait_until(Duration::from_secs(30), || async {
        let hits = receiver.hits();
        (hits.len() >= ids.len()).then_some(hits)
    })
    .await
    .expect("every scheduled message arrives");
    let early = hits.iter().filter(|hit| hit.received_ms < due).count();
    assert_eq!(early, 0, "none arrives before it is due");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.hits().len(), ids.len(), "each fired once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_due_while_its_scheduler_was_killed_fires_once_on_another() {
    // The API, dispatchers and feeder here; the scheduler in a process of its own.
    let app =
        TestApp::spawn_roles(|_| {}, &[Role::Accepter, Role::Dispatchers, Role::Feeder]).await;
    let receiver = Receiver::start().await;
    register_users(
        &app,
        &receiver,
        &crate::support::receiver::webhook_secret(),
        2,
    )
    .await;
    let mut first = SprayerProcess::start(&app.settings, "scheduler").await;
    let due = now_ms() + 4_000;
    let id = app
        .send_ok(&json!({ "to": { "users": ["u0", "u1"] }, "content": { "body": "later" }, "send_at": rfc3339_ms(due) }))
        .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    first.kill().await;
    assert!(receiver.hits().is_empty(), "nothing before it was due");
    let _second = SprayerProcess::start(&app.settings, "scheduler").await;
    let hits = wait_until(Duration::from_secs(20), || async {
        let hits = receiver.hits();
        (hits.len() >= 2).then_some(hits)
    })
    .await
    .expect("the step fires on the second scheduler");
    assert!(
        hits.iter()
            .all(|hit| hit.received_ms >= due && hit.message_id() == id)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.hits().len(), 2, "once per user");
}
