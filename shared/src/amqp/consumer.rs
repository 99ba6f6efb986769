//! Consumer set-up on a broker connection ([`Brokers::consume_jobs`],
//! [`Brokers::consume_status`]), the reconnect loop every consumer session runs in, and
//! [`JobConsumer`]: the one session of a job consumer, shared by the dispatchers and the
//! deliverer (connect, consume, hand each delivery over, stop taking work on shutdown, drain
//! what is in hand under a grace timeout, close).

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{AmqpError, Brokers, Topology, within_setup_time};
use crate::model::Channel;

/// What a consumer session works with.
pub struct Consuming {
    /// The connection (close it with [`super::close`] when the session ends).
    pub connection: Connection,
    /// The channel the consumer runs on.
    pub channel: lapin::Channel,
    /// The deliveries of the queue.
    pub consumer: lapin::Consumer,
}

/// What a consumer declares before it consumes, beside the status path.
#[derive(Clone, Copy)]
enum Declare {
    Status,
    Job(Channel),
    Events,
    Steps,
}

/// How long a consumer gives each broker to take its connection.
const CONSUMER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Brokers {
    /// A consumer of `jobs.<channel>` (see `Brokers::consume`), the channel's queues and the
    /// status path declared first.
    pub async fn consume_jobs(
        &self,
        topology: &Topology,
        channel: Channel,
        prefetch: u16,
    ) -> Result<Consuming, AmqpError> {
        let queue = topology.jobs_queue(channel);
        self.consume(topology, &queue, prefetch, Declare::Job(channel))
            .await
    }

    /// A consumer of `status` (see `Brokers::consume`), the status path declared first.
    pub async fn consume_status(
        &self,
        topology: &Topology,
        prefetch: u16,
    ) -> Result<Consuming, AmqpError> {
        self.consume(
            topology,
            &topology.status_queue(),
            prefetch,
            Declare::Status,
        )
        .await
    }

    /// A consumer of `events` (see `Brokers::consume`), the status path and the events queue
    /// declared first. The queue has a single active consumer: a second one waits.
    pub async fn consume_events(
        &self,
        topology: &Topology,
        prefetch: u16,
    ) -> Result<Consuming, AmqpError> {
        self.consume(
            topology,
            &topology.events_queue(),
            prefetch,
            Declare::Events,
        )
        .await
    }

    /// A consumer of `steps` (see `Brokers::consume`), the status path and the steps queue
    /// declared first.
    pub async fn consume_steps(
        &self,
        topology: &Topology,
        prefetch: u16,
    ) -> Result<Consuming, AmqpError> {
        self.consume(topology, &topology.steps_queue(), prefetch, Declare::Steps)
            .await
    }

    /// Connects (see [`Brokers::connect`]), opens a channel with `prefetch`, declares the
    /// status path (and what `declare` adds) and starts a manual-ack
    /// consumer of `queue`. Setting up on the connection must take less than
    /// [`SETUP_TIMEOUT`], or the attempt fails and the next starts with the next broker.
    async fn consume(
        &self,
        topology: &Topology,
        queue: &str,
        prefetch: u16,
        declare: Declare,
    ) -> Result<Consuming, AmqpError> {
        let connection = self.connect(CONSUMER_CONNECT_TIMEOUT).await?;
        let (channel, consumer) = within_setup_time("setting up a consumer", async {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            match declare {
                Declare::Status => topology.declare_status(&channel).await?,
                Declare::Job(job_channel) => {
                    topology.declare_status(&channel).await?;
                    topology.declare_channel(&channel, job_channel).await?;
                }
                Declare::Events => topology.declare_events(&channel).await?,
                Declare::Steps => topology.declare_steps(&channel).await?,
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

/// What a job consumer does with the work in hand when its connection is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConnectionLost {
    /// Stops it: its jobs can no longer be acked and the broker gives them out again in full,
    /// so stopping keeps what is done twice to what was done already.
    Abort,
    /// Lets it finish within the grace time (its acks fail; the broker gives the jobs out
    /// again, and handling them again is safe).
    Finish,
}

/// A consumer of one channel's jobs (`jobs.<channel>`, manual ack, bounded prefetch).
#[derive(Debug, Clone, Copy)]
pub struct JobConsumer<'a> {
    /// Its name in logs (`dispatcher.http`, `deliverer.jobs`).
    pub name: &'a str,
    /// Where it connects.
    pub brokers: &'a Brokers,
    /// The queues it declares and consumes.
    pub topology: &'a Topology,
    /// The channel whose jobs it takes.
    pub channel: Channel,
    /// Unacknowledged broker messages held at once.
    pub prefetch: u16,
    /// How long the work in hand may take to finish when a session ends.
    pub grace: Duration,
    /// What happens to the work in hand when the connection is lost.
    pub on_lost: OnConnectionLost,
}

impl JobConsumer<'_> {
    /// Consumes until `shutdown`, reconnecting whenever the broker goes away. Each delivery
    /// goes through `take`, awaited one after the other (what must happen in queue order); the
    /// work it returns, if any, runs beside the next deliveries and settles the delivery
    /// (ack, nack or reject) itself.
    pub async fn run<Take, Taken, Work>(&self, shutdown: &CancellationToken, take: Take)
    where
        Take: Fn(Delivery) -> Taken,
        Taken: Future<Output = Option<Work>>,
        Work: Future<Output = ()> + Send + 'static,
    {
        run_with_reconnect(self.name, shutdown, || self.session(shutdown, &take)).await;
        tracing::info!(consumer = self.name, "consumer stopped");
    }

    /// One connection's worth of consuming.
    async fn session<Take, Taken, Work>(
        &self,
        shutdown: &CancellationToken,
        take: &Take,
    ) -> Result<(), AmqpError>
    where
        Take: Fn(Delivery) -> Taken,
        Taken: Future<Output = Option<Work>>,
        Work: Future<Output = ()> + Send + 'static,
    {
        let Consuming {
            connection,
            channel,
            mut consumer,
        } = self
            .brokers
            .consume_jobs(self.topology, self.channel, self.prefetch)
            .await?;
        let mut work = JoinSet::new();
        let ended = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                Some(_) = work.join_next(), if !work.is_empty() => {}
                next = consumer.next() => match next {
                    None => break Ok(()),
                    Some(Err(error)) => break Err(AmqpError::from(error)),
                    Some(Ok(delivery)) => {
                        metrics::counter!("sprayer_amqp_deliveries_total", "queue" => "jobs").increment(1);
                        if let Some(rest) = take(delivery).await {
                            work.spawn(rest);
                        }
                    }
                },
            }
        };
        if shutdown.is_cancelled() {
            let _ = channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await;
        } else if self.on_lost == OnConnectionLost::Abort && !channel.status().connected() {
            tracing::warn!(
                consumer = self.name,
                jobs = work.len(),
                "rabbitmq connection lost; the jobs in hand return to the queue"
            );
            work.abort_all();
        }
        if tokio::time::timeout(self.grace, async {
            while work.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                consumer = self.name,
                "work still running after the grace period; its jobs return to the queue"
            );
            work.abort_all();
        }
        super::close(&connection).await;
        ended
    }
}
