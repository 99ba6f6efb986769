//! What every socket of a node shares.

use std::sync::Arc;

use secrecy::SecretString;
use sprayer_shared::Settings;
use sprayer_shared::redis::RedisConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use crate::reporter::Reporter;

/// A node's shared state.
pub struct Hub {
    /// The settings.
    pub settings: Arc<Settings>,
    /// The secret tokens are checked with.
    pub token_secret: Option<SecretString>,
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
}
