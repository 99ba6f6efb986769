//! RabbitMQ: the topology (exchanges and queues, declared idempotently by every service), a
//! confirming publisher that reconnects on demand, and a reconnect loop for consumers. Both
//! connect through [`Brokers`]: `amqp.url` names one broker or, comma-separated, the nodes of a
//! cluster, tried in turn.
//!
//! ```text
//! <p>sprayer.jobs (direct) ──<channel>──► <p>jobs.<channel> ──rejected──► <p>jobs.<channel>.dead
//! <p>jobs.<channel>.retry.<delay> (TTL) ──expired──► <p>sprayer.jobs ──<channel>──► <p>jobs.<channel>
//! <p>sprayer.status (direct) ──status──► <p>status ──rejected──► <p>status.dead
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use lapin::Confirmation;
use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
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
    /// A broker took too long to answer: connecting, or setting up on the connection.
    #[error("rabbitmq: {0} timed out")]
    Timeout(&'static str),
    /// A TLS file of the settings (`amqp.ca_file`, `amqp.cert_file`, `amqp.key_file`) cannot
    /// be used.
    #[error("{0}")]
    Tls(String),
}

/// How long a broker may take to set up a consumer or a publisher on a new connection (open
/// channels, declare the topology, start consuming). A node that takes the connection but does
/// not answer (one shutting down, or a cluster still choosing new queue leaders) fails the
/// attempt, and the next one starts with the next broker.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long closing a connection may take at the end of a session (the broker may be gone).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `setup` within [`SETUP_TIMEOUT`]; `what` names the step in the error.
async fn within_setup_time<T>(
    what: &'static str,
    setup: impl Future<Output = Result<T, AmqpError>>,
) -> Result<T, AmqpError> {
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .unwrap_or(Err(AmqpError::Timeout(what)))
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
            kind: None,
        })
    }

    /// Several jobs for `channel`'s queue in one broker message, from their JSON encodings:
    /// one publish, one confirm and one delivery instead of one each. One job goes as itself.
    pub fn job_batch_message(&self, channel: Channel, jobs: &[Vec<u8>]) -> Outgoing {
        let (body, kind) = match jobs {
            [one] => (one.clone(), None),
            _ => (json_object_of_array("jobs", jobs), Some(JOB_BATCH_KIND)),
        };
        Outgoing {
            exchange: self.jobs_exchange(),
            routing_key: channel.as_str().to_owned(),
            body,
            kind,
        }
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
            kind: None,
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
            kind: None,
        })
    }

    /// A status batch of message records, from their JSON encodings.
    pub fn records_message(&self, records: &[Vec<u8>]) -> Outgoing {
        Outgoing {
            exchange: self.status_exchange(),
            routing_key: STATUS_ROUTING_KEY.to_owned(),
            body: json_object_of_array("messages", records),
            kind: None,
        }
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

    /// The arguments every queue gets: its type and, when set, its expiry. Only arguments that
    /// classic and quorum queues both take are used (no priorities, no exclusive or auto-delete
    /// queues), so `amqp.queue_type` switches every queue.
    fn queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            arguments.insert("x-queue-type".into(), string_value("quorum"));
        }
        if let Some(expires) = self.queue_expires {
            arguments.insert("x-expires".into(), millis_value(expires));
        }
        arguments
    }

    /// Dead-letters to `exchange` with `routing_key`. A quorum queue does it at least once (the
    /// broker keeps the message until the target queue confirmed it; this needs `reject-publish`
    /// overflow), so that a retry or a dead job is not dropped while a node fails over.
    fn dead_letter_to(&self, arguments: &mut FieldTable, exchange: &str, routing_key: &str) {
        arguments.insert("x-dead-letter-exchange".into(), string_value(exchange));
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            string_value(routing_key),
        );
        if self.queue_type == QueueType::Quorum {
            arguments.insert(
                "x-dead-letter-strategy".into(),
                string_value("at-least-once"),
            );
            arguments.insert("x-overflow".into(), string_value("reject-publish"));
        }
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
        declare_queue(amqp, &dead, self.queue_arguments()).await?;
        let mut main_arguments = self.queue_arguments();
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
            let mut arguments = self.queue_arguments();
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
        declare_queue(amqp, &dead, self.queue_arguments()).await?;
        let mut arguments = self.queue_arguments();
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

/// The broker URLs of an `amqp.url` value: one URL, or several separated by commas (a comma
/// inside a password is written `%2C`), blanks around each ignored.
pub fn broker_urls(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

/// `host:port` of a broker URL, for logs: never the credentials.
pub fn broker_address(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let default_port = if parsed.scheme() == "amqps" {
                5671
            } else {
                5672
            };
            format!(
                "{}:{}",
                parsed.host_str().unwrap_or("?"),
                parsed.port().unwrap_or(default_port)
            )
        }
        Err(_) => "?".to_owned(),
    }
}

/// The brokers of `amqp.url`, connected to in turn: the first that answers is used, and after
/// its connection is lost the next attempt starts with the one after it, so a node that went
/// away is passed over at once and a node that comes back is not needed. With one URL this is
/// plain reconnecting to it.
#[derive(Debug)]
pub struct Brokers {
    urls: Vec<String>,
    next: AtomicUsize,
    tls: OwnedTLSConfig,
}

impl Clone for Brokers {
    /// The same brokers and TLS material, starting again from the first broker.
    fn clone(&self) -> Brokers {
        Brokers {
            urls: self.urls.clone(),
            next: AtomicUsize::new(0),
            tls: self.tls.clone(),
        }
    }
}

impl Brokers {
    /// The brokers of an `amqp.url` value (see [`broker_urls`]), with the system's CAs only
    /// and no client certificate for `amqps://`.
    pub fn new(list: &str) -> Brokers {
        Brokers {
            urls: broker_urls(list).into_iter().map(str::to_owned).collect(),
            next: AtomicUsize::new(0),
            tls: OwnedTLSConfig::default(),
        }
    }

    /// The brokers of `settings`, with its TLS files read and checked: the CAs of
    /// `amqp.ca_file` trusted besides the system's, and the client certificate of
    /// `amqp.cert_file` with `amqp.key_file` shown to brokers that ask for one.
    pub fn for_settings(settings: &AmqpSettings) -> Result<Brokers, AmqpError> {
        Ok(Brokers {
            tls: tls_config(settings)?,
            ..Brokers::new(&settings.url)
        })
    }

    /// How many brokers there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether the list named no broker (a configuration that does not validate).
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Connects to the first broker that answers, starting after the one connected to last;
    /// gives each `timeout`. Fails with the last broker's error when none answers.
    pub async fn connect(&self, timeout: Duration) -> Result<Connection, AmqpError> {
        let start = self.next.load(Ordering::Relaxed);
        let mut failure = AmqpError::Unavailable("amqp.url names no broker".to_owned());
        for offset in 0..self.urls.len() {
            let index = (start + offset) % self.urls.len();
            let url = &self.urls[index];
            match connect_one(url, &self.tls, timeout).await {
                Ok(connection) => {
                    self.next
                        .store((index + 1) % self.urls.len(), Ordering::Relaxed);
                    if self.urls.len() > 1 {
                        tracing::info!(broker = %broker_address(url), "connected to rabbitmq");
                    }
                    return Ok(connection);
                }
                Err(error) => {
                    if self.urls.len() > 1 {
                        tracing::warn!(broker = %broker_address(url), %error, "rabbitmq node unreachable; trying the next");
                    }
                    failure = error;
                }
            }
        }
        Err(failure)
    }
}

/// Opens a connection to `url` (one URL or a comma-separated list, tried in order), giving
/// each broker `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection, AmqpError> {
    Brokers::new(url).connect(timeout).await
}

async fn connect_one(
    url: &str,
    tls: &OwnedTLSConfig,
    timeout: Duration,
) -> Result<Connection, AmqpError> {
    let runtime = lapin::runtime::default_runtime()?;
    match tokio::time::timeout(
        timeout,
        Connection::connect_with_config(url, ConnectionProperties::default(), tls.clone(), runtime),
    )
    .await
    {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(AmqpError::Timeout("connecting")),
    }
}

/// The TLS material of `settings` for `amqps://` brokers, each file read and parsed: a file
/// that cannot be read, or holds no certificate or key, is named in the error.
pub fn tls_config(settings: &AmqpSettings) -> Result<OwnedTLSConfig, AmqpError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |setting: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|error| {
            AmqpError::Tls(format!("cannot read {setting} {}: {error}", path.display()))
        })
    };
    let certificates = |setting: &str, path: &std::path::Path| {
        let pem = read(setting, path)?;
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(&pem).collect();
        if parsed.is_empty() || parsed.iter().any(Result::is_err) {
            return Err(AmqpError::Tls(format!(
                "{setting} {} holds no PEM certificate, or one that does not parse",
                path.display()
            )));
        }
        String::from_utf8(pem)
            .map_err(|_| AmqpError::Tls(format!("{setting} {} is not PEM text", path.display())))
    };
    let cert_chain = match &settings.ca_file {
        Some(path) => Some(certificates("amqp.ca_file", path)?),
        None => None,
    };
    let identity = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let pem = certificates("amqp.cert_file", cert)?.into_bytes();
            let key_pem = read("amqp.key_file", key)?;
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
                AmqpError::Tls(format!(
                    "amqp.key_file {} holds no PEM private key: {error}",
                    key.display()
                ))
            })?;
            Some(OwnedIdentity::PKCS8 { pem, key: key_pem })
        }
        (None, None) => None,
        _ => {
            return Err(AmqpError::Tls(
                "amqp.cert_file and amqp.key_file go together".to_owned(),
            ));
        }
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// Closes `connection`, giving the broker [`CLOSE_TIMEOUT`] to answer.
pub async fn close(connection: &Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "bye".into())).await;
}

/// What a consumer session works with.
pub struct Consuming {
    /// The connection (close it with [`close`] when the session ends).
    pub connection: Connection,
    /// The channel the consumer runs on.
    pub channel: lapin::Channel,
    /// The deliveries of the queue.
    pub consumer: lapin::Consumer,
}

/// How long a consumer gives each broker to take its connection.
const CONSUMER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Brokers {
    /// A consumer of `jobs.<channel>` (see [`Brokers::consume`]), the channel's queues and the
    /// status path declared first.
    pub async fn consume_jobs(
        &self,
        topology: &Topology,
        channel: Channel,
        prefetch: u16,
    ) -> Result<Consuming, AmqpError> {
        let queue = topology.jobs_queue(channel);
        self.consume(topology, &queue, prefetch, Some(channel))
            .await
    }

    /// A consumer of `status` (see [`Brokers::consume`]), the status path declared first.
    pub async fn consume_status(
        &self,
        topology: &Topology,
        prefetch: u16,
    ) -> Result<Consuming, AmqpError> {
        self.consume(topology, &topology.status_queue(), prefetch, None)
            .await
    }

    /// Connects (see [`Brokers::connect`]), opens a channel with `prefetch`, declares the
    /// status path (and the queues of the job channel `declare`) and starts a manual-ack
    /// consumer of `queue`. Setting up on the connection must take less than
    /// [`SETUP_TIMEOUT`], or the attempt fails and the next starts with the next broker.
    async fn consume(
        &self,
        topology: &Topology,
        queue: &str,
        prefetch: u16,
        declare: Option<Channel>,
    ) -> Result<Consuming, AmqpError> {
        let connection = self.connect(CONSUMER_CONNECT_TIMEOUT).await?;
        let (channel, consumer) = within_setup_time("setting up a consumer", async {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            topology.declare_status(&channel).await?;
            if let Some(job_channel) = declare {
                topology.declare_channel(&channel, job_channel).await?;
            }
            let consumer = channel
                .basic_consume(
                    queue.into(),
                    "".into(),
                    lapin::options::BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok((channel, consumer))
        })
        .await?;
        tracing::info!(%queue, "consuming");
        Ok(Consuming {
            connection,
            channel,
            consumer,
        })
    }
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
    /// The AMQP `type` property: [`JOB_BATCH_KIND`] for a batch of jobs, none for one job or a
    /// status batch.
    pub kind: Option<&'static str>,
}

/// The AMQP `type` of a message that carries several jobs (`{"jobs": [...]}`); see
/// [`crate::model::decode_jobs`].
pub const JOB_BATCH_KIND: &str = "jobs";

/// `{"<field>":[<item>,...]}` from items that are JSON already.
fn json_object_of_array(field: &str, items: &[Vec<u8>]) -> Vec<u8> {
    let size = items.iter().map(|item| item.len() + 1).sum::<usize>() + field.len() + 8;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(field.as_bytes());
    body.extend_from_slice(b"\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}

/// A publisher with confirms over a few shared channels of one connection, taken in turn (the
/// broker handles each channel in one process: one channel for every concurrent request would
/// be the bottleneck). It connects on first use and again after the connection breaks, to the
/// next of its [`Brokers`]; while no broker is reachable it fails fast for a second between
/// attempts, so callers can answer 503 at once.
pub struct Publisher {
    brokers: Brokers,
    topology: Topology,
    state: Mutex<PublisherState>,
    turn: AtomicUsize,
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
    /// A publisher for `url` (one broker URL or a comma-separated list: see [`Brokers`]),
    /// declaring `topology` on every new connection.
    pub fn new(url: &str, topology: Topology) -> Publisher {
        Publisher::with_brokers(Brokers::new(url), topology)
    }

    /// A publisher for `brokers` (see [`Brokers::for_settings`]), declaring `topology` on
    /// every new connection.
    pub fn with_brokers(brokers: Brokers, topology: Topology) -> Publisher {
        Publisher {
            brokers,
            topology,
            state: Mutex::new(PublisherState::default()),
            turn: AtomicUsize::new(0),
        }
    }

    /// The publisher's brokers, for a consumer of the same process to connect to (starting
    /// from the first).
    pub fn brokers(&self) -> Brokers {
        self.brokers.clone()
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn channel(&self) -> Result<lapin::Channel, AmqpError> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
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
        let connection = self.brokers.connect(CONNECT_TIMEOUT).await?;
        let channels = within_setup_time("setting up the publisher", async {
            let mut channels = Vec::with_capacity(PUBLISH_CHANNELS);
            for _ in 0..PUBLISH_CHANNELS {
                let channel = connection.create_channel().await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
                channels.push(channel);
            }
            self.topology.declare_all(&channels[0]).await?;
            Ok(channels)
        })
        .await?;
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
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"));
            if let Some(kind) = message.kind {
                properties = properties.with_type(ShortString::from(kind));
            }
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

/// Runs `session` again and again until `shutdown`, waiting with exponential backoff (from
/// 250 ms, capped at [`RECONNECT_BACKOFF_MAX`]) after each failure. A session that ran for a
/// while resets the backoff.
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
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// The longest a consumer waits between reconnect attempts: short, so that consuming resumes
/// within seconds of a broker (or another cluster node) being usable again; an attempt costs
/// the broker one connection.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AppId, Content, Job, JobTarget, MessageId, MessageRecord, Priority, StatusBatch, UserId,
        decode_jobs,
    };

    fn job(user: &str) -> Job {
        Job {
            message_id: MessageId::generate(),
            app: AppId::parse("app").expect("an app id"),
            channel: Channel::Http,
            target: JobTarget::User(UserId::parse(user).expect("a user id")),
            content: Content {
                title: Some("t".into()),
                body: Some("b \"quoted\" ,]}".into()),
                data: None,
            },
            overrides: None,
            priority: Priority::High,
            created_at: 1,
            expires_at: 2,
        }
    }

    #[test]
    fn a_job_batch_decodes_to_the_same_jobs_in_order() {
        let topology = Topology::new(&AmqpSettings::default());
        let jobs = vec![job("a"), job("b"), job("c")];
        let encoded: Vec<Vec<u8>> = jobs
            .iter()
            .map(|job| serde_json::to_vec(job).expect("json"))
            .collect();
        let message = topology.job_batch_message(Channel::Http, &encoded);
        assert_eq!(message.kind, Some(JOB_BATCH_KIND));
        assert_eq!(message.routing_key, "http");
        assert_eq!(
            decode_jobs(message.kind, &message.body).expect("a batch"),
            jobs
        );
        // One job goes as itself, readable by a consumer that knows no batches.
        let single = topology.job_batch_message(Channel::Http, &encoded[..1]);
        assert_eq!(single.kind, None);
        let plain: Job = serde_json::from_slice(&single.body).expect("a job");
        assert_eq!(plain, jobs[0]);
        assert_eq!(decode_jobs(None, &single.body).expect("a job"), jobs[..1]);
        // A batch read as one job, or one job read as a batch, is an error, not a guess.
        assert!(decode_jobs(None, &message.body).is_err());
        assert!(decode_jobs(Some(JOB_BATCH_KIND), &single.body).is_err());
    }

    #[test]
    fn records_gathered_from_their_encodings_are_a_status_batch() {
        let topology = Topology::new(&AmqpSettings::default());
        let records: Vec<MessageRecord> = ["a", "b"]
            .iter()
            .map(|user| MessageRecord {
                id: MessageId::generate(),
                app: AppId::parse("app").expect("an app id"),
                to: serde_json::json!({ "user": user }),
                channels: vec![Channel::Http, Channel::Ws],
                created_at: 1,
                expires_at: 2,
            })
            .collect();
        let encoded: Vec<Vec<u8>> = records
            .iter()
            .map(|record| serde_json::to_vec(record).expect("json"))
            .collect();
        let message = topology.records_message(&encoded);
        let batch: StatusBatch = serde_json::from_slice(&message.body).expect("a status batch");
        assert_eq!(batch.messages, records);
        assert!(batch.deliveries.is_empty());
    }

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

    #[test]
    fn quorum_queues_dead_letter_at_least_once_and_classic_ones_keep_their_arguments() {
        let quorum = Topology::new(&AmqpSettings {
            queue_type: QueueType::Quorum,
            queue_expires: Some(Duration::from_secs(60)),
            ..AmqpSettings::default()
        });
        let mut arguments = quorum.queue_arguments();
        assert!(arguments.contains_key("x-queue-type"));
        assert!(arguments.contains_key("x-expires"));
        quorum.dead_letter_to(&mut arguments, "", "jobs.http.dead");
        for key in ["x-dead-letter-strategy", "x-overflow"] {
            assert!(arguments.contains_key(key), "{key}");
        }
        let classic = Topology::new(&AmqpSettings::default());
        let mut arguments = classic.queue_arguments();
        classic.dead_letter_to(&mut arguments, "", "jobs.http.dead");
        let keys: Vec<&str> = arguments.inner().keys().map(ShortString::as_str).collect();
        assert_eq!(
            keys,
            ["x-dead-letter-exchange", "x-dead-letter-routing-key"]
        );
    }

    #[test]
    fn a_list_of_brokers_is_split_and_logged_without_credentials() {
        let list = " amqp://u:secret@rabbit-0:5672/%2f,,amqps://u:secret@rabbit-1/%2f ";
        assert_eq!(
            broker_urls(list),
            [
                "amqp://u:secret@rabbit-0:5672/%2f",
                "amqps://u:secret@rabbit-1/%2f"
            ]
        );
        assert_eq!(Brokers::new(list).len(), 2);
        assert_eq!(Brokers::new("amqp://127.0.0.1/%2f").len(), 1);
        let shown: Vec<String> = broker_urls(list).into_iter().map(broker_address).collect();
        assert_eq!(shown, ["rabbit-0:5672", "rabbit-1:5671"]);
    }

    #[tokio::test]
    async fn connecting_tries_every_broker_and_reports_the_last_failure() {
        // Nothing listens on port 1 of loopback: both are refused at once.
        let brokers = Brokers::new("amqp://127.0.0.1:1/%2f,amqp://127.0.0.1:1/%2f");
        let error = brokers
            .connect(Duration::from_secs(2))
            .await
            .expect_err("no broker answers");
        assert!(matches!(error, AmqpError::Broker(_)), "{error}");
        let none = Brokers::new(",");
        assert!(none.is_empty());
        assert!(matches!(
            none.connect(Duration::from_secs(1)).await,
            Err(AmqpError::Unavailable(_))
        ));
    }
}
