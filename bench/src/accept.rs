//! Scenario 1, accept: `POST /v1/messages` to one user (webhook channel to a local sink) from
//! 64 concurrent keep-alive clients, beside raw `lapin` publishes with confirms of the same job
//! bytes from 64 concurrent waiting publishers, in the same run; three rounds of both, the
//! round with the median rate ratio reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};

use crate::platform::Platform;
use crate::report::percentiles;
use crate::sink::{Sink, webhook_secret};

/// Concurrent clients and publishers.
const CONCURRENCY: usize = 64;
/// Requests per side at most.
const REQUESTS: usize = 60_000;
/// Rounds of both sides; the median round's figures are reported.
const ROUNDS: usize = 3;
/// Longest run per side.
const LONGEST: Duration = Duration::from_secs(15);

struct Run {
    done: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Run {
    fn figures(mut self, prefix: &str) -> Vec<(String, Value)> {
        let rate = self.done as f64 / self.seconds;
        let (p50, p99, _) = percentiles(&mut self.latencies_ms);
        let p999 = {
            let index =
                ((self.latencies_ms.len() as f64 * 0.999).ceil() as usize).saturating_sub(1);
            self.latencies_ms.get(index).copied().unwrap_or(f64::NAN)
        };
        vec![
            (format!("{prefix}_per_s"), json!(rate)),
            (format!("{prefix}_p50_ms"), json!(p50)),
            (format!("{prefix}_p99_ms"), json!(p99)),
            (format!("{prefix}_p999_ms"), json!(p999)),
        ]
    }
}

/// Runs `CONCURRENCY` loops of `one` until `REQUESTS` are done or `LONGEST` has passed.
async fn drive<F, Fut>(one: F) -> Run
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let one = one.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < REQUESTS
                    && started.elapsed() < LONGEST
                {
                    let sent = Instant::now();
                    if one().await {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    for worker in workers {
        latencies_ms.extend(worker.await.unwrap_or_default());
    }
    Run {
        done: latencies_ms.len(),
        seconds: started.elapsed().as_secs_f64(),
        latencies_ms,
    }
}

/// The job bytes the accepter publishes for one message to one user.
fn job_bytes() -> anyhow::Result<Vec<u8>> {
    use sprayer_shared::model::{AppId, Channel, Content, Job, JobTarget, MessageId, UserId};
    let job = Job {
        message_id: MessageId::generate(),
        app: AppId::generate(),
        channel: Channel::Http,
        target: JobTarget::User(UserId::parse("acc")?),
        content: Content {
            title: Some("bench".into()),
            body: Some("accept".into()),
            data: None,
        },
        overrides: None,
        priority: Default::default(),
        created_at: 0,
        expires_at: 0,
        personal: None,
    };
    Ok(serde_json::to_vec(&job)?)
}

async fn raw_publishes() -> anyhow::Result<Run> {
    let connection =
        sprayer_shared::amqp::connect(crate::platform::AMQP_URL, Duration::from_secs(5))
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
    let queue = format!("bench-raw-{:08x}", rand::random::<u32>());
    let setup = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-expires".into(),
        lapin::types::AMQPValue::LongLongInt(120_000),
    );
    setup
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await?;
    let body = Arc::new(job_bytes()?);
    let mut channels = Vec::new();
    for _ in 0..CONCURRENCY {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }
    let channels = Arc::new(channels);
    let queue_name = queue.clone();
    let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = drive(move || {
        let channels = channels.clone();
        let body = body.clone();
        let queue = queue.clone();
        let index = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % CONCURRENCY;
        async move {
            let published = channels[index]
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await;
            match published {
                Ok(confirm) => confirm.await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    let _ = setup
        .queue_delete(queue_name.as_str().into(), Default::default())
        .await;
    let _ = connection.close(200, "bye".into()).await;
    Ok(run)
}

/// Runs the scenario.
pub async fn run() -> anyhow::Result<Value> {
    let platform = Platform::start().await?;
    let sink = Sink::start().await?;
    let endpoint = json!({"url": sink.url, "secret": webhook_secret()});
    platform
        .http
        .put(format!("{}/v1/users/acc/endpoints/http/hook", platform.api))
        .bearer_auth(&platform.key)
        .json(&endpoint)
        .send()
        .await?
        .error_for_status()
        .context("registering the sink")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let url = format!("{}/v1/messages", platform.api);
    let key = platform.key.clone();
    let body = Arc::new(
        json!({"to": {"user": "acc"}, "channels": ["http"], "content": {"title": "bench", "body": "accept"}})
            .to_string(),
    );
    // Three rounds of Sprayer then the raw publishes: the figures are those of the round with
    // the median rate ratio, so that one unlucky round on a shared machine does not decide.
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        let (client, url, key, body) = (client.clone(), url.clone(), key.clone(), body.clone());
        let accept = drive(move || crate::platform::accepted(&client, &url, &key, &body)).await;
        let raw = raw_publishes().await?;
        eprintln!(
            "accept: round {round}: {} messages accepted in {:.1}s, {} raw confirmed publishes in {:.1}s",
            accept.done, accept.seconds, raw.done, raw.seconds
        );
        rounds.push((accept, raw));
    }
    let ratio = |(accept, raw): &(Run, Run)| {
        (accept.done as f64 / accept.seconds) / (raw.done as f64 / raw.seconds)
    };
    let mut ratios: Vec<f64> = rounds.iter().map(ratio).collect();
    let accepted: usize = rounds.iter().map(|(accept, _)| accept.done).sum();
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let median = rounds.swap_remove(ROUNDS / 2);
    let rate_ratio = ratio(&median);
    let (accept, raw) = median;
    let delivered = {
        let deadline = Instant::now() + Duration::from_secs(60);
        while sink.hits() < accepted as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sink.hits()
    };
    platform.stop().await;
    let mut figures: serde_json::Map<String, Value> = accept
        .figures("accept")
        .into_iter()
        .chain(raw.figures("raw_publish"))
        .collect();
    let accept_p99 = figures["accept_p99_ms"].as_f64().unwrap_or(f64::NAN);
    let raw_p99 = figures["raw_publish_p99_ms"].as_f64().unwrap_or(f64::NAN);
    figures.insert("rate_ratio".into(), json!(rate_ratio));
    ratios.sort_by(f64::total_cmp);
    figures.insert("rate_ratios".into(), json!(ratios));
    figures.insert("p99_ratio".into(), json!(accept_p99 / raw_p99));
    figures.insert("webhooks_delivered".into(), json!(delivered));
    figures.insert("messages_accepted".into(), json!(accepted));
    Ok(Value::Object(figures))
}
