//! Scenario `efficiency`: the CPU each process spends per message on every path, at a fixed
//! offered rate well under saturation (500 messages/s for 20 s from 10 clients), so that the
//! cores are not contended and the figures carry over to other machines. CPU is user + system
//! time from `/proc/<pid>/stat`, less what the same process uses idle for as long (timers,
//! heartbeats: the quietest of four 2-second windows before the paths run). Paths:
//!
//! - `webhook`: a message to one user with a webhook: accept, dispatch, the webhook, feedback;
//! - `ws`: a message to one connected user: accept, the deliverer, the socket, the client's
//!   ack, feedback;
//! - `http_group` and `ws_group`: one message to a group of 10,000, per delivery (over `ws`,
//!   inbox writes with nobody connected);
//! - `feedback`: one delivery event written, published as dispatchers do at this rate (one
//!   status message each).
//!
//! Beside the CPU, the broker messages per message (publishes, each confirmed, and deliveries,
//! each acked) and the database commands per message, from Sprayer's own counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value, json};
use sprayer_shared::amqp::{Publisher, Topology};
use sprayer_shared::config::AmqpSettings;
use sprayer_shared::model::{
    AppId, Channel, DeliveryEvent, DeliveryStatus, DeviceId, MessageId, StatusBatch, UserId, now_ms,
};
use tokio::sync::Semaphore;

use crate::arrivals::WsUser;
use crate::cpu::{Used, Watched};
use crate::platform::{AMQP_URL, Platform};
use crate::sink::{Sink, webhook_secret};

/// Messages offered per second.
pub const RATE: u32 = 500;
/// Seconds each paced path runs.
pub const SECONDS: u32 = 20;
/// Concurrent clients of a paced path.
const CLIENTS: usize = 10;
/// Members of the fan-out groups.
const GROUP: usize = 10_000;
/// Longest wait for a path's deliveries and feedback.
const LONGEST: Duration = Duration::from_secs(120);

/// Offers `one` at `rate` per second for `seconds`, at most `clients` at once; returns how
/// many succeeded.
pub async fn paced<F, Fut>(rate: u32, seconds: u32, clients: usize, one: F) -> u64
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(clients));
    let succeeded = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    for _ in 0..rate * seconds {
        tick.tick().await;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (attempt, succeeded) = (one(), succeeded.clone());
        tokio::spawn(async move {
            if attempt.await {
                succeeded.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
    let _ = permits.acquire_many(clients as u32).await;
    succeeded.load(Ordering::Relaxed)
}

/// What one path cost.
struct Cost {
    units: u64,
    used: Used,
    publishes: f64,
    deliveries: f64,
    db_commands: f64,
}

impl Cost {
    fn figures(&self, path: &str, figures: &mut Map<String, Value>) {
        for (name, micros) in self.used.per_unit(self.units) {
            figures.insert(format!("{path}_{name}_us"), json!(micros));
        }
        let units = self.units.max(1) as f64;
        figures.insert(
            format!("{path}_broker_messages"),
            json!((self.publishes + self.deliveries) / units),
        );
        figures.insert(
            format!("{path}_db_commands"),
            json!(self.db_commands / units),
        );
    }
}

/// Sprayer's counters that a path moves.
async fn counters(platform: &Platform) -> [f64; 3] {
    [
        platform.metric("sprayer_amqp_publishes_total").await,
        platform.metric("sprayer_amqp_deliveries_total").await,
        platform.api_metric("sprayer_feeder_commands_total").await,
    ]
}

/// Runs `work` (which returns how many units it did, once their feedback is written) and
/// measures what it cost above `idle`.
async fn measure(
    platform: &Platform,
    watched: &Watched,
    idle: &Used,
    work: impl Future<Output = anyhow::Result<u64>>,
) -> anyhow::Result<Cost> {
    let before = counters(platform).await;
    let start = watched.sample();
    let units = work.await?;
    let end = watched.sample();
    let after = counters(platform).await;
    Ok(Cost {
        units,
        used: start.until(&end).above(idle),
        publishes: after[0] - before[0],
        deliveries: after[1] - before[1],
        db_commands: after[2] - before[2],
    })
}

/// Offers messages with `body` at the paced rate; returns how many were accepted.
async fn offer(platform: &Platform, body: Value) -> anyhow::Result<u64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let url = format!("{}/v1/messages", platform.api);
    let body = Arc::new(body.to_string());
    let key = platform.key.clone();
    Ok(paced(RATE, SECONDS, CLIENTS, || {
        crate::platform::accepted(&client, &url, &key, &body)
    })
    .await)
}

async fn feeder_events(platform: &Platform) -> f64 {
    platform.api_metric("sprayer_feeder_events_total").await
}

/// Waits until the deliverer stored `count` more inbox messages than `before`.
async fn stored(platform: &Platform, before: f64, count: u64) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < LONGEST {
        if platform.deliverer_metric("sprayer_ws_stored_total").await >= before + count as f64 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Delivery events published straight to the status queue, one per status message, at the
/// paced rate, as dispatchers publish them at this load; returns how many were confirmed.
async fn publish_events(platform: &Platform) -> anyhow::Result<u64> {
    let amqp = AmqpSettings {
        url: AMQP_URL.into(),
        prefix: format!("{}.", platform.namespace),
        queue_expires: Some(Duration::from_secs(600)),
        ..AmqpSettings::default()
    };
    let topology = Topology::new(&amqp);
    let publisher = Arc::new(Publisher::new(AMQP_URL, topology.clone()));
    let app = AppId::generate();
    let device = DeviceId::parse("hook")?;
    let user = UserId::parse("eff-feedback")?;
    Ok(paced(RATE, SECONDS, CLIENTS, || {
        let event = DeliveryEvent {
            app: app.clone(),
            message: MessageId::generate(),
            channel: Channel::Http,
            user: user.clone(),
            device: device.clone(),
            status: DeliveryStatus::Delivered,
            attempt: 1,
            error: None,
            code: None,
            at: now_ms(),
        };
        let message = topology.status_message(&StatusBatch {
            messages: Vec::new(),
            deliveries: vec![event],
            app_events: Vec::new(),
            steps: Vec::new(),
        });
        let publisher = publisher.clone();
        async move {
            match message {
                Ok(message) => publisher.publish(message).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await)
}

/// Runs the scenario.
pub async fn run() -> anyhow::Result<Value> {
    let platform = Platform::start().await?;
    let watched = Watched::new(&[platform.api_pid(), platform.deliverer_pid()])?;
    let sink = Sink::start().await?;
    let hook = json!({"url": sink.url, "secret": webhook_secret()});

    // Everything set up first: the webhook user, the connected user, the two groups.
    platform
        .register_endpoints(&[
            json!({"user": "eff-hook", "channel": "http", "device": "hook", "address": hook}),
        ])
        .await
        .context("registering the webhook user")?;
    let token = platform.ws_token("eff-ws").await?;
    let http_members: Vec<String> = (0..GROUP).map(|n| format!("eh{n}")).collect();
    let ws_members: Vec<String> = (0..GROUP).map(|n| format!("ew{n}")).collect();
    platform.add_members("eff-http", &http_members).await?;
    platform.add_members("eff-ws", &ws_members).await?;
    let endpoints: Vec<Value> =
        http_members
            .iter()
            .map(|user| json!({"user": user, "channel": "http", "device": "hook", "address": hook}))
            .chain(ws_members.iter().map(
                |user| json!({"user": user, "channel": "ws", "device": "inbox", "address": {}}),
            ))
            .collect();
    platform.register_endpoints(&endpoints).await?;
    let ws_user = WsUser::connect(&platform.ws, &token).await?;
    crate::settle().await;
    let mut windows = Vec::new();
    for _ in 0..4 {
        let start = watched.sample();
        tokio::time::sleep(Duration::from_secs(2)).await;
        windows.push(start.until(&watched.sample()));
    }
    let idle = Used::quietest(&windows).context("idle windows")?;

    let mut figures = Map::new();
    figures.insert("offered_per_s".into(), json!(RATE));
    figures.insert("group_members".into(), json!(GROUP));

    let webhook = measure(&platform, &watched, &idle, async {
        let (hits, events) = (sink.hits(), feeder_events(&platform).await);
        let body = json!({"to": {"user": "eff-hook"}, "channels": ["http"], "content": {"title": "efficiency", "body": "webhook"}});
        let accepted = offer(&platform, body).await?;
        anyhow::ensure!(sink.wait_for(hits + accepted, LONGEST).await, "webhooks missing");
        anyhow::ensure!(
            platform.feedback_settled(events, accepted, LONGEST).await,
            "webhook feedback missing"
        );
        Ok(accepted)
    })
    .await?;
    webhook.figures("webhook", &mut figures);
    eprintln!(
        "efficiency: webhook path measured ({} messages)",
        webhook.units
    );
    crate::settle().await;

    let ws = measure(&platform, &watched, &idle, async {
        let (received, events) = (ws_user.messages.count(), feeder_events(&platform).await);
        let body = json!({"to": {"user": "eff-ws"}, "channels": ["ws"], "content": {"title": "efficiency", "body": "ws"}});
        let accepted = offer(&platform, body).await?;
        anyhow::ensure!(
            ws_user.messages.wait_for(received + accepted, LONGEST).await,
            "ws messages missing"
        );
        anyhow::ensure!(
            platform.feedback_settled(events, accepted, LONGEST).await,
            "ws feedback missing"
        );
        Ok(accepted)
    })
    .await?;
    ws.figures("ws", &mut figures);
    eprintln!("efficiency: ws path measured ({} messages)", ws.units);
    crate::settle().await;

    let http_group = measure(&platform, &watched, &idle, async {
        let (hits, events) = (sink.hits(), feeder_events(&platform).await);
        platform
            .send(&json!({"to": {"group": "eff-http"}, "channels": ["http"], "content": {"body": "group"}}))
            .await?;
        anyhow::ensure!(sink.wait_for(hits + GROUP as u64, LONGEST).await, "group webhooks missing");
        anyhow::ensure!(
            platform.feedback_settled(events, GROUP as u64, LONGEST).await,
            "group feedback missing"
        );
        Ok(GROUP as u64)
    })
    .await?;
    http_group.figures("http_group", &mut figures);
    crate::settle().await;

    let ws_group = measure(&platform, &watched, &idle, async {
        let before = platform.deliverer_metric("sprayer_ws_stored_total").await;
        let events = feeder_events(&platform).await;
        platform
            .send(&json!({"to": {"group": "eff-ws"}, "channels": ["ws"], "content": {"body": "group"}}))
            .await?;
        anyhow::ensure!(stored(&platform, before, GROUP as u64).await, "inbox writes missing");
        anyhow::ensure!(
            platform.feedback_settled(events, GROUP as u64, LONGEST).await,
            "ws group feedback missing"
        );
        Ok(GROUP as u64)
    })
    .await?;
    ws_group.figures("ws_group", &mut figures);
    eprintln!("efficiency: group paths measured");
    crate::settle().await;

    let feedback = measure(&platform, &watched, &idle, async {
        let events = feeder_events(&platform).await;
        let published = publish_events(&platform).await?;
        anyhow::ensure!(
            platform.feedback_settled(events, published, LONGEST).await,
            "feedback events missing"
        );
        Ok(published)
    })
    .await?;
    // The status messages came from this process, standing in for the dispatchers.
    let feedback = Cost {
        publishes: feedback.publishes + feedback.units as f64,
        ..feedback
    };
    feedback.figures("feedback", &mut figures);
    drop(ws_user);
    platform.stop().await;
    Ok(Value::Object(figures))
}
