//! The feeder's loop: gather status batches from the `status` queue until `feeder.batch_size`
//! events or `feeder.batch_wait` has passed, write them in bulk (up to
//! `feeder.writes_in_flight` batches at once, while the next one gathers), and ack only what
//! MongoDB took, in order.
//!
//! Batches written at the same time may hold events of the same delivery: the rank rule of
//! [`write`](mod@crate::write) makes the outcome the same in any order. Acks use `multiple`, so a
//! batch is acknowledged only once every batch before it was written and acknowledged; a batch
//! whose predecessor was not (shutting down while MongoDB is away) acknowledges nothing and the
//! broker delivers both again.
//! While MongoDB is down it keeps retrying and acks nothing, so the queue grows and nothing is
//! lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use sprayer_shared::Settings;
use sprayer_shared::amqp::{self, AmqpError, Brokers, Consuming, Topology};
use sprayer_shared::model::{DeliveryEvent, MessageRecord, StatusBatch, StepRecord};
use sprayer_shared::mongo::Mongo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
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
    steps: Vec<StepRecord>,
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
    let mut writing = Writing::default();
    let wait = settings.feeder.batch_wait;
    let result = loop {
        let deadline = pending.since.map(|since| since + wait);
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = sprayer_shared::shutdown::sleep_until(deadline) => {
                writing.hand_over(&feed, &mut pending, &shutdown).await;
            }
            next = consumer.next() => match next {
                None => break Ok(()),
                Some(Err(error)) => break Err(AmqpError::from(error)),
                Some(Ok(delivery)) => {
                    metrics::counter!("sprayer_amqp_deliveries_total", "queue" => "status").increment(1);
                    take(&mut pending, delivery).await;
                    if pending.events.len() + pending.messages.len() + pending.steps.len() >= settings.feeder.batch_size {
                        writing.hand_over(&feed, &mut pending, &shutdown).await;
                    }
                }
            },
        }
    };
    let previous_acked = writing.finish().await;
    if !previous_acked {
        // A batch before these was not written: nothing after it may be acknowledged.
    } else if !pending.deliveries.is_empty() && !shutdown.is_cancelled() {
        flush(&feed, &mut pending, &shutdown).await?;
    } else if !pending.deliveries.is_empty() {
        // Shutting down: one last try, then leave the rest to the queue.
        flush_once(&feed, &mut pending).await;
    }
    amqp::close(&connection).await;
    result
}

/// The batches being written, oldest first, and how the newest one will tell whether it was
/// acknowledged.
#[derive(Default)]
struct Writing {
    tasks: VecDeque<JoinHandle<()>>,
    last_acked: Option<oneshot::Receiver<bool>>,
}

impl Writing {
    /// Starts writing what is pending in a task of its own, once fewer than
    /// `feeder.writes_in_flight` writes are running.
    async fn hand_over(
        &mut self,
        feed: &Arc<Feed>,
        pending: &mut Pending,
        shutdown: &CancellationToken,
    ) {
        while self.tasks.len() >= feed.settings.feeder.writes_in_flight.max(1) {
            if let Some(oldest) = self.tasks.pop_front() {
                let _ = oldest.await;
            }
        }
        let mut batch = std::mem::take(pending);
        let (feed, shutdown) = (feed.clone(), shutdown.clone());
        let previous = self.last_acked.take();
        let (acked, last_acked) = oneshot::channel();
        self.last_acked = Some(last_acked);
        self.tasks.push_back(tokio::spawn(async move {
            let written = write_until_taken(&feed, &mut batch, &shutdown).await;
            // Acks in order: this batch's `multiple` ack covers the ones before it.
            let in_order = match previous {
                Some(previous) => previous.await.unwrap_or(false),
                None => true,
            };
            let done = written && in_order && ack(&mut batch).await;
            let _ = acked.send(done);
        }));
    }

    /// Waits for every write; returns whether the last one was acknowledged.
    async fn finish(&mut self) -> bool {
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        match self.last_acked.take() {
            Some(last) => last.await.unwrap_or(false),
            None => true,
        }
    }
}

async fn take(pending: &mut Pending, delivery: Delivery) {
    match serde_json::from_slice::<StatusBatch>(&delivery.data) {
        Ok(batch) => {
            pending.since.get_or_insert_with(Instant::now);
            pending.messages.extend(batch.messages);
            pending.events.extend(batch.deliveries);
            pending.steps.extend(batch.steps);
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
    if write_until_taken(feed, pending, shutdown).await {
        ack(pending).await;
    }
    Ok(())
}

/// Writes what is pending, retrying with backoff until MongoDB takes it; returns whether it
/// was written (not when shutting down first).
async fn write_until_taken(
    feed: &Feed,
    pending: &mut Pending,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    loop {
        if write_once(feed, pending).await {
            return true;
        }
        if !sprayer_shared::shutdown::sleep_or_cancel(backoff, shutdown).await {
            return false;
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One write attempt, then, when it wrote, the ack. Returns whether it wrote.
async fn flush_once(feed: &Feed, pending: &mut Pending) -> bool {
    let written = write_once(feed, pending).await;
    if written {
        ack(pending).await;
    }
    written
}

/// Acknowledges every status message of a written batch (with `multiple`, so the ones before
/// it too) and clears it; returns whether the broker took the ack.
async fn ack(pending: &mut Pending) -> bool {
    let acked = match pending.deliveries.last() {
        Some(last) => match last.ack(BasicAckOptions { multiple: true }).await {
            Ok(_) => true,
            Err(error) => {
                // The broker redelivers; rewriting the same events changes nothing.
                tracing::warn!(%error, "cannot ack written status messages");
                false
            }
        },
        None => true,
    };
    *pending = Pending::default();
    acked
}

/// One write attempt of what is pending. Returns whether MongoDB took it.
async fn write_once(feed: &Feed, pending: &mut Pending) -> bool {
    if pending.deliveries.is_empty() {
        pending.since = None;
        return true;
    }
    let started = Instant::now();
    let events = latest_per_delivery(pending.events.clone());
    match write(&feed.mongo, &pending.messages, &events, &pending.steps).await {
        Ok(written) => {
            metrics::counter!("sprayer_feeder_events_total", "result" => "applied")
                .increment(written.applied as u64);
            metrics::counter!("sprayer_feeder_events_total", "result" => "stale")
                .increment(written.stale as u64);
            metrics::histogram!("sprayer_feeder_write_seconds")
                .record(started.elapsed().as_secs_f64());
            true
        }
        Err(error) => {
            tracing::warn!(%error, events = events.len(), "cannot write feedback; holding it");
            metrics::counter!("sprayer_feeder_write_failures_total").increment(1);
            false
        }
    }
}
