//! Scenario `latency`: 1,000 sequential sends on an idle system, each timed from the start of
//! its `POST /v1/messages` to its arrival: at a webhook (a local sink) for one webhook user,
//! and as a frame on the socket of one connected WebSocket user (who acks it).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::arrivals::WsUser;
use crate::platform::Platform;
use crate::report::percentiles;
use crate::sink::{Sink, webhook_secret};

/// Sends per path.
const SENDS: usize = 1_000;
/// Longest wait for one arrival.
const LONGEST: Duration = Duration::from_secs(10);

/// Sends `body` `SENDS` times, one after another, each timed until `arrived(n)` (the n-th
/// arrival in all) returns; returns the latencies in milliseconds.
async fn sequential(
    platform: &Platform,
    body: &Value,
    arrived: impl AsyncFn(u64) -> bool,
    before: u64,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(SENDS);
    for n in 1..=SENDS as u64 {
        let sent = Instant::now();
        platform.send(body).await?;
        anyhow::ensure!(arrived(before + n).await, "send {n} never arrived");
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

fn figures(path: &str, latencies: &mut [f64], figures: &mut serde_json::Map<String, Value>) {
    let (p50, p99, max) = percentiles(latencies);
    figures.insert(format!("{path}_p50_ms"), json!(p50));
    figures.insert(format!("{path}_p99_ms"), json!(p99));
    figures.insert(format!("{path}_max_ms"), json!(max));
}

/// Runs the scenario.
pub async fn run() -> anyhow::Result<Value> {
    let platform = Platform::start().await?;
    let sink = Sink::start().await?;
    platform
        .register_endpoints(&[
            json!({"user": "lat-hook", "channel": "http", "device": "hook",
            "address": {"url": sink.url, "secret": webhook_secret()}}),
        ])
        .await
        .context("registering the webhook user")?;
    let token = platform.ws_token("lat-ws").await?;
    let ws_user = WsUser::connect(&platform.ws, &token).await?;
    crate::settle().await;

    let mut result = serde_json::Map::new();
    result.insert("sends".into(), json!(SENDS));
    let webhook =
        json!({"to": {"user": "lat-hook"}, "channels": ["http"], "content": {"body": "latency"}});
    let mut webhook = sequential(
        &platform,
        &webhook,
        async |count| sink.wait_for(count, LONGEST).await,
        sink.hits(),
    )
    .await?;
    figures("webhook", &mut webhook, &mut result);

    let ws = json!({"to": {"user": "lat-ws"}, "channels": ["ws"], "content": {"body": "latency"}});
    let mut ws = sequential(
        &platform,
        &ws,
        async |count| ws_user.messages.wait_for(count, LONGEST).await,
        ws_user.messages.count(),
    )
    .await?;
    figures("ws", &mut ws, &mut result);
    drop(ws_user);
    platform.stop().await;
    Ok(Value::Object(result))
}
