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
use futures::stream::FuturesOrdered;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::ShortString;
use sprayer_shared::Settings;
use sprayer_shared::amqp::{self, AmqpError, Brokers, Consuming, Publisher};
use sprayer_shared::expand::users_with_endpoint;
use sprayer_shared::model::{
    Channel, DeliveryEvent, DeliveryStatus, Job, StatusBatch, UserId, decode_jobs, now_ms,
};
use sprayer_shared::redis::RedisConnection;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::inbox::{self, NewMessage};
use crate::reporter::ws_event;
use crate::wake::Wakes;

/// How long feedback publishing may take to finish after shutdown is asked.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Redis pipelines in flight at once for one job while handing a message over to the nodes.
const PIPELINES: usize = 4;
/// Longest wait for this node's sockets to write a live message before its inbox writes start.
const SETTLE_AT_MOST: Duration = Duration::from_millis(500);
/// Recipients from which a message is handed to every live node rather than to the nodes
/// `conn:` names for each user.
const BROADCAST_FROM: usize = 256;
/// Store pipelines in flight at once.
const STORE_PIPELINES: usize = 4;
/// Pause before a job whose stores failed goes back to the queue.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Why a job could not be stored; it goes back to its queue.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
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
    /// The sequence key, `<prefix>ws-seq`.
    pub seq_key: String,
    /// The live nodes, `<prefix>ws-nodes`.
    pub nodes_key: String,
    /// This node's sockets.
    pub registry: Arc<crate::registry::Registry>,
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
    ///
    /// A job seen for the first time is handed to the nodes holding its users' sockets before
    /// it is stored, so that live delivery does not wait for the inbox writes; a job the broker
    /// delivers again (another node may have sent it already, and a client acked it) is only
    /// stored, and sockets read what is new from their inbox.
    pub async fn store(
        &self,
        job: &Job,
        redelivered: bool,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        let started = std::time::Instant::now();
        let mut redis = self.redis.clone();
        let settings = &self.settings;
        let batch = settings.dispatcher.lookup_batch.max(1);
        let users =
            users_with_endpoint(&mut redis, job, settings.redis.group_shards, batch).await?;
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
            seq: inbox::next_seq(&mut redis, &self.seq_key).await?,
        };
        // Large batches go to every live node, which picks its own users: cheaper than looking
        // up each user's nodes. Small ones go only where `conn:` says.
        let everyone = if !redelivered && users.len() >= BROADCAST_FROM {
            Some(inbox::live_nodes(&mut redis, &self.nodes_key).await?)
        } else {
            None
        };
        let since = self.registry.wakes_seen();
        let mut own_wakes = 0;
        if !redelivered {
            let mut pending = FuturesOrdered::new();
            let mut chunks = users.chunks(batch);
            loop {
                while pending.len() < PIPELINES {
                    let Some(chunk) = chunks.next() else { break };
                    pending.push_back(self.hand_over(job, chunk, &message, everyone.as_deref()));
                }
                match pending.next().await {
                    Some(own) => own_wakes += own?,
                    None => break,
                }
            }
        }
        let handed_over = started.elapsed();
        if own_wakes > 0 {
            self.registry.settle(since, own_wakes, SETTLE_AT_MOST).await;
        }
        let mut pending = FuturesOrdered::new();
        let mut chunks = users.chunks(batch);
        let mut events = Vec::with_capacity(users.len());
        loop {
            while pending.len() < STORE_PIPELINES {
                let Some(chunk) = chunks.next() else { break };
                pending.push_back(self.store_batch(job, chunk, &message));
            }
            match pending.next().await {
                Some(stored) => events.extend(stored?),
                None => break,
            }
        }
        metrics::counter!("sprayer_ws_stored_total").increment(users.len() as u64);
        tracing::debug!(
            message = %job.message_id,
            users = users.len(),
            handed_over_ms = handed_over.as_millis() as u64,
            stored_ms = started.elapsed().as_millis() as u64,
            since_accepted_ms = now_ms() - job.created_at,
            "ws job stored"
        );
        Ok(events)
    }

    /// Publishes the message to the nodes holding sockets of `users` (to `everyone` when
    /// given); returns how many wake-ups went to this node.
    async fn hand_over(
        &self,
        job: &Job,
        users: &[UserId],
        message: &NewMessage<'_>,
        everyone: Option<&[String]>,
    ) -> Result<u64, StoreError> {
        let mut redis = self.redis.clone();
        let nodes = match everyone {
            Some(nodes) => vec![nodes.to_vec(); users.len()],
            None => inbox::nodes_of(&mut redis, &job.app, users).await?,
        };
        let mut wakes = Wakes::default();
        for (user, nodes) in users.iter().zip(&nodes) {
            for node in nodes {
                wakes.add(node.clone(), user, message.seq);
            }
        }
        let own = wakes.count_for(self.registry.node().as_str());
        if let Err(error) = wakes
            .publish(&mut redis, &job.app, message.id, Some(message.json))
            .await
        {
            tracing::warn!(%error, "cannot publish wake-ups; sockets get the message once stored");
            return Ok(0);
        }
        Ok(own)
    }

    /// Stores one batch, then tells the nodes holding sockets of its users that it is stored:
    /// a socket that connected after the hand-over (and read its inbox before this write) reads
    /// it now; the others have it already and do nothing.
    async fn store_batch(
        &self,
        job: &Job,
        users: &[UserId],
        message: &NewMessage<'_>,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        let mut redis = self.redis.clone();
        // The inbox is the `ws` channel's provider: its write is what the others' sends are.
        let started = std::time::Instant::now();
        let stored = inbox::store_many(
            &mut redis,
            &job.app,
            users,
            message,
            self.settings.deliverer.inbox_max,
            &self.due_key,
        )
        .await;
        metrics::histogram!("sprayer_provider_seconds", "channel" => "ws")
            .record(started.elapsed().as_secs_f64());
        let stored = stored?;
        let mut events = Vec::with_capacity(users.len());
        let mut wakes = Wakes::default();
        for (user, stored) in users.iter().zip(stored) {
            let status = if stored.acked_before {
                DeliveryStatus::Delivered
            } else {
                DeliveryStatus::Queued
            };
            events.extend(ws_event(&job.app, user, message.id, status, None));
            for dropped in &stored.dropped {
                events.extend(ws_event(
                    &job.app,
                    user,
                    dropped,
                    DeliveryStatus::Failed,
                    Some("inbox full: dropped for newer messages"),
                ));
            }
            if stored.in_inbox {
                for node in stored.nodes {
                    wakes.add(node, user, stored.seq);
                }
            }
        }
        if let Err(error) = wakes.publish(&mut redis, &job.app, message.id, None).await {
            tracing::warn!(%error, "cannot publish wake-ups; sockets catch up later");
        }
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
        self.publisher.publish_all(&messages).await?;
        events.iter().for_each(crate::reporter::count);
        Ok(())
    }
}

/// Consumes `jobs.ws` until `shutdown`, reconnecting whenever the broker goes away.
pub async fn run(storer: Arc<Storer>, shutdown: CancellationToken) {
    let brokers = storer.publisher.brokers();
    amqp::run_with_reconnect("deliverer.jobs", &shutdown, || {
        session(storer.clone(), &brokers, shutdown.clone())
    })
    .await;
    tracing::info!("ws job consumer stopped");
}

async fn session(
    storer: Arc<Storer>,
    brokers: &Brokers,
    shutdown: CancellationToken,
) -> Result<(), AmqpError> {
    let topology = storer.publisher.topology();
    let prefetch = storer.settings.amqp.prefetch;
    let Consuming {
        connection,
        channel,
        mut consumer,
    } = brokers
        .consume_jobs(topology, Channel::Ws, prefetch)
        .await?;
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
    amqp::close(&connection).await;
    ended
}

/// Stores the jobs of one broker message in order; returns what is left to do (publish
/// feedback, ack) off the line. When one of a batch cannot be stored, the whole message goes
/// back: storing a redelivered job again is safe (see [`Storer::store`]).
async fn handle(
    storer: &Arc<Storer>,
    delivery: Delivery,
    shutdown: &CancellationToken,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let kind = delivery.properties.kind().as_ref().map(ShortString::as_str);
    let jobs = match decode_jobs(kind, &delivery.data) {
        Ok(jobs) => jobs,
        Err(error) => {
            tracing::error!(%error, "unreadable ws job; moved to the dead-letter queue");
            metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "unreadable")
                .increment(1);
            let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            return None;
        }
    };
    let mut events = Vec::new();
    for job in &jobs {
        match storer.store(job, delivery.redelivered).await {
            Ok(stored) => events.extend(stored),
            Err(error) => {
                tracing::warn!(%error, message = %job.message_id, "ws job not stored; requeued");
                metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "requeued")
                    .increment(jobs.len() as u64);
                sprayer_shared::shutdown::sleep_or_cancel(REQUEUE_PAUSE, shutdown).await;
                let _ = delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
                return None;
            }
        }
    }
    let count = jobs.len() as u64;
    let storer = storer.clone();
    Some(async move {
        let settled = match storer.publish_events(&events).await {
            Ok(()) => {
                metrics::counter!("sprayer_jobs_total", "channel" => "ws", "result" => "done")
                    .increment(count);
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
