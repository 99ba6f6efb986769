//! Consumer set-up on a broker connection ([`Brokers::consume_jobs`],
//! [`Brokers::consume_status`]) and the reconnect loop every consumer session runs in.

use std::future::Future;
use std::time::{Duration, Instant};

use lapin::Connection;
use lapin::options::BasicQosOptions;
use lapin::types::FieldTable;
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
        self.consume(topology, &queue, prefetch, Some(channel))
            .await
    }

    /// A consumer of `status` (see `Brokers::consume`), the status path declared first.
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
