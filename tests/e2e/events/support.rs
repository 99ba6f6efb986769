//! What the events tests share: an app with the events service, an endpoint made through the
//! API, the feed read to its end.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::peers::events::EventReceiver;

/// An app with every service, the events service's retries shortened; ready once the events
/// queue is there (status messages published before it exists are not in any feed).
pub async fn events_app(adjust: impl FnOnce(&mut sprayer_shared::Settings)) -> TestApp {
    let app = TestApp::spawn_with_events(|settings| {
        settings.events.retry_tiers = vec![
            Duration::from_millis(200),
            Duration::from_millis(500),
            Duration::from_secs(1),
        ];
        adjust(settings);
    })
    .await;
    wait_for_events_queue(&app.settings).await;
    app
}

/// Waits until the events service has declared its queue.
pub async fn wait_for_events_queue(settings: &sprayer_shared::Settings) {
    let connection = sprayer_shared::amqp::connect(&settings.amqp.url, Duration::from_secs(5))
        .await
        .expect("rabbitmq");
    let queue = sprayer_shared::amqp::Topology::new(&settings.amqp).events_queue();
    let declared = crate::support::wait::wait_until(Duration::from_secs(30), || async {
        // A passive declare of a missing queue closes the channel: one channel per try.
        let channel = connection.create_channel().await.ok()?;
        channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .ok()
    })
    .await;
    let _ = connection.close(200, "bye".into()).await;
    assert!(declared.is_some(), "the events service declares {queue}");
}

/// Creates an event endpoint at `receiver` for `events`; returns the created view (with its
/// `secret`), the receiver set to verify with it and answer 200.
pub async fn endpoint(app: &TestApp, receiver: &EventReceiver, events: &[&str]) -> Value {
    let response = app
        .request(reqwest::Method::POST, "/v1/event-endpoints")
        .json(&json!({ "url": receiver.url(), "events": events }))
        .send()
        .await
        .expect("answers");
    let status = response.status();
    let created: Value = response.json().await.expect("JSON");
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("the secret, shown once");
    receiver.set(&[secret], true).await;
    created
}

/// Every event of the app's feed (of `types`, comma-separated, when given), following `next`
/// page by page until `has_more` is false.
pub async fn whole_feed(app: &TestApp, types: Option<&str>) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/events?limit=1000".to_owned();
        if let Some(types) = types {
            path.push_str(&format!("&types={types}"));
        }
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let batch = page["events"].as_array().cloned().unwrap_or_default();
        after = page["next"].as_str().map(str::to_owned);
        events.extend(batch);
        if page["has_more"] != true {
            return events;
        }
    }
}

/// Ids in order, each kept at its first place.
pub fn first_of_each(events: &[Value]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter_map(|event| event["id"].as_str())
        .filter(|id| seen.insert(id.to_owned()))
        .map(str::to_owned)
        .collect()
}
