//! RabbitMQ. [`topology`]: the exchanges and queues, declared idempotently by every service;
//! [`envelope`]: what goes into a broker message ([`Outgoing`]); [`brokers`]: `amqp.url`'s one
//! broker or cluster nodes, tried in turn, with their TLS; [`publisher`]: a confirming publisher
//! that reconnects on demand; [`committer`]: group commit, what concurrent callers publish to one
//! place in one broker message; [`consumer`]: consumer set-up and the reconnect loop every
//! consumer runs in.
//!
//! ```text
//! <p>sprayer.jobs (direct) ──<channel>──► <p>jobs.<channel> ──rejected──► <p>jobs.<channel>.dead
//! <p>jobs.<channel>.retry.<delay> (TTL) ──expired──► <p>sprayer.jobs ──<channel>──► <p>jobs.<channel>
//! <p>sprayer.status (direct) ──status──► <p>status ──rejected──► <p>status.dead
//! ```

use std::future::Future;
use std::time::Duration;

use lapin::Connection;

pub mod brokers;
pub mod committer;
pub mod consumer;
pub mod envelope;
pub mod publisher;
pub mod topology;

pub use brokers::{Brokers, broker_address, connect};
pub use consumer::{
    Consuming, JobConsumer, OnConnectionLost, RECONNECT_BACKOFF_MAX, run_with_reconnect,
};
pub use envelope::{JOB_BATCH_KIND, Outgoing, STATUS_ROUTING_KEY};
pub use publisher::Publisher;
pub use topology::Topology;

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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A message could not be encoded: a bug, not an outage.
    #[error("cannot encode a message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// How long a broker may take to set up a consumer or a publisher on a new connection (open
/// channels, declare the topology, start consuming). A node that takes the connection but does
/// not answer (one shutting down, or a cluster still choosing new queue leaders) fails the
/// attempt, and the next one starts with the next broker.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long closing a connection may take at the end of a session (the broker may be gone).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `setup` within [`SETUP_TIMEOUT`]; `what` names the step in the error.
pub(crate) async fn within_setup_time<T>(
    what: &'static str,
    setup: impl Future<Output = Result<T, AmqpError>>,
) -> Result<T, AmqpError> {
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .unwrap_or(Err(AmqpError::Timeout(what)))
}

/// Closes `connection`, giving the broker [`CLOSE_TIMEOUT`] to answer.
pub async fn close(connection: &Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "bye".into())).await;
}
