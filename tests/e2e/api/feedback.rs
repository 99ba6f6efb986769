//! The feeder's rank rule: duplicate and out-of-order status events leave each delivery at its
//! highest status and the counts exact.

use std::time::Duration;

use serde_json::json;
use sprayer_shared::amqp::{Outgoing, Publisher, STATUS_ROUTING_KEY, Topology};
use sprayer_shared::model::{
    AppId, Channel, DeliveryEvent, DeliveryStatus, DeviceId, MessageId, StatusBatch, UserId, now_ms,
};

use crate::support::app::TestApp;
use crate::support::wait::wait_until;

fn event(
    app: &AppId,
    message: &MessageId,
    user: &str,
    status: DeliveryStatus,
    attempt: u32,
) -> DeliveryEvent {
    DeliveryEvent {
        app: app.clone(),
        message: message.clone(),
        channel: Channel::Http,
        user: UserId::parse(user).expect("valid"),
        device: DeviceId::parse("d1").expect("valid"),
        status,
        attempt,
        error: (status == DeliveryStatus::Queued).then(|| "receiver answered 500".to_owned()),
        code: None,
        at: now_ms(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_and_late_events_never_move_a_delivery_back_and_counts_stay_exact() {
    let app = TestApp::spawn().await;
    // A real message (to nobody) gives the record the summary reads.
    let id = app
        .send_ok(&json!({ "to": { "user": "nobody" }, "content": { "body": "x" } }))
        .await;
    wait_until(Duration::from_secs(10), || async { app.summary(&id).await })
        .await
        .expect("recorded");

    let app_id = AppId::parse(app.app.clone()).expect("valid");
    let message = MessageId::parse(id.clone()).expect("valid");
    let publisher = Publisher::new(&app.settings.amqp.url, Topology::new(&app.settings.amqp));
    let publish = |events: Vec<DeliveryEvent>| {
        let body = serde_json::to_vec(&StatusBatch {
            messages: vec![],
            deliveries: events,
            app_events: Vec::new(),
            steps: Vec::new(),
        })
        .expect("json");
        let topology = publisher.topology();
        Outgoing {
            exchange: topology.status_exchange(),
            routing_key: STATUS_ROUTING_KEY.into(),
            body,
            kind: None,
        }
    };
    use DeliveryStatus::*;
    // Separate AMQP messages, so the events land in separate writes as well as in one.
    let batches = vec![
        vec![
            event(&app_id, &message, "a", Delivered, 2),
            event(&app_id, &message, "b", Sent, 1),
        ],
        vec![event(&app_id, &message, "a", Delivered, 2)],
        vec![
            event(&app_id, &message, "a", Queued, 1),
            event(&app_id, &message, "a", Sent, 2),
        ],
        vec![
            event(&app_id, &message, "b", Queued, 1),
            event(&app_id, &message, "c", Failed, 4),
        ],
        vec![
            event(&app_id, &message, "c", Queued, 3),
            event(&app_id, &message, "c", Queued, 3),
        ],
        vec![event(&app_id, &message, "b", Sent, 1)],
    ];
    for batch in batches {
        publisher.publish(publish(batch)).await.expect("published");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // The same events again, all in one message.
    let again = vec![
        event(&app_id, &message, "a", Delivered, 2),
        event(&app_id, &message, "b", Queued, 1),
        event(&app_id, &message, "c", Queued, 2),
    ];
    publisher.publish(publish(again)).await.expect("published");

    wait_until(Duration::from_secs(10), || async {
        let summary = app.summary(&id).await?;
        (summary["total"] == 3 && summary["summary"]["http"]["failed"] == 1).then_some(())
    })
    .await
    .expect("events written");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = app.summary(&id).await.expect("summary");
    assert_eq!(
        summary["summary"]["http"],
        json!({ "delivered": 1, "sent": 1, "failed": 1 }),
        "{summary}"
    );
    assert_eq!(summary["total"], 3);

    let deliveries = app.all_deliveries(&id, 10).await;
    let by_user = |user: &str| {
        deliveries
            .iter()
            .find(|d| d["user"] == user)
            .expect("delivery")
            .clone()
    };
    assert_eq!(
        (
            by_user("a")["status"].clone(),
            by_user("a")["attempts"].clone()
        ),
        (json!("delivered"), json!(2))
    );
    assert_eq!(by_user("b")["status"], "sent");
    assert_eq!(
        (
            by_user("c")["status"].clone(),
            by_user("c")["attempts"].clone()
        ),
        (json!("failed"), json!(4))
    );
}

/// `count` callers of `committer` at once, each with one event; returns once all are confirmed.
async fn publish_together(
    committer: &sprayer_shared::amqp::committer::EventCommitter,
    app: &AppId,
    message: &MessageId,
    prefix: &str,
    count: usize,
) {
    let calls = (0..count).map(|n| {
        let committer = committer.clone();
        let user = format!("{prefix}{n}");
        let event = event(app, message, &user, DeliveryStatus::Delivered, 1);
        async move { committer.publish(vec![event]).await }
    });
    for result in futures::future::join_all(calls).await {
        result.expect("confirmed");
    }
}

/// Status events of concurrent jobs share broker messages (`dispatcher.status_linger`): callers
/// that wait together go in one message, at once when as many wait as the consumer's prefetch
/// lets in, otherwise after the linger; a large batch is split at `dispatcher.status_batch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_events_of_concurrent_jobs_share_one_broker_message() {
    use sprayer_shared::amqp::committer::event_committer;
    use std::sync::Arc;
    use std::time::Instant;

    crate::support::stack::require_servers().await;
    let settings = crate::support::stack::test_settings();
    let topology = Topology::new(&settings.amqp);
    let publisher = Arc::new(Publisher::new(&settings.amqp.url, topology.clone()));
    publisher.check().await.expect("rabbitmq");
    let queue = topology.status_queue();
    let app = AppId::generate();
    let message = MessageId::generate();
    let linger = Duration::from_millis(400);
    // Five callers at once, five the most that can wait: one message, well before the linger.
    let committer = event_committer(publisher.clone(), 1_000, linger, 5);
    let started = Instant::now();
    publish_together(&committer, &app, &message, "u", 5).await;
    assert!(
        started.elapsed() < linger,
        "five waiting callers went at once, not after the linger ({:?})",
        started.elapsed()
    );
    assert_eq!(crate::support::stack::queue_depth(&queue).await, 1);

    // Two callers of five possible: they wait the linger, then go together.
    let started = Instant::now();
    publish_together(&committer, &app, &message, "v", 2).await;
    assert!(started.elapsed() >= linger, "{:?}", started.elapsed());
    assert!(started.elapsed() < linger * 3, "{:?}", started.elapsed());
    assert_eq!(crate::support::stack::queue_depth(&queue).await, 2);

    // 2,500 events of one job in messages of at most 1,000.
    let many: Vec<DeliveryEvent> = (0..2_500)
        .map(|n| {
            event(
                &app,
                &message,
                &format!("w{n}"),
                DeliveryStatus::Delivered,
                1,
            )
        })
        .collect();
    committer.publish(many).await.expect("confirmed");
    assert_eq!(crate::support::stack::queue_depth(&queue).await, 5);

    // What the queue holds: 5 + 2 + 2,500 events, in batches of 5, 2, 1,000, 1,000 and 500.
    let connection =
        lapin::Connection::connect(crate::support::stack::AMQP_URL, Default::default())
            .await
            .expect("rabbitmq");
    let channel = connection.create_channel().await.expect("channel");
    let mut sizes = Vec::new();
    while let Some(delivery) = channel
        .basic_get(
            queue.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get")
    {
        let batch: StatusBatch = serde_json::from_slice(&delivery.data).expect("a status batch");
        sizes.push(batch.deliveries.len());
    }
    assert_eq!(sizes, vec![5, 2, 1_000, 1_000, 500]);
}
