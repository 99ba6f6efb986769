//! What every socket of a node shares.

use std::sync::Arc;

use sprayer_shared::Settings;
use sprayer_shared::amqp::{AmqpError, Publisher};
use sprayer_shared::model::{DeliveryEvent, StatusBatch};
use sprayer_shared::redis::RedisConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use crate::reporter::Reporter;

/// A node's shared state.
pub struct Hub {
    /// The settings.
    pub settings: Arc<Settings>,
    /// Inboxes.
    pub redis: RedisConnection,
    /// This node's sockets.
    pub registry: Arc<Registry>,
    /// Feedback.
    pub reporter: Reporter,
    /// Cancelled when the node stops: sockets are told to reconnect elsewhere.
    pub draining: CancellationToken,
    /// Every open socket, so that stopping waits for them.
    pub tracker: TaskTracker,
    /// Publishes feedback that must be confirmed before the client is answered.
    pub publisher: Arc<Publisher>,
    /// Presence across nodes.
    pub presence: Arc<crate::presence::Presence>,
}

impl Hub {
    /// Publishes `events` as one status batch and waits for the broker's confirm.
    pub async fn publish_events(&self, events: Vec<DeliveryEvent>) -> Result<(), AmqpError> {
        if events.is_empty() {
            return Ok(());
        }
        events.iter().for_each(crate::reporter::count);
        let batch = StatusBatch {
            messages: Vec::new(),
            deliveries: events,
            app_events: Vec::new(),
            steps: Vec::new(),
        };
        let message = self.publisher.topology().status_message(&batch)?;
        self.publisher.publish(message).await
    }
}
