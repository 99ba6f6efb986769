//! `make soak`: mixed traffic for a long while (30 minutes by default) at about half of what
//! the machine takes, then checks that nothing was lost, nothing leaked and nothing slowed.
//!
//! Traffic, at `--soak-rate` messages per second in all:
//! - single webhook sends to 100 users whose receiver fails 5% of requests with a 500 (so
//!   retries run all along);
//! - the same sends with an `Idempotency-Key`, each sent a second time (an idempotent retry:
//!   the same message id, nothing sent twice);
//! - sends to groups of 50 webhook users;
//! - ws sends (with a 2-minute TTL) to 200 users whose sockets come and go: each stays 5 to 30
//!   seconds and is away 1 to 5; a fifth of them never ack, so their messages expire;
//! - sms to 50 numbers through the tests' SMSC simulator, which sends a delivery receipt for
//!   each (a tenth of the numbers get `UNDELIV` receipts, so those deliveries fail with the
//!   SMSC's reason);
//! - email to 50 addresses through the tests' SMTP server (a tenth of them answer `451` to
//!   their first mail, so those are retried).
//!
//! At the end, once the retries and TTLs have run out: every delivery of every accepted message
//! is in feedback with a final status (`delivered`, `failed` with a reason, `expired`; `sent`
//! for email, whose relay reports nothing later), and as many as were sent; no webhook was taken
//! twice with a 2xx, no acked message came again, no SMS was submitted twice and every mail
//! arrived once;
//! the RSS of each Sprayer process grew at most 10% over the last two thirds of the run; Redis
//! memory is reported with what retention explains (idempotency keys); the p99 from POST to
//! webhook of the last 5 minutes is at most 1.5 × that of the first 5 (webhooks taken at the
//! first attempt; a third of the run each when it is shorter than 15 minutes).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures::{SinkExt, StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::peers::{Peers, SMSC_ACCOUNT};
use crate::platform::{MONGODB_URL, Platform, amqp_io_threads, proc_status, rss_kib};
use crate::report::percentiles;
use crate::sink::webhook_secret;

const HOOK_USERS: usize = 100;
const GROUPS: usize = 10;
const GROUP_SIZE: usize = 50;
const WS_USERS: usize = 200;
const SMS_USERS: usize = 50;
const EMAIL_USERS: usize = 50;
/// TTL of the ws sends, so that messages to users who never ack expire within the run.
const WS_TTL_SECONDS: u64 = 120;
/// How often the receiver answers 500.
const FAILURE_RATE: f64 = 0.05;
/// Retry tiers of the run: short, so that the last retries end soon after the traffic.
const RETRY_TIERS: &str = r#"["1s","5s","20s"]"#;

/// What the webhook receiver saw.
#[derive(Default)]
struct Received {
    /// 2xx answers per delivery (`webhook-id`).
    taken: HashMap<String, u32>,
    /// 500 answers given.
    refused: u64,
    /// Deliveries answered 500 at least once (their latency holds a retry's wait).
    refused_ids: HashSet<String>,
    /// When each single send was POSTed, by message id (removed at its first 2xx).
    posted: HashMap<String, Instant>,
    /// (seconds into the run, ms from POST to the webhook taken).
    latencies: Vec<(f64, f64)>,
}

/// What the ws users saw.
#[derive(Default)]
struct WsSeen {
    acked: HashSet<(usize, String)>,
    again_after_ack: u64,
    frames: u64,
}

async fn receiver(received: Arc<Mutex<Received>>, started: Instant) -> anyhow::Result<String> {
    let router = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let received = received.clone();
            async move {
                let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
                let id = headers
                    .get("webhook-id")
                    .and_then(|id| id.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                if rand::random::<f64>() < FAILURE_RATE {
                    received.refused += 1;
                    received.refused_ids.insert(id);
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let retried = received.refused_ids.contains(&id);
                *received.taken.entry(id).or_default() += 1;
                let message = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|body| body["data"]["message_id"].as_str().map(str::to_owned));
                if let Some(posted) = message.and_then(|id| received.posted.remove(&id))
                    && !retried
                {
                    let at = started.elapsed().as_secs_f64();
                    received
                        .latencies
                        .push((at, posted.elapsed().as_secs_f64() * 1000.0));
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

/// One ws user: connects, stays a while, leaves a while, until `until`.
async fn ws_user(
    ws: String,
    token: String,
    index: usize,
    acks: bool,
    seen: Arc<Mutex<WsSeen>>,
    until: Instant,
) {
    while Instant::now() < until {
        let stay = Duration::from_millis(5_000 + rand::random::<u64>() % 25_000);
        if let Ok((mut socket, _)) =
            tokio_tungstenite::connect_async(format!("{ws}/v1/ws?token={token}")).await
        {
            let leave = Instant::now() + stay;
            while let Ok(Some(Ok(frame))) =
                tokio::time::timeout_at(leave.into(), socket.next()).await
            {
                let Message::Text(text) = frame else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if frame["type"] != "message" {
                    continue;
                }
                let id = frame["message"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                {
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    seen.frames += 1;
                    if seen.acked.contains(&(index, id.clone())) {
                        seen.again_after_ack += 1;
                    }
                }
                if acks {
                    let ack = json!({"type": "ack", "ids": [id]});
                    if socket
                        .send(Message::Text(ack.to_string().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .acked
                        .insert((index, id));
                }
            }
            let _ = socket.close(None).await;
        }
        tokio::time::sleep(Duration::from_millis(1_000 + rand::random::<u64>() % 4_000)).await;
    }
}

/// One send as a client makes it; returns the message id when accepted.
async fn send(
    client: &reqwest::Client,
    platform: &Platform,
    body: &Value,
    key: Option<&str>,
) -> Option<String> {
    let mut request = client
        .post(format!("{}/v1/messages", platform.api))
        .bearer_auth(&platform.key)
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.ok()?;
    if response.status().as_u16() != 202 {
        return None;
    }
    let answer: Value = response.json().await.ok()?;
    answer["id"].as_str().map(str::to_owned)
}

/// What was sent, to check feedback against.
#[derive(Default)]
struct Sent {
    messages: HashSet<String>,
    deliveries: u64,
    replays_same_id: u64,
    replays_other_id: u64,
    refused: u64,
}

/// Deliveries matching `filter` counted by channel and `field`.
async fn count_by(
    deliveries: &mongodb::Collection<Document>,
    filter: Document,
    field: &str,
) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut cursor = deliveries
        .aggregate(vec![
            doc! {"$match": filter},
            doc! {"$group": {"_id": {"channel": "$channel", "value": format!("${field}")}, "n": {"$sum": 1}}},
        ])
        .await?;
    let mut counts = Vec::new();
    while let Some(row) = cursor.try_next().await? {
        let key = row.get_document("_id").ok();
        let part = |name| {
            key.and_then(|key| key.get_str(name).ok())
                .unwrap_or("?")
                .to_owned()
        };
        let count = row
            .get_i32("n")
            .map(i64::from)
            .or_else(|_| row.get_i64("n"))
            .unwrap_or(0);
        counts.push((part("channel"), part("value"), count));
    }
    Ok(counts)
}

fn redis_memory(info: &str) -> u64 {
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs the soak for `minutes` at `rate` messages per second.
pub async fn run(minutes: u64, rate: u32) -> anyhow::Result<Value> {
    let peers = Peers::start(500)?;
    // Every role `make run` starts: the scheduler consumes the steps queue and the events
    // service the events queue (without them both queues keep a copy of every status message
    // for the whole run). Queues live past the run: the benchmarks' ten-minute expiry deleted
    // the queues nobody consumes (retry tiers, dead letters) ten minutes into the soak.
    let expires = format!("{}m", minutes + 60);
    let platform = Platform::start_roles(
        "accepter,dispatchers,feeder,scheduler,events",
        &[
            ("SPRAYER_AMQP_QUEUE_EXPIRES", expires.as_str()),
            ("SPRAYER_AMQP_RETRY_TIERS", RETRY_TIERS),
            (
                "SPRAYER_ACCEPTER_CHANNELS",
                r#"["http","ws","sms","email"]"#,
            ),
        ],
    )
    .await?;
    platform
        .set_provider(
            "sms",
            &json!({"host": "127.0.0.1", "port": peers.smsc_port, "system_id": SMSC_ACCOUNT.0,
                    "password": SMSC_ACCOUNT.1, "source": "Soak"}),
        )
        .await?;
    platform
        .set_provider(
            "email",
            &json!({"host": "127.0.0.1", "port": peers.smtp_port, "tls": "none",
                    "from": "Soak <soak@sprayer.example>"}),
        )
        .await?;
    let started = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    let url = receiver(received.clone(), started).await?;
    let hook = json!({"url": url, "secret": webhook_secret()});
    let hook_users: Vec<String> = (0..HOOK_USERS).map(|n| format!("sh{n}")).collect();
    let mut endpoints: Vec<Value> = hook_users
        .iter()
        .map(|user| json!({"user": user, "channel": "http", "device": "hook", "address": hook}))
        .collect();
    for group in 0..GROUPS {
        let members: Vec<String> = (0..GROUP_SIZE).map(|n| format!("sg{group}-{n}")).collect();
        platform
            .add_members(&format!("soak{group}"), &members)
            .await?;
        endpoints.extend(members.iter().map(
            |user| json!({"user": user, "channel": "http", "device": "hook", "address": hook}),
        ));
    }
    let ws_users: Vec<String> = (0..WS_USERS).map(|n| format!("sw{n}")).collect();
    endpoints.extend(
        ws_users
            .iter()
            .map(|user| json!({"user": user, "channel": "ws", "device": "inbox", "address": {}})),
    );
    // A tenth of the numbers get UNDELIV receipts (the SMSC's "777" numbers), a tenth of the
    // addresses a 451 to their first mail (its "busy" addresses).
    endpoints.extend((0..SMS_USERS).map(|n| {
        let number = if n % 10 == 9 { format!("+777{n:08}") } else { format!("+3162{n:07}") };
        json!({"user": format!("ss{n}"), "channel": "sms", "device": "mobile", "address": {"msisdn": number}})
    }));
    endpoints.extend((0..EMAIL_USERS).map(|n| {
        let address = if n % 10 == 9 { format!("busy{n}@example.com") } else { format!("se{n}@example.com") };
        json!({"user": format!("se{n}"), "channel": "email", "device": "inbox", "address": {"address": address}})
    }));
    platform.register_endpoints(&endpoints).await?;
    let mut tokens = Vec::with_capacity(WS_USERS);
    for user in &ws_users {
        tokens.push(platform.ws_token(user).await?);
    }
    let duration = Duration::from_secs(minutes * 60);
    let until = Instant::now() + duration;
    let seen = Arc::new(Mutex::new(WsSeen::default()));
    let sockets: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(index, token)| {
            tokio::spawn(ws_user(
                platform.ws.clone(),
                token,
                index,
                index % 5 != 0,
                seen.clone(),
                until,
            ))
        })
        .collect();
    let redis = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut redis = redis.get_multiplexed_async_connection().await?;
    let memory = |info: String| redis_memory(&info);
    let redis_start = memory(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut redis)
            .await?,
    );
    eprintln!("soak: {minutes} minutes at {rate} messages/s");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()?;
    let sent = Arc::new(Mutex::new(Sent::default()));
    let pids = [
        ("api", platform.api_pid()),
        ("deliverer", platform.deliverer_pid()),
    ];
    let mut rss: Vec<(f64, u64, u64)> = Vec::new();
    let mut threads: Vec<(f64, u64, u64)> = Vec::new();
    // Anonymous memory (the heap and stacks), beside VmRSS, which also counts the pages of
    // the binary the kernel has mapped in.
    let mut anon: Vec<(f64, u64, u64)> = Vec::new();
    // Every AMQP connection thread seen in each process: more than the process starts with
    // means a connection was opened again during the run.
    let mut amqp_threads: [std::collections::BTreeSet<u64>; 2] = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    let platform = Arc::new(platform);
    let mut n: u64 = 0;
    let mut next_sample = Instant::now();
    while Instant::now() < until {
        tick.tick().await;
        if Instant::now() >= next_sample {
            rss.push((
                started.elapsed().as_secs_f64(),
                rss_kib(pids[0].1),
                rss_kib(pids[1].1),
            ));
            threads.push((
                started.elapsed().as_secs_f64(),
                proc_status(pids[0].1, "Threads:"),
                proc_status(pids[1].1, "Threads:"),
            ));
            anon.push((
                started.elapsed().as_secs_f64(),
                proc_status(pids[0].1, "RssAnon:"),
                proc_status(pids[1].1, "RssAnon:"),
            ));
            for (index, (_, pid)) in pids.iter().enumerate() {
                amqp_threads[index].extend(amqp_io_threads(*pid));
            }
            next_sample += Duration::from_secs(10);
        }
        n += 1;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (client, platform, sent, received) = (
            client.clone(),
            platform.clone(),
            sent.clone(),
            received.clone(),
        );
        tokio::spawn(async move {
            let roll = n % 100;
            // The recipient, at random (`n` already chose the kind of send).
            let pick = |users: usize| rand::random::<u64>() as usize % users;
            let (body, deliveries, key) = if roll < 55 {
                let user = &format!("sh{}", pick(HOOK_USERS));
                (
                    json!({"to": {"user": user}, "channels": ["http"], "content": {"body": "soak"}}),
                    1,
                    None,
                )
            } else if roll < 65 {
                let user = &format!("sh{}", pick(HOOK_USERS));
                (
                    json!({"to": {"user": user}, "channels": ["http"], "content": {"body": "soak", "data": {"n": n}}}),
                    1,
                    Some(format!("soak-{n}")),
                )
            } else if roll < 66 {
                let group = format!("soak{}", pick(GROUPS));
                (
                    json!({"to": {"group": group}, "channels": ["http"], "content": {"body": "soak group"}}),
                    GROUP_SIZE as u64,
                    None,
                )
            } else if roll < 70 {
                let user = format!("ss{}", pick(SMS_USERS));
                (
                    json!({"to": {"user": user}, "channels": ["sms"], "content": {"body": format!("soak sms {n}")}}),
                    1,
                    None,
                )
            } else if roll < 74 {
                let user = format!("se{}", pick(EMAIL_USERS));
                (
                    json!({"to": {"user": user}, "channels": ["email"], "content": {"title": "Soak", "body": format!("soak mail {n}")}}),
                    1,
                    None,
                )
            } else {
                let user = format!("sw{}", pick(WS_USERS));
                (
                    json!({"to": {"user": user}, "channels": ["ws"], "ttl": WS_TTL_SECONDS, "content": {"body": "soak ws"}}),
                    1,
                    None,
                )
            };
            let single_http = roll < 65;
            let posted = Instant::now();
            let id = send(&client, &platform, &body, key.as_deref()).await;
            match id {
                Some(id) => {
                    if single_http {
                        received
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .posted
                            .entry(id.clone())
                            .or_insert(posted);
                    }
                    let replay = match &key {
                        Some(key) => send(&client, &platform, &body, Some(key)).await,
                        None => None,
                    };
                    let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
                    match replay {
                        Some(again) if again == id => sent.replays_same_id += 1,
                        Some(_) => sent.replays_other_id += 1,
                        None => {}
                    }
                    if sent.messages.insert(id) {
                        sent.deliveries += deliveries;
                    }
                }
                None => sent.lock().unwrap_or_else(|e| e.into_inner()).refused += 1,
            }
            drop(permit);
        });
    }
    let _ = permits.acquire_many(64).await;
    for socket in sockets {
        let _ = socket.await;
    }
    let traffic_s = started.elapsed().as_secs_f64();
    eprintln!("soak: traffic ended after {traffic_s:.0} s; waiting for retries and TTLs");
    // The send tasks let go of the platform as they end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&platform) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let platform = Arc::into_inner(platform).context("the platform is still shared")?;
    let mongo = mongodb::Client::with_uri_str(MONGODB_URL).await?;
    let deliveries = mongo
        .database(&platform.database)
        .collection::<Document>("deliveries");
    let (sent_deliveries, sent_messages) = {
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
        (sent.deliveries, sent.messages.len() as u64)
    };
    // The last ws messages expire WS_TTL_SECONDS after they were sent; the last retries run
    // 26 s after their first attempt. Wait until every delivery is final, at most 5 minutes.
    // Email ends at `sent`: the relay took it and reports nothing later.
    let final_filter = doc! {"$or": [
        {"channel": {"$ne": "email"}, "status": {"$in": ["delivered", "failed", "expired", "unregistered"]}},
        {"channel": "email", "status": {"$in": ["sent", "failed", "unregistered"]}},
    ]};
    let wait_until = Instant::now() + Duration::from_secs(WS_TTL_SECONDS + 180);
    let mut finals = 0;
    while Instant::now() < wait_until {
        finals = deliveries.count_documents(final_filter.clone()).await?;
        if finals >= sent_deliveries {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let total = deliveries.count_documents(doc! {}).await?;
    // Deliveries by channel and status, and the reasons of the failed ones.
    let mut by_status = serde_json::Map::new();
    for (channel, status, count) in count_by(&deliveries, doc! {}, "status").await? {
        by_status.entry(channel).or_insert_with(|| json!({}))[status] = json!(count);
    }
    let mut failure_reasons = serde_json::Map::new();
    for (channel, error, count) in count_by(&deliveries, doc! {"status": "failed"}, "error").await?
    {
        failure_reasons.insert(format!("{channel}: {error}"), json!(count));
    }
    let failed_without_reason = deliveries
        .count_documents(doc! {"status": "failed", "error": {"$exists": false}})
        .await?;
    let emails_sent = deliveries
        .count_documents(doc! {"channel": "email", "status": "sent"})
        .await?;
    let sms_recorded = deliveries.count_documents(doc! {"channel": "sms"}).await?;
    let (sms_submits, sms_submitted_again) = peers.sms_submits();
    let mails = peers.mails();
    let messages = mongo
        .database(&platform.database)
        .collection::<Document>("messages")
        .count_documents(doc! {})
        .await?;
    let redis_end = memory(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut redis)
            .await?,
    );
    let idempotency_keys = {
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.replays_same_id + sent.replays_other_id
    };
    let mongo_stats = mongo
        .database(&platform.database)
        .run_command(doc! {"dbStats": 1})
        .await
        .ok();
    let mongo_data_bytes = mongo_stats
        .as_ref()
        .and_then(|stats| stats.get("dataSize"))
        .and_then(|size| {
            size.as_f64()
                .or_else(|| size.as_i64().map(|v| v as f64))
                .or_else(|| size.as_i32().map(f64::from))
        });

    // RSS flat after warm-up: the last two thirds of the run, start against highest.
    let warm = traffic_s / 3.0;
    let growth_of = |series: &[(f64, u64, u64)], column: fn(&(f64, u64, u64)) -> u64| -> f64 {
        let after: Vec<u64> = series.iter().filter(|s| s.0 >= warm).map(column).collect();
        match (after.first(), after.iter().max()) {
            (Some(&first), Some(&highest)) if first > 0 => highest as f64 / first as f64 - 1.0,
            _ => f64::NAN,
        }
    };
    let api_growth = growth_of(&rss, |s| s.1);
    let deliverer_growth = growth_of(&rss, |s| s.2);
    let anon_growth = json!({
        "api": growth_of(&anon, |s| s.1),
        "deliverer": growth_of(&anon, |s| s.2),
    });
    let (mut first5, mut last5): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let (duplicates, refused_by_receiver) = {
        let received = received.lock().unwrap_or_else(|e| e.into_inner());
        // Five minutes, or a third of a shorter run.
        let window = (traffic_s / 3.0).min(300.0);
        for (at, ms) in &received.latencies {
            if *at < window {
                first5.push(*ms);
            } else if *at >= traffic_s - window && *at <= traffic_s {
                last5.push(*ms);
            }
        }
        (
            received.taken.values().filter(|count| **count > 1).count() as u64,
            received.refused,
        )
    };
    let (_, first_p99, _) = percentiles(&mut first5);
    let (_, last_p99, _) = percentiles(&mut last5);
    let (ws_frames, ws_again) = {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        (seen.frames, seen.again_after_ack)
    };
    let (refused_sends, replays_same_id, replays_other_id) = {
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
        (sent.refused, sent.replays_same_id, sent.replays_other_id)
    };
    let checks = json!({
        "every_delivery_final": finals == sent_deliveries && total == sent_deliveries,
        "every_message_recorded": messages == sent_messages,
        "failed_have_reasons": failed_without_reason == 0,
        "no_webhook_taken_twice": duplicates == 0,
        "no_acked_message_again": ws_again == 0,
        "every_sms_submitted_once": sms_submitted_again == 0 && sms_submits == sms_recorded,
        "every_mail_arrived_once": mails == emails_sent,
        "idempotent_retries_same_id": replays_other_id == 0,
        "rss_flat": api_growth <= 0.10 && deliverer_growth <= 0.10,
        "p99_steady": last_p99 <= 1.5 * first_p99,
    });
    let passed = checks
        .as_object()
        .is_some_and(|checks| checks.values().all(|ok| ok == &json!(true)));
    let result = json!({
        "minutes": minutes,
        "rate_per_s": rate,
        "passed": passed,
        "checks": checks,
        "accepted_messages": sent_messages,
        "refused_sends": refused_sends,
        "idempotent_replays": replays_same_id,
        "expected_deliveries": sent_deliveries,
        "deliveries_recorded": total,
        "deliveries_final": finals,
        "by_status": by_status,
        "failure_reasons": failure_reasons,
        "messages_recorded": messages,
        "receiver_500s": refused_by_receiver,
        "webhooks_taken_twice": duplicates,
        "ws_frames": ws_frames,
        "ws_frames_after_ack": ws_again,
        "sms": {"deliveries": sms_recorded, "submits_accepted": sms_submits, "submitted_again": sms_submitted_again},
        "email": {"sent": emails_sent, "mails_stored": mails},
        "webhook_p99_first_5min_ms": first_p99,
        "webhook_p99_last_5min_ms": last_p99,
        "rss_growth_after_warmup": {"api": api_growth, "deliverer": deliverer_growth},
        "rss_kib": rss.iter().map(|s| json!([s.0.round(), s.1, s.2])).collect::<Vec<_>>(),
        "threads": threads.iter().map(|s| json!([s.0.round(), s.1, s.2])).collect::<Vec<_>>(),
        "rss_anon_growth_after_warmup": anon_growth,
        "rss_anon_kib": anon.iter().map(|s| json!([s.0.round(), s.1, s.2])).collect::<Vec<_>>(),
        "redis_used_memory": {"start": redis_start, "end": redis_end, "idempotency_keys": idempotency_keys},
        "mongodb_data_bytes": mongo_data_bytes,
        "amqp_connections_seen": {"api": amqp_threads[0].len(), "deliverer": amqp_threads[1].len()},
    });
    platform.stop().await;
    Ok(result)
}
