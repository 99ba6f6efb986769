//! Event endpoints: a 5,000-member group's events reach an endpoint whose every batch a
//! third-party verifier accepts, once each and in the feed's order; a rotated secret signs
//! beside the new one; bad input is refused naming the field; apps never see each other's
//! events or endpoints.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::support::{endpoint, events_app, first_of_each, whole_feed};
use crate::support::peers::events::EventReceiver;
use crate::support::receiver::{Receiver, webhook_secret};
use crate::support::wait::wait_until;

/// Registers `count` users with a webhook at `sink` and puts them in `group`, 1,000 a request.
async fn webhook_group(
    app: &crate::support::app::TestApp,
    sink: &Receiver,
    group: &str,
    count: usize,
) {
    let secret = webhook_secret();
    let users: Vec<String> = (0..count).map(|index| format!("u{index}")).collect();
    for chunk in users.chunks(1000) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|user| {
                json!({ "user": user, "channel": "http", "device": "d1",
                                 "address": { "url": sink.url("all"), "secret": secret } })
            })
            .collect();
        app.import_endpoints(&entries).await;
        let response = app
            .request(
                reqwest::Method::POST,
                &format!("/v1/groups/{group}/members"),
            )
            .json(&json!({ "users": chunk }))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
    }
}

fn of_message<'a>(events: &'a [Value], kind: &str, message: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == kind && event["data"]["message_id"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_send_reaches_a_verified_endpoint_once_each_in_feed_order_and_rotation_signs_twice()
{
    let app = events_app(|_| {}).await;
    let receiver = EventReceiver::start();
    let created = endpoint(&app, &receiver, &["message.accepted", "delivery.*"]).await;
    let sink = Receiver::start().await;
    webhook_group(&app, &sink, "everyone", 5_000).await;

    let id = app
        .send_ok(&json!({ "to": { "group": "everyone" }, "channels": ["http"], "content": { "body": "hello" } }))
        .await;
    let delivered = wait_until(Duration::from_secs(120), || async {
        let events = receiver.events();
        let done = of_message(&events, "delivery.delivered", &id)
            .iter()
            .filter_map(|event| event["id"].as_str())
            .collect::<HashSet<_>>()
            .len();
        (done == 5_000).then_some(())
    })
    .await;
    let events = receiver.events();
    assert!(
        delivered.is_some(),
        "{} of 5000 delivery.delivered events arrived",
        of_message(&events, "delivery.delivered", &id).len()
    );
    assert!(
        receiver.log().iter().all(|entry| entry["kind"] == "batch"),
        "every batch verifies with the secret and none was refused"
    );
    // Every delivery's event, once each after de-dup, and the accepted message first.
    let users: HashSet<String> = of_message(&events, "delivery.delivered", &id)
        .iter()
        .filter_map(|event| event["data"]["user"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(users.len(), 5_000);
    let accepted = of_message(&events, "message.accepted", &id);
    assert_eq!(accepted.len(), 1, "one message.accepted");
    for batch in receiver.log() {
        let size = batch["body"]["data"]["events"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(
            (1..=100).contains(&size),
            "a batch holds 1 to events.batch_max events: {size}"
        );
    }
    // The endpoint saw the feed's events of its types, in the feed's order, none missing.
    let feed = whole_feed(&app, Some("message.accepted,delivery.*")).await;
    let feed_ids: Vec<String> = feed
        .iter()
        .filter_map(|event| event["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        feed_ids.len(),
        feed_ids.iter().collect::<HashSet<_>>().len(),
        "the feed holds each event once"
    );
    let seen = first_of_each(&receiver.events());
    assert_eq!(
        seen.len(),
        feed_ids.len(),
        "the endpoint got every event of the feed"
    );
    assert!(
        seen == feed_ids,
        "the endpoint got them in the feed's order"
    );

    // Rotation: the new secret and the old one both sign every batch during the overlap.
    let endpoint_id = created["id"].as_str().expect("id");
    let old = created["secret"].as_str().expect("secret").to_owned();
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/event-endpoints/{endpoint_id}/rotate-secret"),
        )
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.expect("JSON");
    let new = rotated["secret"]
        .as_str()
        .expect("the new secret, shown once");
    assert_ne!(new, old);
    receiver.set(&[&old, new], true).await;
    let second = app
        .send_ok(&json!({ "to": { "user": "u1" }, "channels": ["http"], "content": { "body": "again" } }))
        .await;
    wait_until(Duration::from_secs(30), || async {
        (!of_message(&receiver.events(), "delivery.delivered", &second).is_empty()).then_some(())
    })
    .await
    .expect("the second message's events arrive");
    let after_rotation: Vec<Value> = receiver
        .log()
        .into_iter()
        .filter(|entry| entry["body"].to_string().contains(&second))
        .collect();
    assert!(!after_rotation.is_empty());
    for entry in after_rotation {
        assert_eq!(
            entry["verified_by"],
            json!([0, 1]),
            "both secrets verify: {entry}"
        );
    }
    // Listing shows the secret no more.
    let (status, list) = app.get("/v1/event-endpoints").await;
    assert_eq!(status, 200);
    assert!(list["items"][0].get("secret").is_none(), "{list}");
    assert_eq!(list["items"][0]["lag"], 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_naming_the_field_and_apps_never_cross() {
    let app = events_app(|settings| settings.events.max_endpoints = 2).await;
    let receiver = EventReceiver::start();
    let post = |body: Value| {
        let request = app
            .request(reqwest::Method::POST, "/v1/event-endpoints")
            .json(&body);
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or_default())
        }
    };
    for (body, status, field) in [
        (
            json!({ "url": receiver.url(), "events": ["delivery.lost"] }),
            422,
            "/events",
        ),
        (
            json!({ "url": receiver.url(), "events": ["deliv*"] }),
            422,
            "/events",
        ),
        (json!({ "url": "http://10.1.2.3/events" }), 422, "/url"),
        (json!({ "url": "ftp://example.com/" }), 422, "/url"),
        (
            json!({ "url": receiver.url(), "channels": ["pigeon"] }),
            422,
            "/channels/0",
        ),
    ] {
        let (got, problem) = post(body.clone()).await;
        assert_eq!(got, status, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let (status, problem) = post(json!({ "url": receiver.url(), "surprise": 1 })).await;
    assert_eq!(status, 422, "{problem}");
    let mine = endpoint(&app, &receiver, &["*"]).await;
    let second = endpoint(&app, &receiver, &["inbound.sms"]).await;
    let secrets = [&mine, &second].map(|created| created["secret"].as_str().expect("secret"));
    receiver.set(&secrets, true).await;
    let (status, problem) = post(json!({ "url": receiver.url() })).await;
    assert_eq!(status, 409, "events.max_endpoints holds: {problem}");

    // The feed's parameters.
    for (query, field) in [
        ("after=nonsense", "after"),
        ("types=delivery.lost", "types"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ] {
        let (status, problem) = app.get(&format!("/v1/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_eq!(problem["field"], field, "{query}: {problem}");
        assert_eq!(problem["type"], "/problems/bad-parameter", "{problem}");
    }

    // Another app sees neither the endpoint nor the events, and cannot use this app's cursors.
    let sink = Receiver::start().await;
    app.put_webhook("alice", "d1", &sink.url("alice"), &webhook_secret())
        .await;
    let id = app
        .send_ok(&json!({ "to": { "user": "alice" }, "channels": ["http"], "content": { "body": "hi" } }))
        .await;
    let feed = wait_until(Duration::from_secs(30), || async {
        let feed = whole_feed(&app, None).await;
        feed.iter()
            .any(|event| event["type"] == "delivery.delivered")
            .then_some(feed)
    })
    .await
    .expect("the delivery's event is in the feed");
    assert!(
        feed.iter()
            .all(|event| event["data"]["message_id"] == id.as_str())
    );
    let cursor = feed[0]["cursor"].as_str().expect("cursor").to_owned();
    let (_, other_key) = app.create_app("other").await;
    let endpoint_id = mine["id"].as_str().expect("id");
    let as_other = |method: reqwest::Method, path: String| {
        let request = app.request_as(&other_key, method, &path);
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or_default())
        }
    };
    let endpoint_path = format!("/v1/event-endpoints/{endpoint_id}");
    let (status, _) = as_other(reqwest::Method::GET, endpoint_path.clone()).await;
    assert_eq!(status, 404, "another app's endpoint is not found");
    let (status, _) = as_other(reqwest::Method::POST, format!("{endpoint_path}/test")).await;
    assert_eq!(status, 404, "another app's endpoint cannot be tested");
    let (_, theirs) = as_other(reqwest::Method::GET, "/v1/events".into()).await;
    assert_eq!(theirs["events"], json!([]), "{theirs}");
    let (_, list) = as_other(reqwest::Method::GET, "/v1/event-endpoints".into()).await;
    assert_eq!(list["items"], json!([]), "{list}");
    let (status, _) = as_other(reqwest::Method::GET, format!("/v1/events?after={cursor}")).await;
    assert_eq!(status, 400, "another app's cursor is not one of this feed");

    // The test ping reaches the receiver, signed.
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/event-endpoints/{endpoint_id}/test"),
        )
        .send()
        .await
        .expect("answers");
    let tested: Value = response.json().await.expect("JSON");
    assert_eq!(tested["delivered"], true, "{tested}");
    assert!(
        receiver.log().iter().any(|entry| entry["kind"] == "batch"
            && entry["body"]["data"]["events"][0]["type"] == "ping")
    );
}
