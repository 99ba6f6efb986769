//! The `jobs.ws` consumer: expands each job like every dispatcher, stores the message in every
//! recipient's inbox, wakes the nodes holding their sockets, then publishes `queued` (and any
//! `failed` or `expired`) with confirms and acks the job.
//!
//! `jobs.ws` has a single active consumer, and this loop stores jobs one after the other in
//! queue order, so a user's inbox keeps the order messages were sent in. Publishing feedback
//! and acking run beside the next job. Another node's consumer takes over when this one goes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicRejectOptions};
use sprayer_shared::Settings;
use sprayer_shared::amqp::{self, AmqpError, Publisher};
use sprayer_shared::expand::{Expansion, expand};
use sprayer_shared::model::{
    Channel, DeliveryEvent, DeliveryStatus, Job, StatusBatch, UserId, now_ms,
};
use sprayer_shared::redis::RedisConnection;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::inbox::{self, NewMessage};
use crate::reporter::ws_event;
use crate::wake::Wakes;

/// How long feedback publishing may take to finish after shutdown is asked.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Pause before a job whose stores failed goes back to the queue.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Why a job could not be stored; it goes back to its queue.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// RabbitMQ failed.
    #[error("{0}")]
    Amqp(#[from] AmqpError),
}

/// What the consumer needs.
pub struct Storer {
    /// The settings.
    pub settings: Arc<Settings>,
    /// Inboxes, endpoints and groups.
    pub redis: RedisConnection,
    /// Publishes feedback.
    pub publisher: Arc<Publisher>,
    /// The expiry index key.
    pub due_key: String,
}

/// The message as a socket receives it, without the frame around it.
fn message_json(job: &Job) -> String {
    serde_json::json!({
        "id": job.message_id,
        "title": job.content.title,
        "body": job.content.body,
        "data": job.content.data,
        "created_at": job.created_at,
        "expires_at": job.expires_at,
    })
    .to_string()
}

impl Storer {
    /// Stores one job's message in its recipients' inboxes; returns the feedback to publish.
    pub async fn store(&self, job: &Job) -> Result<Vec<DeliveryEvent>, StoreError> {
        let mut redis = self.redis.clone();
        let settings = &self.settings;
        let expansion = expand(
            &mut redis,
            job,
            settings.redis.group_shards,
            usize::MAX,
            settings.dispatcher.lookup_batch,
        )
        .await?;
        let recipients = match expansion {
            Expansion::Recipients(recipients) => recipients,
            // Not with an unbounded inline threshold; if it ever happens, the parts are jobs.
            Expansion::Split(jobs) => {
                let topology = self.publisher.topology();
                let messages = jobs
                    .iter()
                    .map(|job| topology.job_message(Channel::Ws, job))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| AmqpError::Unavailable(error.to_string()))?;
                self.publisher.publish_all(&messages).await?;
                return Ok(Vec::new());
            }
        };
        let mut users: Vec<UserId> = Vec::with_capacity(recipients.len());
        let mut seen = std::collections::HashSet::with_capacity(recipients.len());
        for recipient in recipients {
            if recipient.address.is_some() && seen.insert(recipient.user.clone()) {
                users.push(recipient.user);
            }
        }
        let id = job.message_id.as_str();
        if job.expired_at(now_ms()) {
            return Ok(users
                .iter()
                .filter_map(|user| ws_event(&job.app, user, id, DeliveryStatus::Expired, None))
                .collect());
        }
        let json = message_json(job);
        let message = NewMessage {
            id,
            json: &json,
            expires_at: job.expires_at,
        };
        let mut events = Vec::with_capacity(users.len());
        for chunk in users.chunks(settings.dispatcher.lookup_batch.max(1)) {
            let stored = inbox::store_many(
                &mut redis,
                &job.app,
                chunk,
                &message,
                settings.deliverer.inbox_max,
                &self.due_key,
            )
            .await?;
            let mut wakes = Wakes::default();
            for (user, stored) in chunk.iter().zip(stored) {
                if !stored.in_inbox {
                    continue;
                }
                events.extend(ws_event(&job.app, user, id, DeliveryStatus::Queued, None));
                for dropped in &stored.dropped {
                    events.extend(ws_event(
                        &job.app,
                        user,
                        dropped,
                        DeliveryStatus::Failed,
                        Some("inbox full: dropped for newer messages"),
                    ));
                }
                for node in stored.nodes {
                    wakes.add(node, user, stored.seq, stored.previous);
                }
            }
            if let Err(error) = wakes.publish(&mut redis, &job.app, id, &json).await {
                tracing::warn!(%error, "cannot publish wake-ups; sockets catch up later");
            }
        }
        metrics::counter!("sprayer_ws_stored_total").increment(events.len() as u64);
        Ok(events)
    }

    async fn publish_events(&self, events: &[DeliveryEvent]) -> Result<(), AmqpError> {
        let topology = self.publisher.topology();
        let mut messages = Vec::new();
        for chunk in events.chunks(self.settings.dispatcher.status_batch.max(1)) {
            let batch = StatusBatch {
                messages: Vec::new(),
                deliveries: chunk.to_vec(),
            };
            messages.push(
                topology
                    .status_message(&batch)
                    .map_err(|error| AmqpError::Unavailable(error.to_string()))?,
            );
        }
        if messages.is_empty() {
            return Ok(());
        }
        self.publisher.publish_all(&messages).await
    }
}

/// Consumes `jobs.ws` until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(storer: Arc<Storer>, shutdown: CancellationToken) {
    amqp::run_with_reconnect("deliverer.jobs", &shutdown, || {
        session(storer.clone(), shutdown.clone())
    })
    .await;
    tracing::info!("ws job consumer stopped");
}

async fn session(storer: Arc<Storer>, shutdown: CancellationToken) -> Result<(), AmqpError> {
    let settings = &storer.settings;
    let connection = amqp::connect(&settings.amqp.url, Duration::from_secs(5)).await?;
    let channel = amqp::consumer_channel(&connection, settings.amqp.prefetch).await?;
    let topology = storer.publisher.topology();
    topology.declare_status(&channel).await?;
    topology.declare_channel(&channel, Channel::Ws).await?;
    let mut consumer = amqp::consume(&channel, &topology.jobs_queue(Channel::Ws)).await?;
    let mut finishing = JoinSet::new();
    let ended = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            Some(_) = finishing.join_next(), if !finishing.is_empty() => {}
            next = consumer.next() => match next {
                None => break Ok(()),
                Some(Err(error)) => break Err(AmqpError::from(error)),
                Some(Ok(delivery)) => {
                    if let Some(finish) = handle(&storer, delivery, &shutdown).await {
                        finishing.spawn(finish);
                    }
                }
            },
        }
    };
    if shutdown.is_cancelled() {
        let _ = channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await;
    }
    if tokio::time::timeout(DRAIN_GRACE, async {
        while finishing.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "feedback still unpublished after the grace period; the jobs return to the queue"
        );
        finishing.abort_all();
    }
    let _ = connection.close(200, "bye".into()).await;
    ended
}

/// Stores one job in order; returns what is left to do (publish feedback, ack) off the line.
async fn handle(
    storer: &Arc<Storer>,
    delivery: Delivery,
    shutdown: &CancellationToken,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let job: Job = match serde_json::from_slice(&delivery.data) {
        Ok(job) => job,
        Err(error) => {
            tracing::error!(%error, "unreadable ws job; moved to the dead-letter queue");
            metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "unreadable")
                .increment(1);
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return None;
        }
    };
    let events = match storer.store(&job).await {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, message = %job.message_id, "ws job not stored; requeued");
            metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "requeued")
                .increment(1);
            sprayer_shared::shutdown::sleep_or_cancel(REQUEUE_PAUSE, shutdown).await;
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
            return None;
        }
    };
    let storer = storer.clone();
    Some(async move {
        let settled = match storer.publish_events(&events).await {
            Ok(()) => {
                metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "done")
                    .increment(1);
                delivery.ack(BasicAckOptions::default()).await
            }
            Err(error) => {
                tracing::warn!(%error, "ws feedback not published; job requeued");
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        };
        if let Err(error) = settled {
            tracing::warn!(%error, "cannot settle a ws job; the broker redelivers it");
        }
    })
}
