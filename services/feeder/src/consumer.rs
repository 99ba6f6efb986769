//! The feeder's loop: gather status batches from the `status` queue until `feeder.batch_size`
//! events or `feeder.batch_wait` has passed, write them in bulk (while the next batch gathers),
//! and ack only what MongoDB took.
//! While MongoDB is down it keeps retrying and acks nothing, so the queue grows and nothing is
//! lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use sprayer_shared::Settings;
use sprayer_shared::amqp::{self, AmqpError, Brokers, Consuming, Topology};
use sprayer_shared::model::{DeliveryEvent, MessageRecord, StatusBatch};
use sprayer_shared::mongo::Mongo;
use tokio_util::sync::CancellationToken;

use crate::write::{latest_per_delivery, write};

/// The feeder's shared parts.
pub struct Feed {
    /// The settings.
    pub settings: Arc<Settings>,
    /// Where feedback goes.
    pub mongo: Mongo,
    /// Queue names.
    pub topology: Topology,
    /// The brokers of `amqp.url`, with the TLS files read.
    pub brokers: Brokers,
}

#[derive(Default)]
struct Pending {
    deliveries: Vec<Delivery>,
    messages: Vec<MessageRecord>,
    events: Vec<DeliveryEvent>,
    since: Option<Instant>,
}

/// Consumes until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(feed: Arc<Feed>, shutdown: CancellationToken) {
    let brokers = feed.brokers.clone();
    amqp::run_with_reconnect("feeder", &shutdown, || {
        session(feed.clone(), &brokers, shutdown.clone())
    })
    .await;
    tracing::info!("feeder stopped");
}

async fn session(
    feed: Arc<Feed>,
    brokers: &Brokers,
    shutdown: CancellationToken,
) -> Result<(), AmqpError> {
    let settings = &feed.settings;
    // The channel is held for the whole session, as the consumer on it is.
    let Consuming {
        connection,
        channel: _channel,
        mut consumer,
    } = brokers
        .consume_status(&feed.topology, settings.feeder.prefetch)
        .await?;
    let mut pending = Pending::default();
    // One batch is written while the next one gathers; acks stay in order because a write
    // starts only after the previous one has finished (and acked).
    let mut writing: Option<tokio::task::JoinHandle<()>> = None;
    let wait = settings.feeder.batch_wait;
    let result = loop {
        let deadline = pending.since.map(|since| since + wait);
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = sleep_until(deadline) => {
                writing = Some(hand_over(&feed, &mut pending, writing, &shutdown).await);
            }
            next = consumer.next() => match next {
                None => break Ok(()),
                Some(Err(error)) => break Err(AmqpError::from(error)),
                Some(Ok(delivery)) => {
                    metrics::counter!("sprayer_amqp_deliveries_total", "queue" => "status").increment(1);
                    take(&mut pending, delivery).await;
                    if pending.events.len() + pending.messages.len() >= settings.feeder.batch_size {
                        writing = Some(hand_over(&feed, &mut pending, writing, &shutdown).await);
                    }
                }
            },
        }
    };
    if let Some(previous) = writing.take() {
        let _ = previous.await;
    }
    if !pending.deliveries.is_empty() && !shutdown.is_cancelled() {
        flush(&feed, &mut pending, &shutdown).await?;
    } else if !pending.deliveries.is_empty() {
        // Shutting down: one last try, then leave the rest to the queue.
        flush_once(&feed, &mut pending).await;
    }
    amqp::close(&connection).await;
    result
}

/// Waits for the write in flight, then starts writing what is pending in a task of its own.
async fn hand_over(
    feed: &Arc<Feed>,
    pending: &mut Pending,
    writing: Option<tokio::task::JoinHandle<()>>,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    if let Some(previous) = writing {
        let _ = previous.await;
    }
    let mut batch = std::mem::take(pending);
    let (feed, shutdown) = (feed.clone(), shutdown.clone());
    tokio::spawn(async move {
        let _ = flush(&feed, &mut batch, &shutdown).await;
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

async fn take(pending: &mut Pending, delivery: Delivery) {
    match serde_json::from_slice::<StatusBatch>(&delivery.data) {
        Ok(batch) => {
            pending.since.get_or_insert_with(Instant::now);
            pending.messages.extend(batch.messages);
            pending.events.extend(batch.deliveries);
            pending.deliveries.push(delivery);
        }
        Err(error) => {
            tracing::error!(%error, "unreadable status message; moved to the dead-letter queue");
            metrics::counter!("sprayer_feeder_unreadable_total").increment(1);
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
        }
    }
}

/// Writes what is pending, retrying with backoff until MongoDB takes it, then acks it.
async fn flush(
    feed: &Feed,
    pending: &mut Pending,
    shutdown: &CancellationToken,
) -> Result<(), AmqpError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        if flush_once(feed, pending).await {
            return Ok(());
        }
        if !sprayer_shared::shutdown::sleep_or_cancel(backoff, shutdown).await {
            return Ok(());
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One write attempt; on success acks and clears what was pending. Returns whether it wrote.
async fn flush_once(feed: &Feed, pending: &mut Pending) -> bool {
    if pending.deliveries.is_empty() {
        pending.since = None;
        return true;
    }
    let started = Instant::now();
    let events = latest_per_delivery(pending.events.clone());
    match write(&feed.mongo, &pending.messages, &events).await {
        Ok(written) => {
            metrics::counter!("sprayer_feeder_events_total", "result" => "applied")
                .increment(written.applied as u64);
            metrics::counter!("sprayer_feeder_events_total", "result" => "stale")
                .increment(written.stale as u64);
            metrics::histogram!("sprayer_feeder_write_seconds")
                .record(started.elapsed().as_secs_f64());
            if let Some(last) = pending.deliveries.last() {
                let acked = last.ack(BasicAckOptions { multiple: true }).await;
                if let Err(error) = acked {
                    // The broker redelivers; rewriting the same events changes nothing.
                    tracing::warn!(%error, "cannot ack written status messages");
                }
            }
            *pending = Pending::default();
            true
        }
        Err(error) => {
            tracing::warn!(%error, events = events.len(), "cannot write feedback; holding it");
            metrics::counter!("sprayer_feeder_write_failures_total").increment(1);
            false
        }
    }
}
