//! RabbitMQ: the topology (exchanges and queues, declared idempotently by every service), a
//! confirming publisher that reconnects on demand, and a reconnect loop for consumers.
//!
//! ```text
//! <p>sprayer.jobs (direct) ──<channel>──► <p>jobs.<channel> ──rejected──► <p>jobs.<channel>.dead
//! <p>jobs.<channel>.retry.<delay> (TTL) ──expired──► <p>sprayer.jobs ──<channel>──► <p>jobs.<channel>
//! <p>sprayer.status (direct) ──status──► <p>status ──rejected──► <p>status.dead
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use lapin::Confirmation;
use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{AmqpSettings, QueueType};
use crate::model::Channel;

/// The routing key of status batches.
pub const STATUS_ROUTING_KEY: &str = "status";

/// What went wrong talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The broker could not be reached or the connection broke.
    #[error("rabbitmq: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker refused to take a message (publisher nack).
    #[error("rabbitmq refused the message (nack)")]
    Nacked,
    /// No connection could be made lately; the next attempt waits a moment.
    #[error("rabbitmq unavailable: {0}")]
    Unavailable(String),
    /// Connecting took too long.
    #[error("rabbitmq: connecting timed out")]
    Timeout,
}

/// Names and arguments of every exchange and queue, from the settings.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    retry_tiers: Vec<Duration>,
    queue_type: QueueType,
    queue_expires: Option<Duration>,
}

impl Topology {
    /// The topology the settings describe.
    pub fn new(settings: &AmqpSettings) -> Topology {
        Topology {
            prefix: settings.prefix.clone(),
            retry_tiers: settings.retry_tiers.clone(),
            queue_type: settings.queue_type,
            queue_expires: settings.queue_expires,
        }
    }

    /// The exchange jobs are published to, routed by channel name.
    pub fn jobs_exchange(&self) -> String {
        format!("{}sprayer.jobs", self.prefix)
    }

    /// The exchange status batches are published to.
    pub fn status_exchange(&self) -> String {
        format!("{}sprayer.status", self.prefix)
    }

    /// `jobs.<channel>`: what the channel's dispatchers consume.
    pub fn jobs_queue(&self, channel: Channel) -> String {
        format!("{}jobs.{channel}", self.prefix)
    }

    /// `jobs.<channel>.dead`: jobs given up on.
    pub fn dead_queue(&self, channel: Channel) -> String {
        format!("{}jobs.{channel}.dead", self.prefix)
    }

    /// `jobs.<channel>.retry.<delay>` for retry tier `tier` (0-based).
    pub fn retry_queue(&self, channel: Channel, tier: usize) -> Option<String> {
        let delay = self.retry_tiers.get(tier)?;
        Some(format!(
            "{}jobs.{channel}.retry.{}",
            self.prefix,
            tier_label(*delay)
        ))
    }

    /// A job for `channel`'s queue.
    pub fn job_message(
        &self,
        channel: Channel,
        job: &crate::model::Job,
    ) -> Result<Outgoing, serde_json::Error> {
        Ok(Outgoing {
            exchange: self.jobs_exchange(),
            routing_key: channel.as_str().to_owned(),
            body: serde_json::to_vec(job)?,
        })
    }

    /// A job straight into `queue` (a retry tier or the dead-letter queue).
    pub fn queued_job_message(
        &self,
        queue: String,
        job: &crate::model::Job,
    ) -> Result<Outgoing, serde_json::Error> {
        Ok(Outgoing {
            exchange: String::new(),
            routing_key: queue,
            body: serde_json::to_vec(job)?,
        })
    }

    /// A status batch for the feeder.
    pub fn status_message(
        &self,
        batch: &crate::model::StatusBatch,
    ) -> Result<Outgoing, serde_json::Error> {
        Ok(Outgoing {
            exchange: self.status_exchange(),
            routing_key: STATUS_ROUTING_KEY.to_owned(),
            body: serde_json::to_vec(batch)?,
        })
    }

    /// The delay of each retry tier.
    pub fn retry_tiers(&self) -> &[Duration] {
        &self.retry_tiers
    }

    /// The queue the feeder consumes.
    pub fn status_queue(&self) -> String {
        format!("{}status", self.prefix)
    }

    /// Where status messages that cannot be read are kept.
    pub fn status_dead_queue(&self) -> String {
        format!("{}status.dead", self.prefix)
    }

    fn queue_arguments(&self, replicated: bool) -> FieldTable {
        let mut arguments = FieldTable::default();
        if replicated && self.queue_type == QueueType::Quorum {
            arguments.insert("x-queue-type".into(), string_value("quorum"));
        }
        if let Some(expires) = self.queue_expires {
            arguments.insert("x-expires".into(), millis_value(expires));
        }
        arguments
    }

    fn dead_letter_to(&self, arguments: &mut FieldTable, exchange: &str, routing_key: &str) {
        arguments.insert("x-dead-letter-exchange".into(), string_value(exchange));
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            string_value(routing_key),
        );
    }

    /// Declares the jobs exchange and the queues of `channel` (main, retry tiers, dead).
    pub async fn declare_channel(
        &self,
        amqp: &lapin::Channel,
        channel: Channel,
    ) -> Result<(), AmqpError> {
        let jobs_exchange = self.jobs_exchange();
        declare_exchange(amqp, &jobs_exchange).await?;
        let dead = self.dead_queue(channel);
        declare_queue(amqp, &dead, self.queue_arguments(true)).await?;
        let mut main_arguments = self.queue_arguments(true);
        self.dead_letter_to(&mut main_arguments, "", &dead);
        if channel == Channel::Ws {
            // One deliverer at a time stores the WebSocket jobs, in queue order: that keeps each
            // user's inbox in sending order. Another node takes over when it goes away.
            main_arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        let main = self.jobs_queue(channel);
        declare_queue(amqp, &main, main_arguments).await?;
        bind(amqp, &main, &jobs_exchange, channel.as_str()).await?;
        for (tier, delay) in self.retry_tiers.iter().enumerate() {
            let mut arguments = self.queue_arguments(true);
            arguments.insert("x-message-ttl".into(), millis_value(*delay));
            self.dead_letter_to(&mut arguments, &jobs_exchange, channel.as_str());
            if let Some(queue) = self.retry_queue(channel, tier) {
                declare_queue(amqp, &queue, arguments).await?;
            }
        }
        Ok(())
    }

    /// Declares the status exchange and queues.
    pub async fn declare_status(&self, amqp: &lapin::Channel) -> Result<(), AmqpError> {
        let exchange = self.status_exchange();
        declare_exchange(amqp, &exchange).await?;
        let dead = self.status_dead_queue();
        declare_queue(amqp, &dead, self.queue_arguments(true)).await?;
        let mut arguments = self.queue_arguments(true);
        self.dead_letter_to(&mut arguments, "", &dead);
        let queue = self.status_queue();
        declare_queue(amqp, &queue, arguments).await?;
        bind(amqp, &queue, &exchange, STATUS_ROUTING_KEY).await
    }

    /// Declares everything: the status path and every channel's queues.
    pub async fn declare_all(&self, amqp: &lapin::Channel) -> Result<(), AmqpError> {
        self.declare_status(amqp).await?;
        for channel in Channel::ALL {
            self.declare_channel(amqp, channel).await?;
        }
        Ok(())
    }
}

/// `1s`, `10s`, `10m`, `1500ms`: the label of a retry tier in its queue name.
fn tier_label(delay: Duration) -> String {
    let millis = delay.as_millis();
    if millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

fn string_value(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn millis_value(duration: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

async fn declare_exchange(amqp: &lapin::Channel, name: &str) -> Result<(), AmqpError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    amqp.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        options,
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

async fn declare_queue(
    amqp: &lapin::Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), AmqpError> {
    amqp.queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
        .await?;
    Ok(())
}

async fn bind(
    amqp: &lapin::Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), AmqpError> {
    amqp.queue_bind(
        queue.into(),
        exchange.into(),
        routing_key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Opens a connection, giving up after `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection, AmqpError> {
    match tokio::time::timeout(
        timeout,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(AmqpError::Timeout),
    }
}

/// Opens a channel for consuming with the given prefetch.
pub async fn consumer_channel(
    connection: &Connection,
    prefetch: u16,
) -> Result<lapin::Channel, AmqpError> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    Ok(channel)
}

/// Starts a manual-ack consumer of `queue` on `channel`.
pub async fn consume(channel: &lapin::Channel, queue: &str) -> Result<lapin::Consumer, AmqpError> {
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            lapin::options::BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(%queue, "consuming");
    Ok(consumer)
}

/// One message to publish: exchange, routing key and body.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The exchange (empty for the default exchange).
    pub exchange: String,
    /// The routing key (a queue name on the default exchange).
    pub routing_key: String,
    /// The body, JSON.
    pub body: Vec<u8>,
}

/// A publisher with confirms over a few shared channels of one connection, taken in turn (the
/// broker handles each channel in one process: one channel for every concurrent request would
/// be the bottleneck). It connects on first use and again after the connection breaks; while
/// the broker stays unreachable it fails fast for a second between attempts, so callers can
/// answer 503 at once.
pub struct Publisher {
    url: String,
    topology: Topology,
    state: Mutex<PublisherState>,
    turn: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct PublisherState {
    live: Option<(Connection, Vec<lapin::Channel>)>,
    last_failure: Option<(Instant, String)>,
}

/// Channels a publisher spreads its publishes over.
const PUBLISH_CHANNELS: usize = 8;

const RETRY_CONNECT_AFTER: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Publisher {
    /// A publisher for `url`, declaring `topology` on every new connection.
    pub fn new(url: &str, topology: Topology) -> Publisher {
        Publisher {
            url: url.to_owned(),
            topology,
            state: Mutex::new(PublisherState::default()),
            turn: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn channel(&self) -> Result<lapin::Channel, AmqpError> {
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut state = self.state.lock().await;
        if let Some((connection, channels)) = &state.live {
            let channel = &channels[turn % channels.len()];
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
            tracing::warn!("rabbitmq publisher connection lost; reconnecting");
            state.live = None;
        }
        if let Some((at, reason)) = &state.last_failure
            && at.elapsed() < RETRY_CONNECT_AFTER
        {
            return Err(AmqpError::Unavailable(reason.clone()));
        }
        match self.open().await {
            Ok((connection, channels)) => {
                let channel = channels[turn % channels.len()].clone();
                state.live = Some((connection, channels));
                state.last_failure = None;
                Ok(channel)
            }
            Err(error) => {
                state.last_failure = Some((Instant::now(), error.to_string()));
                Err(error)
            }
        }
    }

    async fn open(&self) -> Result<(Connection, Vec<lapin::Channel>), AmqpError> {
        let connection = connect(&self.url, CONNECT_TIMEOUT).await?;
        let mut channels = Vec::with_capacity(PUBLISH_CHANNELS);
        for _ in 0..PUBLISH_CHANNELS {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channels.push(channel);
        }
        self.topology.declare_all(&channels[0]).await?;
        Ok((connection, channels))
    }

    /// Whether the broker is reachable now.
    pub async fn check(&self) -> Result<(), AmqpError> {
        self.channel().await.map(|_| ())
    }

    /// Publishes every message (persistent, JSON) and waits until the broker confirmed them all.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"));
            let confirm = channel
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &message.body,
                    properties,
                )
                .await;
            match confirm {
                Ok(confirm) => confirms.push(confirm),
                Err(error) => {
                    self.forget(&channel).await;
                    return Err(error.into());
                }
            }
        }
        let confirmations = try_join_all(confirms).await;
        match confirmations {
            Ok(confirmations)
                if confirmations
                    .iter()
                    .all(|c| matches!(c, Confirmation::Ack(_))) =>
            {
                Ok(())
            }
            Ok(_) => Err(AmqpError::Nacked),
            Err(error) => {
                self.forget(&channel).await;
                Err(error.into())
            }
        }
    }

    /// Publishes one message and waits for its confirm.
    pub async fn publish(&self, message: Outgoing) -> Result<(), AmqpError> {
        self.publish_all(std::slice::from_ref(&message)).await
    }

    async fn forget(&self, broken: &lapin::Channel) {
        let mut state = self.state.lock().await;
        if state
            .live
            .as_ref()
            .is_some_and(|(_, channels)| channels.iter().any(|channel| channel.id() == broken.id()))
        {
            state.live = None;
        }
    }
}

/// Runs `session` again and again until `shutdown`, waiting with exponential backoff (capped at
/// 30 s) after each failure. A session that ran for a while resets the backoff.
pub async fn run_with_reconnect<F, Fut, E>(name: &str, shutdown: &CancellationToken, mut session: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        match session().await {
            Ok(()) if shutdown.is_cancelled() => break,
            Ok(()) => tracing::warn!(consumer = name, "consumer stream ended; reconnecting"),
            Err(error) => tracing::warn!(consumer = name, %error, "consumer failed; reconnecting"),
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(250);
        }
        if !crate::shutdown::sleep_or_cancel(backoff, shutdown).await {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_the_tier_delay() {
        let settings = AmqpSettings {
            prefix: "t1.".into(),
            retry_tiers: vec![
                Duration::from_millis(1500),
                Duration::from_secs(10),
                Duration::from_secs(600),
            ],
            ..AmqpSettings::default()
        };
        let topology = Topology::new(&settings);
        assert_eq!(topology.jobs_queue(Channel::Http), "t1.jobs.http");
        assert_eq!(
            topology.retry_queue(Channel::Http, 0).as_deref(),
            Some("t1.jobs.http.retry.1500ms")
        );
        assert_eq!(
            topology.retry_queue(Channel::Http, 1).as_deref(),
            Some("t1.jobs.http.retry.10s")
        );
        assert_eq!(
            topology.retry_queue(Channel::Http, 2).as_deref(),
            Some("t1.jobs.http.retry.10m")
        );
        assert_eq!(topology.retry_queue(Channel::Http, 3), None);
        assert_eq!(topology.dead_queue(Channel::Sms), "t1.jobs.sms.dead");
    }
}
