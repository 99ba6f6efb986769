//! Scenario 2, fan-out: one message to a group of 100,000 users, once over `ws` (inbox writes,
//! nobody connected) and once over `http` (a local sink that answers 200 at once): time from
//! POST to the last delivery and to the last feedback record, and deliveries per second; and
//! the Redis bytes a message of a user's history takes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::platform::Platform;
use crate::sink::{Sink, webhook_secret};

/// Longest wait for one side.
const LONGEST: Duration = Duration::from_secs(180);

async fn wait_for(mut done: impl AsyncFnMut() -> bool) -> Option<f64> {
    let started = Instant::now();
    while started.elapsed() < LONGEST {
        if done().await {
            return Some(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// `GET /v1/messages/{id}` (null when it does not answer).
pub async fn summary(platform: &Platform, id: &str) -> Value {
    let Ok(response) = platform
        .http
        .get(format!("{}/v1/messages/{id}", platform.api))
        .bearer_auth(&platform.key)
        .send()
        .await
    else {
        return Value::Null;
    };
    response.json().await.unwrap_or(Value::Null)
}

async fn summary_count(platform: &Platform, id: &str, channel: &str, status: &str) -> u64 {
    summary(platform, id).await["summary"][channel][status]
        .as_u64()
        .unwrap_or(0)
}

/// Puts users `f0..` in the group `fan`, each with a webhook at `sink` and an inbox.
pub async fn setup(platform: &Platform, sink: &Sink, users: usize) -> anyhow::Result<()> {
    let setup = Instant::now();
    // The members in batches of 1,000, then each user's two endpoints (which join the
    // group's per-channel sets as they are registered), 1,000 a request too.
    let names: Vec<String> = (0..users).map(|n| format!("f{n}")).collect();
    platform.add_members("fan", &names).await?;
    let hook = json!({"url": sink.url, "secret": webhook_secret()});
    let endpoints: Vec<Value> = names
        .iter()
        .flat_map(|user| {
            [
                json!({"user": user, "channel": "http", "device": "hook", "address": hook}),
                json!({"user": user, "channel": "ws", "device": "inbox", "address": {}}),
            ]
        })
        .collect();
    platform.register_endpoints(&endpoints).await?;
    eprintln!("fanout: {users} users set up in {:.1?}", setup.elapsed());
    Ok(())
}

/// One message to the group `fan` over `http`: seconds from the POST to the last delivery at
/// the sink and to the last feedback record.
pub async fn http(platform: &Platform, sink: &Sink, users: usize) -> (Option<f64>, Option<f64>) {
    let count = users as u64;
    let hits_before = sink.hits();
    let started = Instant::now();
    let Ok(http_id) = platform
        .send(
            &json!({"to": {"group": "fan"}, "channels": ["http"], "content": {"body": "fan-out"}}),
        )
        .await
    else {
        return (None, None);
    };
    let http_delivery = wait_for(async || sink.hits() >= hits_before + count)
        .await
        .map(|_| started.elapsed().as_secs_f64());
    let http_feedback =
        wait_for(async || summary_count(platform, &http_id, "http", "delivered").await >= count)
            .await
            .map(|_| started.elapsed().as_secs_f64());
    eprintln!("fanout: http delivered in {http_delivery:?} s, feedback in {http_feedback:?} s");
    (http_delivery, http_feedback)
}

/// Messages in the history measured.
const HISTORY_MESSAGES: usize = 200;

/// Redis bytes per message of a full history: one user gets [`HISTORY_MESSAGES`] messages over
/// `ws`, all marked read, and the history's keys are measured (`MEMORY USAGE`).
async fn history_bytes(platform: &Platform) -> anyhow::Result<f64> {
    let user = "history-user";
    let token = platform.ws_token(user).await?;
    let stored_before = platform.deliverer_metric("sprayer_ws_stored_total").await;
    for n in 0..HISTORY_MESSAGES {
        platform
            .send(&json!({"to": {"user": user}, "channels": ["ws"],
                "content": {"title": "Your order shipped", "body": format!("Order {n} left the warehouse and arrives tomorrow."), "data": {"order": n}}}))
            .await?;
    }
    let stored = wait_for(async || {
        platform.deliverer_metric("sprayer_ws_stored_total").await
            >= stored_before + HISTORY_MESSAGES as f64
    })
    .await;
    anyhow::ensure!(stored.is_some(), "the history messages were not stored");
    platform
        .http
        .post(format!(
            "{}/v1/inbox/state",
            platform.ws.replacen("ws://", "http://", 1)
        ))
        .bearer_auth(&token)
        .json(&json!({"all": true, "read": true}))
        .send()
        .await?
        .error_for_status()?;
    let tag = format!("{{{}:{user}}}", platform.app());
    let keys = [
        format!("hist:{tag}"),
        format!("hist:{tag}:m"),
        format!("hist:{tag}:s"),
    ];
    let bytes = platform.redis_bytes(&keys).await?;
    let per_message = bytes as f64 / HISTORY_MESSAGES as f64;
    eprintln!(
        "fanout: a history of {HISTORY_MESSAGES} messages takes {bytes} bytes ({per_message:.0} a message)"
    );
    Ok(per_message)
}

/// Runs the scenario with `users` group members.
pub async fn run(users: usize) -> anyhow::Result<Value> {
    let platform = Platform::start().await?;
    let sink = Sink::start().await?;
    setup(&platform, &sink, users).await?;
    let count = users as u64;

    let stored_before = platform.deliverer_metric("sprayer_ws_stored_total").await;
    let started = Instant::now();
    let ws_id = platform
        .send(&json!({"to": {"group": "fan"}, "channels": ["ws"], "content": {"body": "fan-out"}}))
        .await?;
    let ws_delivery = wait_for(async || {
        platform.deliverer_metric("sprayer_ws_stored_total").await >= stored_before + users as f64
    })
    .await
    .map(|_| started.elapsed().as_secs_f64());
    let ws_feedback =
        wait_for(async || summary_count(&platform, &ws_id, "ws", "queued").await >= count)
            .await
            .map(|_| started.elapsed().as_secs_f64());
    eprintln!("fanout: ws stored in {ws_delivery:?} s, feedback in {ws_feedback:?} s");

    let (http_delivery, http_feedback) = http(&platform, &sink, users).await;
    let history = history_bytes(&platform).await?;
    platform.stop().await;
    let rate = |seconds: Option<f64>| seconds.map(|seconds| users as f64 / seconds);
    Ok(json!({
        "users": users,
        "ws_last_delivery_s": ws_delivery,
        "ws_last_feedback_s": ws_feedback,
        "ws_deliveries_per_s": rate(ws_delivery),
        "http_last_delivery_s": http_delivery,
        "http_last_feedback_s": http_feedback,
        "http_deliveries_per_s": rate(http_delivery),
        "history_bytes_per_message": history,
        "history_goal_bytes": 1024,
    }))
}
