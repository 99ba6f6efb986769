//! Scenario 3, feedback: status events written by the feeder per second, beside raw `mongodb`
//! driver bulk inserts of the same delivery documents into the same server, in the same run.
//! The events are queued first, then the feeder starts and drains them.

use std::time::{Duration, Instant};

use anyhow::Context;
use mongodb::bson::Document;
use serde_json::{Value, json};
use sprayer_shared::amqp::{Publisher, Topology};
use sprayer_shared::config::AmqpSettings;
use sprayer_shared::model::{
    AppId, Channel, DeliveryEvent, DeliveryStatus, DeviceId, MessageId, StatusBatch, UserId, now_ms,
};

use crate::platform::{AMQP_URL, MONGODB_URL, binary};

/// Events per status message (as the dispatchers publish them).
const PER_MESSAGE: usize = 1_000;
/// Documents per raw insert (the feeder's batch size).
const PER_INSERT: usize = 2_000;

fn events(count: usize) -> anyhow::Result<Vec<DeliveryEvent>> {
    let app = AppId::generate();
    let device = DeviceId::parse("hook")?;
    let messages: Vec<MessageId> = (0..count.div_ceil(10_000))
        .map(|_| MessageId::generate())
        .collect();
    (0..count)
        .map(|n| {
            Ok(DeliveryEvent {
                app: app.clone(),
                message: messages[n / 10_000].clone(),
                channel: Channel::Http,
                user: UserId::parse(format!("u{n}"))?,
                device: device.clone(),
                status: DeliveryStatus::Delivered,
                attempt: 1,
                error: None,
                code: None,
                at: now_ms(),
            })
        })
        .collect()
}

/// Runs the scenario with `count` events.
pub async fn run(count: usize) -> anyhow::Result<Value> {
    let namespace = format!("benchfb{:08x}", rand::random::<u32>());
    let amqp = AmqpSettings {
        url: AMQP_URL.into(),
        prefix: format!("{namespace}."),
        queue_expires: Some(Duration::from_secs(600)),
        ..AmqpSettings::default()
    };
    let topology = Topology::new(&amqp);
    let connection = sprayer_shared::amqp::connect(AMQP_URL, Duration::from_secs(5))
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let channel = connection.create_channel().await?;
    topology
        .declare_status(&channel)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let events = events(count)?;
    let publisher = Publisher::new(AMQP_URL, topology.clone());
    for chunk in events.chunks(PER_MESSAGE * 50) {
        let messages = chunk
            .chunks(PER_MESSAGE)
            .map(|deliveries| {
                topology.status_message(&StatusBatch {
                    messages: Vec::new(),
                    deliveries: deliveries.to_vec(),
                    app_events: Vec::new(),
                    steps: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        publisher
            .publish_all(&messages)
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
    }
    let _ = connection.close(200, "bye".into()).await;
    eprintln!("feedback: {count} events queued");

    let database = format!("sprayer_{namespace}");
    let mongo = mongodb::Client::with_uri_str(MONGODB_URL).await?;
    let deliveries = mongo
        .database(&database)
        .collection::<Document>("deliveries");
    let started = Instant::now();
    let mut feeder = tokio::process::Command::new(binary("sprayer")?)
        .args(["run", "--only", "feeder"])
        .env_remove("SPRAYER_CONFIG")
        .env("SPRAYER_AMQP_PREFIX", format!("{namespace}."))
        .env("SPRAYER_AMQP_QUEUE_EXPIRES", "10m")
        .env("SPRAYER_MONGODB_DATABASE", &database)
        .env("SPRAYER_FEEDER_OPS_LISTEN", "127.0.0.1:0")
        .env("SPRAYER_TELEMETRY_FILTER", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting the feeder")?;
    // Timed from the first document written: the process's start is not throughput.
    let mut written = 0;
    let mut first: Option<(Instant, u64)> = None;
    while started.elapsed() < Duration::from_secs(300) {
        written = deliveries.estimated_document_count().await.unwrap_or(0);
        if written > 0 && first.is_none() {
            first = Some((Instant::now(), written));
        }
        if written >= count as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (since, already) = first.unwrap_or((started, 0));
    let feeder_seconds = since.elapsed().as_secs_f64();
    let feeder_rate = (written - already) as f64 / feeder_seconds;
    let _ = feeder.start_kill();
    let _ = feeder.wait().await;
    anyhow::ensure!(
        written >= count as u64,
        "the feeder wrote {written} of {count}"
    );
    eprintln!(
        "feedback: the feeder wrote {count} in {:.1}s from its start",
        started.elapsed().as_secs_f64()
    );

    // Raw: the same documents, bulk-inserted into a database with the same indexes.
    let raw_database = format!("{database}_raw");
    let raw = sprayer_shared::mongo::Mongo::connect(&sprayer_shared::config::MongoSettings {
        url: MONGODB_URL.into(),
        database: raw_database.clone(),
        ..Default::default()
    })
    .await?;
    raw.ensure_indexes(Duration::from_secs(30 * 24 * 3600))
        .await?;
    let documents: Vec<Document> = events
        .iter()
        .map(sprayer_feeder::write::delivery_document)
        .collect();
    let raw_collection = raw.database.collection::<Document>("deliveries");
    let started = Instant::now();
    for chunk in documents.chunks(PER_INSERT) {
        raw_collection
            .insert_many(chunk.to_vec())
            .ordered(false)
            .await?;
    }
    let raw_seconds = started.elapsed().as_secs_f64();
    eprintln!("feedback: raw inserts of {count} in {raw_seconds:.1}s");
    mongo.database(&database).drop().await?;
    mongo.database(&raw_database).drop().await?;
    let raw_rate = count as f64 / raw_seconds;
    Ok(json!({
        "events": count,
        "feeder_events_per_s": feeder_rate,
        "raw_inserts_per_s": raw_rate,
        "ratio": feeder_rate / raw_rate,
    }))
}
