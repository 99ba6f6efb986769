//! Scenario `events`: 100,000 delivery events pushed to one event endpoint (a sink that answers
//! 200 at once): events per second at the endpoint, beside the feeder's rate on the same status
//! messages in the same run, and the lag from each event's time to its arrival; then the
//! 100,000-member `http` fan-out without the events service and with it and an endpoint
//! subscribed to `delivery.*`, on the same platform's group.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use mongodb::bson::Document;
use serde_json::{Value, json};
use sprayer_shared::amqp::{Publisher, Topology};
use sprayer_shared::config::AmqpSettings;
use sprayer_shared::model::{
    AppId, Channel, DeliveryEvent, DeliveryStatus, DeviceId, MessageId, StatusBatch, UserId, now_ms,
};

use crate::platform::{AMQP_URL, MONGODB_URL, Platform};
use crate::report::percentiles;
use crate::sink::Sink;

/// Events per status message (as the dispatchers publish them).
const PER_MESSAGE: usize = 1_000;
/// Longest wait for the events to arrive.
const LONGEST: Duration = Duration::from_secs(300);

/// What the event sink saw.
#[derive(Default)]
struct Seen {
    events: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    lags_ms: Vec<f64>,
    batches: u64,
}

/// An event endpoint that answers 200 at once and notes each event's lag.
async fn event_sink(seen: Arc<Mutex<Seen>>) -> anyhow::Result<String> {
    let router = Router::new().route(
        "/events",
        post(move |body: Bytes| {
            let seen = seen.clone();
            async move {
                let now = Instant::now();
                let wall = SystemTime::now();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let events = body["data"]["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.batches += 1;
                seen.first.get_or_insert(now);
                seen.last = Some(now);
                for event in &events {
                    let at = event["timestamp"]
                        .as_str()
                        .and_then(|at| humantime::parse_rfc3339(at).ok());
                    if let Some(lag) = at.and_then(|at| wall.duration_since(at).ok()) {
                        seen.lags_ms.push(lag.as_secs_f64() * 1000.0);
                    }
                }
                seen.events += events.len() as u64;
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

async fn create_endpoint(platform: &Platform, url: &str) -> anyhow::Result<()> {
    platform
        .http
        .post(format!("{}/v1/event-endpoints", platform.api))
        .bearer_auth(&platform.key)
        .json(&json!({"url": url, "events": ["delivery.*"]}))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Publishes `count` `delivered` events of the platform's app, each timed as it is published.
async fn publish_events(platform: &Platform, count: usize) -> anyhow::Result<()> {
    let amqp = AmqpSettings {
        url: AMQP_URL.into(),
        prefix: format!("{}.", platform.namespace),
        queue_expires: Some(Duration::from_secs(600)),
        ..AmqpSettings::default()
    };
    let topology = Topology::new(&amqp);
    let publisher = Publisher::new(AMQP_URL, topology.clone());
    let app = AppId::parse(platform.app())?;
    let device = DeviceId::parse("hook")?;
    let message = MessageId::generate();
    for start in (0..count).step_by(PER_MESSAGE) {
        let at = now_ms();
        let deliveries = (start..(start + PER_MESSAGE).min(count))
            .map(|n| {
                Ok(DeliveryEvent {
                    app: app.clone(),
                    message: message.clone(),
                    channel: Channel::Http,
                    user: UserId::parse(format!("e{n}"))?,
                    device: device.clone(),
                    status: DeliveryStatus::Delivered,
                    attempt: 1,
                    error: None,
                    code: None,
                    at,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let batch = StatusBatch {
            deliveries,
            ..StatusBatch::default()
        };
        publisher
            .publish(topology.status_message(&batch)?)
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
    }
    Ok(())
}

/// Events per second at the endpoint and the feeder's rate, on `count` events.
async fn throughput(count: usize) -> anyhow::Result<Value> {
    let platform = Platform::start_roles("accepter,feeder,events", &[]).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = event_sink(seen.clone()).await?;
    create_endpoint(&platform, &url).await?;
    let mongo = mongodb::Client::with_uri_str(MONGODB_URL).await?;
    let deliveries = mongo
        .database(&platform.database)
        .collection::<Document>("deliveries");
    let started = Instant::now();
    let publishing = {
        let platform_ref = &platform;
        async move { publish_events(platform_ref, count).await }
    };
    // The feeder's rate on the same status messages, from its first document to the last.
    let feeder = async {
        let mut first: Option<(Instant, u64)> = None;
        while started.elapsed() < LONGEST {
            let written = deliveries.estimated_document_count().await.unwrap_or(0);
            if written > 0 && first.is_none() {
                first = Some((Instant::now(), written));
            }
            if written >= count as u64 {
                let (since, already) = first.unwrap_or((started, 0));
                return Some((written - already) as f64 / since.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    };
    let arrived = async {
        while started.elapsed() < LONGEST {
            if seen.lock().unwrap_or_else(|e| e.into_inner()).events >= count as u64 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    let (published, feeder_rate, arrived) = tokio::join!(publishing, feeder, arrived);
    published?;
    let total_s = started.elapsed().as_secs_f64();
    platform.stop().await;
    let mut seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    anyhow::ensure!(arrived, "{} of {count} events arrived", seen.events);
    let span = match (seen.first, seen.last) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => total_s,
    };
    let rate = seen.events as f64 / span.max(f64::EPSILON);
    let (p50, p99, _) = percentiles(&mut seen.lags_ms);
    eprintln!(
        "events: {} events in {span:.1}s at the endpoint ({rate:.0}/s, {} batches), feeder {feeder_rate:?}/s, lag p50 {p50:.0} ms p99 {p99:.0} ms",
        seen.events, seen.batches
    );
    Ok(json!({
        "events": seen.events,
        "batches": seen.batches,
        "events_per_s": rate,
        "feeder_events_per_s": feeder_rate,
        "ratio_to_feeder": feeder_rate.map(|feeder| rate / feeder),
        "lag_p50_ms": p50,
        "lag_p99_ms": p99,
    }))
}

/// The `http` fan-out to `users` without the events service, then with it and an endpoint on
/// `delivery.*`.
async fn fanout(users: usize) -> anyhow::Result<Value> {
    let mut rates = Vec::new();
    for roles in [
        "accepter,dispatchers,feeder",
        "accepter,dispatchers,feeder,events",
    ] {
        crate::settle().await;
        let platform = Platform::start_roles(roles, &[]).await?;
        let sink = Sink::start().await?;
        crate::fanout::setup(&platform, &sink, users).await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        if roles.ends_with("events") {
            let url = event_sink(seen.clone()).await?;
            create_endpoint(&platform, &url).await?;
        }
        let (delivery, _) = crate::fanout::http(&platform, &sink, users).await;
        let events = seen.lock().unwrap_or_else(|e| e.into_inner()).events;
        platform.stop().await;
        let rate = delivery.map(|seconds| users as f64 / seconds);
        eprintln!(
            "events: fan-out with roles {roles}: {rate:?}/s ({events} events at the endpoint by then)"
        );
        rates.push(rate);
    }
    Ok(json!({
        "fanout_users": users,
        "fanout_per_s_without": rates[0],
        "fanout_per_s_with_endpoint": rates[1],
        "fanout_ratio": rates[0].zip(rates[1]).map(|(without, with)| with / without),
    }))
}

/// Runs the scenario: `count` events, a fan-out to `users`.
pub async fn run(count: usize, users: usize) -> anyhow::Result<Value> {
    let mut figures = throughput(count).await?;
    let fanout = fanout(users).await?;
    if let (Some(figures), Some(fanout)) = (figures.as_object_mut(), fanout.as_object()) {
        figures.extend(fanout.clone());
    }
    Ok(figures)
}
