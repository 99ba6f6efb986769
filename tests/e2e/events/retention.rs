//! Retention: events older than `events.retention` are removed, a cursor from before them
//! answers 410 naming the field (on the feed and on replay), and a reader without a cursor
//! starts at the oldest event kept.

use std::time::Duration;

use mongodb::bson::doc;
use serde_json::{Value, json};
use sprayer_shared::feed::Feed;
use sprayer_shared::model::now_ms;
use sprayer_shared::mongo::{Mongo, date};

use super::support::{endpoint, events_app, whole_feed};
use crate::support::peers::events::EventReceiver;
use crate::support::receiver::{Receiver, webhook_secret};
use crate::support::wait::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_past_retention_are_removed_and_older_cursors_answer_410() {
    let app = events_app(|_| {}).await;
    let receiver = EventReceiver::start();
    let created = endpoint(&app, &receiver, &["*"]).await;
    let sink = Receiver::start().await;
    app.put_webhook("eve", "d1", &sink.url("eve"), &webhook_secret())
        .await;
    for index in 0..3 {
        app.send_ok(&json!({ "to": { "user": "eve" }, "channels": ["http"],
                             "content": { "body": format!("n{index}") } }))
            .await;
    }
    let feed = wait_until(Duration::from_secs(30), || async {
        let feed = whole_feed(&app, None).await;
        (feed.len() >= 6).then_some(feed)
    })
    .await
    .expect("3 messages' accepted and delivered events");

    // The first two events are made eight days old (the retention is seven), then retention
    // runs as the events service runs it.
    let mongo = Mongo::connect(&app.settings.mongodb)
        .await
        .expect("mongodb");
    let store = Feed::new(&mongo);
    let ids: Vec<&str> = feed[..2]
        .iter()
        .filter_map(|event| event["id"].as_str())
        .collect();
    let eight_days = 8 * 24 * 3600 * 1000;
    store
        .events
        .update_many(
            doc! { "_id": { "$in": &ids } },
            doc! { "$set": { "at": date(now_ms() - eight_days) } },
        )
        .await
        .expect("aged");
    let removed = sprayer_events::retention::trim(&store, app.settings.events.retention)
        .await
        .expect("trimmed");
    assert_eq!(removed, 2);

    let old = feed[0]["cursor"].as_str().expect("cursor");
    let (status, problem) = app.get(&format!("/v1/events?after={old}")).await;
    assert_eq!(status, 410, "{problem}");
    assert_eq!(problem["field"], "after");
    assert_eq!(problem["type"], "/problems/cursor-expired");
    let endpoint_id = created["id"].as_str().expect("id");
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/event-endpoints/{endpoint_id}/replay"),
        )
        .json(&json!({ "after": old }))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 410);
    let problem: Value = response.json().await.expect("JSON");
    assert_eq!(problem["field"], "/after", "{problem}");
    // The last removed event's cursor still reads on; a reader without one starts after it.
    let edge = feed[1]["cursor"].as_str().expect("cursor");
    let (status, page) = app.get(&format!("/v1/events?after={edge}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"][0]["id"], feed[2]["id"]);
    let kept = whole_feed(&app, None).await;
    assert_eq!(
        kept[0]["id"], feed[2]["id"],
        "the feed starts at the oldest event kept"
    );
    assert_eq!(kept.len(), feed.len() - 2);
}
