//! Event endpoints through outages: a receiver down for two minutes gets the backlog in order
//! once it is back; one failing past `events.disable_after` is disabled (an `endpoint.disabled`
//! event reaches the app's other endpoint) and, re-enabled, resumes from its cursor; the events
//! service killed with SIGKILL mid-stream and started again loses nothing.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::support::{endpoint, events_app, first_of_each, wait_for_events_queue, whole_feed};
use crate::support::app::TestApp;
use crate::support::owned::process::SprayerProcess;
use crate::support::peers::events::EventReceiver;
use crate::support::receiver::{Receiver, webhook_secret};
use crate::support::wait::wait_until;

/// Sends `count` messages to `user`, one after the other; returns their ids.
async fn send_many(app: &TestApp, user: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for index in 0..count {
        ids.push(
            app.send_ok(&json!({ "to": { "user": user }, "channels": ["http"],
                                 "content": { "body": format!("n{index}") } }))
                .await,
        );
    }
    ids
}

/// The ids of the messages whose `delivery.delivered` the receiver took.
fn delivered(receiver: &EventReceiver) -> HashSet<String> {
    receiver
        .events()
        .iter()
        .filter(|event| event["type"] == "delivery.delivered")
        .filter_map(|event| event["data"]["message_id"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_delivered(receiver: &EventReceiver, ids: &[String], within: Duration) {
    let all = wait_until(within, || async {
        let got = delivered(receiver);
        ids.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    assert!(
        all.is_some(),
        "{} of {} messages' events arrived",
        ids.iter()
            .filter(|id| delivered(receiver).contains(*id))
            .count(),
        ids.len()
    );
}

async fn endpoint_state(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/event-endpoints/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_down_for_two_minutes_gets_the_backlog_in_order() {
    let app = events_app(|_| {}).await;
    let receiver = EventReceiver::start();
    let created = endpoint(&app, &receiver, &["delivery.*"]).await;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    receiver.set(&[&secret], false).await;
    let sink = Receiver::start().await;
    app.put_webhook("bo", "d1", &sink.url("bo"), &webhook_secret())
        .await;

    let mut ids = send_many(&app, "bo", 20).await;
    let failing = wait_until(Duration::from_secs(30), || async {
        let state = endpoint_state(&app, &id).await;
        state["failing_since"].is_string().then_some(state)
    })
    .await
    .expect("the endpoint is seen failing");
    assert_eq!(failing["last_error"], "receiver answered 503", "{failing}");
    assert_eq!(failing["enabled"], true);
    tokio::time::sleep(Duration::from_secs(60)).await;
    ids.extend(send_many(&app, "bo", 20).await);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let waiting = endpoint_state(&app, &id).await;
    assert!(waiting["lag"].as_u64() >= Some(40), "{waiting}");
    assert!(
        delivered(&receiver).is_empty(),
        "nothing was taken while down"
    );

    receiver.set(&[&secret], true).await;
    wait_delivered(&receiver, &ids, Duration::from_secs(60)).await;
    let feed = whole_feed(&app, Some("delivery.*")).await;
    assert_eq!(
        first_of_each(&receiver.events()),
        first_of_each(&feed),
        "the backlog came in the feed's order, all of it"
    );
    let back = endpoint_state(&app, &id).await;
    assert!(back.get("failing_since").is_none(), "{back}");
    assert_eq!(back["lag"], 0, "{back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_failing_past_disable_after_is_disabled_and_resumes_from_its_cursor() {
    let app = events_app(|settings| settings.events.disable_after = Duration::from_secs(3)).await;
    let failing = EventReceiver::start();
    let watcher = EventReceiver::start();
    let created = endpoint(&app, &failing, &["delivery.*"]).await;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    failing.set(&[&secret], false).await;
    endpoint(&app, &watcher, &["endpoint.disabled"]).await;
    let sink = Receiver::start().await;
    app.put_webhook("cy", "d1", &sink.url("cy"), &webhook_secret())
        .await;
    let mut ids = send_many(&app, "cy", 5).await;

    let disabled = wait_until(Duration::from_secs(30), || async {
        let state = endpoint_state(&app, &id).await;
        (state["enabled"] == false).then_some(state)
    })
    .await
    .expect("the endpoint is disabled");
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("503")),
        "{disabled}"
    );
    let notice = wait_until(Duration::from_secs(30), || async {
        watcher
            .events()
            .into_iter()
            .find(|event| event["type"] == "endpoint.disabled")
    })
    .await
    .expect("the other endpoint hears of it");
    assert_eq!(notice["data"]["endpoint_id"], id.as_str(), "{notice}");
    assert_eq!(notice["data"]["url"], failing.url().as_str(), "{notice}");

    // While disabled nothing is tried; re-enabled, it resumes from its cursor.
    ids.extend(send_many(&app, "cy", 5).await);
    let tried = failing.log().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        failing.log().len(),
        tried,
        "a disabled endpoint is left alone"
    );
    failing.set(&[&secret], true).await;
    let response = app
        .request(reqwest::Method::PATCH, &format!("/v1/event-endpoints/{id}"))
        .json(&json!({ "enabled": true }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    wait_delivered(&failing, &ids, Duration::from_secs(30)).await;
    let state = endpoint_state(&app, &id).await;
    assert_eq!(state["enabled"], true);
    assert!(state.get("disabled_reason").is_none(), "{state}");

    // Replay from the first event: everything comes again, with the same ids.
    let feed = whole_feed(&app, Some("delivery.*")).await;
    let first = feed[0]["cursor"].as_str().expect("cursor");
    let before = failing.events().len();
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/event-endpoints/{id}/replay"),
        )
        .json(&json!({ "after": first }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let again = wait_until(Duration::from_secs(30), || async {
        let events = failing.events();
        (events.len() >= before + feed.len() - 1).then_some(events)
    })
    .await
    .expect("the replay arrives");
    let replayed: Vec<String> = again[before..]
        .iter()
        .filter_map(|event| event["id"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = feed[1..]
        .iter()
        .filter_map(|event| event["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        replayed[..expected.len()],
        expected[..],
        "the replay is the feed after the cursor"
    );
    let (status, problem) = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/event-endpoints/{id}/replay"),
        )
        .json(&json!({ "after": "not-a-cursor" }))
        .send()
        .await
        .map(|response| (response.status().as_u16(), response))
        .expect("answers");
    assert_eq!(status, 422);
    let problem: Value = problem.json().await.expect("JSON");
    assert_eq!(problem["field"], "/after", "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_events_process_killed_mid_stream_loses_nothing_and_the_feed_has_no_gap() {
    // Every service in the test but the events service, which runs in a process of its own.
    let app = TestApp::spawn_with(|settings| {
        settings.events.retry_tiers = vec![Duration::from_millis(200)];
    })
    .await;
    let mut events = SprayerProcess::start(&app.settings, "events").await;
    wait_for_events_queue(&app.settings).await;
    let receiver = EventReceiver::start();
    endpoint(&app, &receiver, &["message.accepted", "delivery.delivered"]).await;
    let sink = Receiver::start().await;
    app.put_webhook("di", "d1", &sink.url("di"), &webhook_secret())
        .await;

    let sender = {
        let app_base = app.base.clone();
        let key = app.key.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::new();
            for index in 0..400 {
                let answer: Value = client
                    .post(format!("{app_base}/v1/messages"))
                    .bearer_auth(&key)
                    .json(&json!({ "to": { "user": "di" }, "channels": ["http"],
                                   "content": { "body": format!("n{index}") } }))
                    .send()
                    .await
                    .expect("answers")
                    .json()
                    .await
                    .expect("JSON");
                ids.push(answer["id"].as_str().expect("id").to_owned());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids
        })
    };
    wait_until(Duration::from_secs(60), || async {
        (delivered(&receiver).len() >= 100).then_some(())
    })
    .await
    .expect("events flow before the kill");
    events.kill().await;
    let at_kill = delivered(&receiver).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _events = SprayerProcess::start(&app.settings, "events").await;
    let ids = sender.await.expect("the sender ends");
    assert!(
        at_kill < ids.len(),
        "the kill came mid-stream ({at_kill} of {})",
        ids.len()
    );
    wait_delivered(&receiver, &ids, Duration::from_secs(90)).await;

    // The feed: every message's accepted and delivered events once each, in one order.
    let feed = whole_feed(&app, Some("message.accepted,delivery.delivered")).await;
    let feed_ids: Vec<String> = feed
        .iter()
        .filter_map(|event| event["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        feed_ids.len(),
        feed_ids.iter().collect::<HashSet<_>>().len(),
        "no event twice in the feed"
    );
    for kind in ["message.accepted", "delivery.delivered"] {
        let messages: HashSet<&str> = feed
            .iter()
            .filter(|event| event["type"] == kind)
            .filter_map(|event| event["data"]["message_id"].as_str())
            .collect();
        assert_eq!(messages.len(), ids.len(), "every message's {kind}");
    }
    // The endpoint: all of them (duplicates allowed, with the same ids), in feed order.
    let received = receiver.events();
    let duplicates = received.len() - first_of_each(&received).len();
    assert_eq!(
        first_of_each(&received),
        feed_ids,
        "the endpoint got the feed in order"
    );
    eprintln!(
        "kill -9 of the events process: {} events, {duplicates} sent twice, 0 lost",
        feed_ids.len()
    );
}
