//! The feed writer: consumes the `events` queue (a copy of every status message; a single active
//! consumer, so one writer runs at a time across replicas), turns each message into events
//! ([`crate::derive`]), numbers them after the head and inserts them (the ones already in the
//! feed, a redelivery after a crash making the same ids, are refused by their id and their
//! numbers left unused), moves the head past them and only then acks. Readers never see past the head, so the feed has no gaps.
//!
//! While MongoDB is away it retries and acks nothing: the queue holds the events, and delivery
//! goes on (its feedback has a queue of its own).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use mongodb::bson::doc;
use sprayer_shared::Settings;
use sprayer_shared::amqp::{self, AmqpError, Brokers, Consuming, Topology};
use sprayer_shared::feed::{EventDoc, Feed};
use sprayer_shared::model::StatusBatch;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::derive::events_of;

/// What the writer works with.
pub struct Writer {
    /// The settings.
    pub settings: Arc<Settings>,
    /// The feed.
    pub feed: Feed,
    /// Queue names.
    pub topology: Topology,
    /// The brokers.
    pub brokers: Brokers,
    /// The head after each write, for the senders to wake up on.
    pub head: watch::Sender<i64>,
}

#[derive(Default)]
struct Pending {
    deliveries: Vec<Delivery>,
    events: Vec<EventDoc>,
    since: Option<Instant>,
}

/// Writes until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(writer: Arc<Writer>, shutdown: CancellationToken) {
    let brokers = writer.brokers.clone();
    amqp::run_with_reconnect("events writer", &shutdown, || {
        session(writer.clone(), &brokers, shutdown.clone())
    })
    .await;
    tracing::info!("events writer stopped");
}

async fn session(
    writer: Arc<Writer>,
    brokers: &Brokers,
    shutdown: CancellationToken,
) -> Result<(), AmqpError> {
    let settings = &writer.settings.events;
    let Consuming {
        connection,
        channel: _channel,
        mut consumer,
    } = brokers
        .consume_events(&writer.topology, settings.prefetch)
        .await?;
    // Where numbering goes on: past the head and past anything a crash left beyond it.
    let Some(mut last) = last_number(&writer, &shutdown).await else {
        amqp::close(&connection).await;
        return Ok(());
    };
    let mut pending = Pending::default();
    let result = loop {
        let deadline = pending.since.map(|since| since + settings.write_wait);
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = sprayer_shared::shutdown::sleep_until(deadline) => {
                if !write(&writer, &mut pending, &mut last, &shutdown).await {
                    break Ok(());
                }
            }
            next = consumer.next() => match next {
                None => break Ok(()),
                Some(Err(error)) => break Err(AmqpError::from(error)),
                Some(Ok(delivery)) => {
                    metrics::counter!("sprayer_amqp_deliveries_total", "queue" => "events").increment(1);
                    take(&mut pending, delivery).await;
                    if pending.events.len() >= settings.write_batch
                        && !write(&writer, &mut pending, &mut last, &shutdown).await
                    {
                        break Ok(());
                    }
                }
            },
        }
    };
    amqp::close(&connection).await;
    result
}

/// The number of the last event in the feed, the head moved up to it; `None` on shutdown.
async fn last_number(writer: &Writer, shutdown: &CancellationToken) -> Option<i64> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let found = async {
            let head = writer.feed.head().await?;
            let highest = writer
                .feed
                .events
                .find(doc! {})
                .sort(doc! { "seq": -1 })
                .limit(1)
                .await?
                .try_next()
                .await?
                .map_or(0, |event| event.seq);
            let last = head.seq.max(highest);
            if last > head.seq {
                writer.feed.advance_head(last).await?;
            }
            mongodb::error::Result::Ok(last)
        }
        .await;
        match found {
            Ok(last) => {
                writer.head.send_replace(last);
                return Some(last);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the feed's head; retrying");
                if !sprayer_shared::shutdown::sleep_or_cancel(backoff, shutdown).await {
                    return None;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn take(pending: &mut Pending, delivery: Delivery) {
    match serde_json::from_slice::<StatusBatch>(&delivery.data) {
        Ok(batch) => {
            pending.since.get_or_insert_with(Instant::now);
            pending.events.extend(events_of(&batch));
            pending.deliveries.push(delivery);
        }
        Err(error) => {
            tracing::error!(%error, "unreadable status message; moved to the dead-letter queue");
            metrics::counter!("sprayer_events_unreadable_total").increment(1);
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
        }
    }
}

/// Writes what is pending, retrying until MongoDB takes it, then acks; `false` when shutdown
/// came first (nothing acked: the broker delivers it again).
async fn write(
    writer: &Writer,
    pending: &mut Pending,
    last: &mut i64,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    loop {
        match write_once(writer, pending, *last).await {
            Ok(written_up_to) => {
                *last = written_up_to;
                writer.head.send_replace(written_up_to);
                if let Some(delivery) = pending.deliveries.last() {
                    let acked = delivery.ack(BasicAckOptions { multiple: true }).await;
                    if let Err(error) = acked {
                        // Redelivered, they make the same ids and are dropped as duplicates.
                        tracing::warn!(%error, "cannot ack status messages written to the feed");
                    }
                }
                *pending = Pending::default();
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, events = pending.events.len(), "cannot write events; holding them");
                metrics::counter!("sprayer_events_write_failures_total").increment(1);
                if !sprayer_shared::shutdown::sleep_or_cancel(backoff, shutdown).await {
                    return false;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                // A failed insert may have written a prefix: number on after it (the head moved
                // over it), and the retry finds those events known.
                match last_number(writer, shutdown).await {
                    Some(found) => *last = found,
                    None => return false,
                }
            }
        }
    }
}

/// One attempt: the batch's events numbered after `last` and inserted, those the feed holds
/// already (a redelivered status message) left alone, their numbers unused; then the head
/// moved. Returns the new last number.
async fn write_once(
    writer: &Writer,
    pending: &Pending,
    last: i64,
) -> Result<i64, sprayer_shared::mongo::WriteError> {
    let started = Instant::now();
    let mut seen = HashSet::with_capacity(pending.events.len());
    let mut next = last;
    let mut documents = Vec::with_capacity(pending.events.len());
    for event in &pending.events {
        if !seen.insert(event.id.as_str()) {
            continue;
        }
        next += 1;
        let numbered = EventDoc {
            seq: next,
            ..event.clone()
        };
        documents.push(mongodb::bson::to_document(&numbered).map_err(|error| {
            sprayer_shared::mongo::WriteError::Statement {
                code: 0,
                message: format!("cannot encode an event: {error}"),
            }
        })?);
    }
    let count = documents.len();
    if count > 0 {
        let collection = writer
            .feed
            .events
            .clone_with_type::<mongodb::bson::Document>();
        let inserted = sprayer_shared::mongo::insert_new(&collection, documents).await?;
        writer.feed.advance_head(next).await?;
        let known = inserted.existing.len();
        metrics::counter!("sprayer_events_written_total").increment((count - known) as u64);
        metrics::counter!("sprayer_events_duplicates_total").increment(known as u64);
    }
    metrics::histogram!("sprayer_events_write_seconds").record(started.elapsed().as_secs_f64());
    Ok(next)
}
