//! Scenarios `timers` and `escalation`: the scheduler's durable timers under a burst, and an
//! escalation chain over a group stopped by half its members' acks.
//!
//! - `timers`: 100,000 messages, one per user with a webhook, all `send_at` the same second:
//!   how long after that second the last timer fired (the scheduler's
//!   `sprayer_scheduler_timers_fired_total`) and the last webhook arrived, the firing rate,
//!   and Redis's memory per 100,000 pending scheduled messages (`used_memory` before and after
//!   they were accepted, nothing else running).
//! - `escalation`: a 10,000-member group, each with an inbox and a webhook; one message with
//!   steps ws (`wait`, `until: acked`) then webhook; half the members hold a socket that acks
//!   at once. The webhook step must reach exactly the other half; the figure is the time from
//!   the end of the wait to the last webhook.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};
use sprayer_shared::model::now_ms;

use crate::platform::Platform;
use crate::sink::webhook_secret;
use crate::sockets::Clients;

/// The roles of the API process: the scheduler beside the usual ones.
const ROLES: &str = "accepter,dispatchers,feeder,scheduler";

/// Webhooks seen, by user, with the time of the last.
#[derive(Default)]
struct Seen {
    users: Vec<String>,
    last: Option<Instant>,
    last_ms: i64,
}

/// A webhook sink that notes each delivery's user.
async fn user_sink(seen: Arc<Mutex<Seen>>) -> anyhow::Result<String> {
    let router = Router::new().route(
        "/hook",
        post(move |body: Bytes| {
            let seen = seen.clone();
            async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let user = body["data"]["user"].as_str().unwrap_or_default().to_owned();
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.users.push(user);
                seen.last = Some(Instant::now());
                seen.last_ms = now_ms();
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

async fn redis_used_memory() -> anyhow::Result<u64> {
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut redis)
        .await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0))
}

/// Scenario `timers` with `count` messages.
pub async fn timers(count: usize) -> anyhow::Result<Value> {
    let platform = Platform::start_roles(ROLES, &[]).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = user_sink(seen.clone()).await?;
    let hook = json!({"url": url, "secret": webhook_secret()});
    let users: Vec<String> = (0..count).map(|n| format!("t{n}")).collect();
    let endpoints: Vec<Value> = users
        .iter()
        .map(|user| json!({"user": user, "channel": "http", "device": "hook", "address": hook}))
        .collect();
    platform.register_endpoints(&endpoints).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let memory_before = redis_used_memory().await?;
    // Every message must be accepted before the second they are due: at the accept rate of
    // the `accept` scenario, 100,000 take well under a minute.
    let lead_ms = 30_000 + i64::try_from(count / 2).unwrap_or(0);
    let due = (now_ms() + lead_ms) / 1000 * 1000;
    let send_at = sprayer_shared::feed::rfc3339_ms(due);
    let accepting = Instant::now();
    let accepted = futures::stream::iter(&users)
        .map(|user| {
            let body =
                json!({"to": {"user": user}, "content": {"body": "due"}, "send_at": send_at});
            let platform = &platform;
            async move { platform.send(&body).await }
        })
        .buffer_unordered(64)
        .filter(|result| std::future::ready(result.is_ok()))
        .count()
        .await;
    let accept_s = accepting.elapsed().as_secs_f64();
    let all_before_due = now_ms() < due;
    let memory_pending = redis_used_memory().await?;
    eprintln!(
        "timers: {accepted} accepted in {accept_s:.1} s, {} ms before due",
        due - now_ms()
    );
    // When the fired counter last moved, polled every 20 ms.
    let longest = Instant::now()
        + Duration::from_millis(u64::try_from(lead_ms).unwrap_or(0))
        + Duration::from_secs(120);
    let mut fired_last_ms = None;
    let mut first_fire_ms = None;
    let mut last = 0.0;
    while Instant::now() < longest {
        let fired = platform
            .api_metric("sprayer_scheduler_timers_fired_total")
            .await;
        if fired > last {
            let now = now_ms();
            if last == 0.0 {
                first_fire_ms = Some(now);
            }
            last = fired;
            fired_last_ms = Some(now);
        }
        if fired >= accepted as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_by = Instant::now() + Duration::from_secs(120);
    while Instant::now() < delivered_by && seen.lock().map_or(0, |seen| seen.users.len()) < accepted
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Where a round's time went: the scheduler's seconds per stage, summed over its rounds.
    let mut stages = serde_json::Map::new();
    for stage in [
        "claim",
        "plans",
        "begin",
        "endpoints",
        "arm",
        "publish",
        "ack",
    ] {
        let name = format!("sprayer_scheduler_stage_seconds_sum{{stage=\"{stage}\"}}");
        stages.insert(
            format!("stage_{stage}_s"),
            json!(platform.api_metric(&name).await),
        );
    }
    let (delivered, last_webhook_ms) = {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        (seen.users.len(), seen.last_ms)
    };
    platform.stop().await;
    let fired_lag = fired_last_ms.map(|at| (at - due) as f64 / 1000.0);
    let rate = match (first_fire_ms, fired_last_ms) {
        (Some(first), Some(last)) if last > first => {
            Some(accepted as f64 / ((last - first) as f64 / 1000.0))
        }
        _ => None,
    };
    let mut figures = json!({
        "messages": count,
        "accepted": accepted,
        "accepted_before_due": all_before_due,
        "fired": last,
        "first_fired_after_due_s": first_fire_ms.map(|at| (at - due) as f64 / 1000.0),
        "last_fired_after_due_s": fired_lag,
        "fired_per_s": rate,
        "delivered": delivered,
        "last_webhook_after_due_s": (last_webhook_ms - due) as f64 / 1000.0,
        "redis_mib_per_100k_pending": (memory_pending.saturating_sub(memory_before)) as f64 / 1_048_576.0 * 100_000.0 / count.max(1) as f64,
        "goal_last_fired_s": 5.0,
        "met": fired_lag.is_some_and(|lag| lag <= 5.0) && last >= accepted as f64,
    });
    if let Some(object) = figures.as_object_mut() {
        object.extend(stages);
    }
    Ok(figures)
}

/// Scenario `escalation` with `members` group members, half of them acking.
pub async fn escalation(members: usize, processes: usize) -> anyhow::Result<Value> {
    const WAIT_S: u64 = 20;
    let platform = Platform::start_roles(ROLES, &[]).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = user_sink(seen.clone()).await?;
    let hook = json!({"url": url, "secret": webhook_secret()});
    let users: Vec<String> = (0..members).map(|n| format!("u{n}")).collect();
    platform.add_members("esc", &users).await?;
    let endpoints: Vec<Value> = users
        .iter()
        .map(|user| json!({"user": user, "channel": "http", "device": "hook", "address": hook}))
        .collect();
    platform.register_endpoints(&endpoints).await?;
    // Every member has an inbox; the even ones hold a socket that acks.
    let tokens: Vec<String> = futures::stream::iter(&users)
        .map(|user| platform.ws_token(user))
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let ackers: Vec<String> = tokens.iter().step_by(2).cloned().collect();
    let acking: HashSet<String> = users.iter().step_by(2).cloned().collect();
    let (clients, open) = Clients::open(
        "sprayer",
        &platform.ws,
        Some(&ackers),
        ackers.len(),
        processes,
        true,
    )
    .await?;
    eprintln!("escalation: {open} acking sockets open");
    let sent = Instant::now();
    platform
        .send(&json!({
            "to": {"group": "esc"},
            "content": {"body": "escalate"},
            "delivery": {"steps": [
                {"channels": ["ws"], "wait": format!("{WAIT_S}s"), "until": "acked"},
                {"channels": ["http"]},
            ]},
        }))
        .await?;
    let received = clients.results().await?;
    let acked = received.len();
    let others = members - acking.len();
    let longest = sent + Duration::from_secs(WAIT_S + 120);
    while Instant::now() < longest && seen.lock().map_or(0, |seen| seen.users.len()) < others {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little longer, to see anything sent to an acking member.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (webhooks, to_ackers, distinct, last) = {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let distinct: HashSet<&String> = seen.users.iter().collect();
        let to_ackers = seen
            .users
            .iter()
            .filter(|user| acking.contains(*user))
            .count();
        (seen.users.len(), to_ackers, distinct.len(), seen.last)
    };
    platform.stop().await;
    let wait_end = sent + Duration::from_secs(WAIT_S);
    let after_wait = last.map(|last| last.saturating_duration_since(wait_end).as_secs_f64());
    Ok(json!({
        "members": members,
        "acking_sockets": open,
        "acked": acked,
        "second_step_webhooks": webhooks,
        "second_step_to_ackers": to_ackers,
        "second_step_distinct": distinct,
        "exactly_the_other_half": webhooks == others && distinct == others && to_ackers == 0,
        "wait_s": WAIT_S,
        "last_second_step_after_wait_s": after_wait,
    }))
}
