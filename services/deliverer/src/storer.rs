//! Storing a `jobs.ws` job: expands it like every dispatcher, hands the message to the nodes
//! holding its recipients' sockets, stores it in every recipient's inbox, wakes the nodes
//! again, and gives back the feedback (`queued`, and any `failed` or `expired`) for the
//! [`crate::consumer`] to publish before it acks the job.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use sprayer_shared::Settings;
use sprayer_shared::amqp::{AmqpError, Publisher};
use sprayer_shared::expand::users_with_endpoint;
use std::collections::BTreeMap;

use sprayer_shared::model::{
    Channel, DeliveryEvent, DeliveryStatus, DeviceId, Job, JobTarget, PendingDelivery, UserId,
    now_ms,
};
use sprayer_shared::personal::{Decision, Personalizer};
use sprayer_shared::redis::RedisConnection;

use crate::inbox::{self, NewMessage};
use crate::reporter::ws_event;
use crate::wake::Wakes;

/// Redis pipelines in flight at once for one job while handing a message over to the nodes.
const PIPELINES: usize = 4;
/// Longest wait for this node's sockets to write a live message before its inbox writes start.
const SETTLE_AT_MOST: Duration = Duration::from_millis(500);
/// Recipients from which a message is handed to every live node rather than to the nodes
/// `conn:` names for each user.
const BROADCAST_FROM: usize = 256;
/// Store pipelines in flight at once.
const STORE_PIPELINES: usize = 4;

/// Why a job could not be stored; it goes back to its queue.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// RabbitMQ failed (publishing deliveries held for quiet hours).
    #[error("{0}")]
    Amqp(#[from] AmqpError),
    /// A held delivery's job could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What the consumer needs.
pub struct Storer {
    /// The settings.
    pub settings: Arc<Settings>,
    /// Inboxes, endpoints and groups.
    pub redis: RedisConnection,
    /// The broker connection the consumer shares.
    pub publisher: Arc<Publisher>,
    /// Publishes stored events, gathered with other jobs' (`dispatcher.status_linger`).
    pub events: sprayer_shared::amqp::committer::EventCommitter,
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
        if job.personal.is_none() {
            return self.store_for(job, &users, redelivered, started).await;
        }
        self.store_personal(job, users, redelivered, started).await
    }

    /// A personal job: each user's preferences and quiet hours decide, and the message is
    /// stored once per rendering (per locale, or per user for templates reading `user.*`).
    /// Deliveries held for quiet hours wait in the retry tiers, as the dispatchers' do.
    async fn store_personal(
        &self,
        job: &Job,
        users: Vec<UserId>,
        redelivered: bool,
        started: std::time::Instant,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        let mut redis = self.redis.clone();
        let batch = self.settings.dispatcher.lookup_batch.max(1);
        let mut personalizer = Personalizer::load(&mut redis, job, &users, batch).await?;
        let id = job.message_id.as_str();
        let now = now_ms();
        let tiers = &self.settings.amqp.retry_tiers;
        let mut groups: Vec<(Arc<Job>, Vec<UserId>)> = Vec::new();
        let mut held: BTreeMap<usize, Vec<PendingDelivery>> = BTreeMap::new();
        let mut events = Vec::new();
        for user in users {
            match personalizer.decide(&user, now) {
                Decision::Send(rendered) => {
                    match groups
                        .iter_mut()
                        .find(|(group, _)| Arc::ptr_eq(group, &rendered))
                    {
                        Some((_, members)) => members.push(user),
                        None => groups.push((rendered, vec![user])),
                    }
                }
                Decision::Skip(reason) => {
                    events.extend(ws_event(
                        &job.app,
                        &user,
                        id,
                        DeliveryStatus::Skipped,
                        Some(reason),
                    ));
                }
                Decision::Fail(error) => {
                    events.extend(ws_event(
                        &job.app,
                        &user,
                        id,
                        DeliveryStatus::Failed,
                        Some(&error),
                    ));
                }
                Decision::Hold(until) if job.expired_at(until) || tiers.is_empty() => {
                    events.extend(ws_event(
                        &job.app,
                        &user,
                        id,
                        DeliveryStatus::Expired,
                        Some("the recipient's quiet hours last past the message's TTL"),
                    ));
                }
                Decision::Hold(until) => {
                    let left = Duration::from_millis(u64::try_from(until - now).unwrap_or(0));
                    let tier = tiers.iter().rposition(|tier| *tier <= left).unwrap_or(0);
                    held.entry(tier).or_default().push(PendingDelivery {
                        user,
                        device: DeviceId::inbox(),
                        attempts: 0,
                    });
                }
            }
        }
        if !held.is_empty() {
            let topology = self.publisher.topology();
            let mut messages = Vec::with_capacity(held.len());
            for (tier, pending) in held {
                if let Some(queue) = topology.retry_queue(Channel::Ws, tier) {
                    metrics::counter!("sprayer_deliveries_held_total", "channel" => "ws")
                        .increment(pending.len() as u64);
                    let retry = job.with_target(JobTarget::Retry(pending));
                    messages.push(topology.queued_job_message(queue, &retry)?);
                }
            }
            self.publisher.publish_all(&messages).await?;
        }
        for (rendered, members) in groups {
            events.extend(
                self.store_for(&rendered, &members, redelivered, started)
                    .await?,
            );
        }
        Ok(events)
    }

    /// Stores one rendering of a message for `users`.
    async fn store_for(
        &self,
        job: &Job,
        users: &[UserId],
        redelivered: bool,
        started: std::time::Instant,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        let mut redis = self.redis.clone();
        let batch = self.settings.dispatcher.lookup_batch.max(1);
        let id = job.message_id.as_str();
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
            inbox::Capacity::of(&self.settings.deliverer),
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

    /// Publishes `events` in status batches (with other jobs', see `dispatcher.status_linger`)
    /// and waits for the broker's confirms.
    pub async fn publish_events(&self, events: &[DeliveryEvent]) -> Result<(), AmqpError> {
        if events.is_empty() {
            return Ok(());
        }
        self.events.publish(events.to_vec()).await?;
        events.iter().for_each(crate::reporter::count);
        Ok(())
    }
}
