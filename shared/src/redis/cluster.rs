//! A Redis Cluster connection that replaces itself when it stops answering, as the connection
//! manager does for one server.
//!
//! The redis crate's cluster connection routes every request through one background task, which
//! also reconnects nodes and refreshes the slot map. Seen in the tests here (redis 1.8.1): a node
//! stopped under load, the task started a slot refresh that never finished, and every request
//! after it timed out, also long after the node was back and the cluster healthy. So a request
//! that times out or finds the connection gone has a fresh connection made (at most one at a
//! time, at most one per [`REPLACE_PAUSE`]); requests after it use the new one and the old one
//! goes when its last request ends. The request itself still fails: its caller retries as after
//! any Redis error (a 503, a requeued job).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::RedisResult;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

/// The least time between two replacements.
const REPLACE_PAUSE: Duration = Duration::from_secs(5);
/// How long making a replacement may take.
const REPLACE_TIMEOUT: Duration = Duration::from_secs(15);

/// A cluster connection and what it takes to make another; clone it freely.
#[derive(Clone)]
pub struct ClusterManager {
    shared: Arc<Shared>,
}

struct Shared {
    client: ClusterClient,
    current: RwLock<ClusterConnection>,
    replacing: AtomicBool,
    last_replaced: Mutex<Option<Instant>>,
}

impl ClusterManager {
    /// Connects through the client's seed nodes.
    pub async fn connect(client: ClusterClient) -> RedisResult<ClusterManager> {
        let connection = client.get_async_connection().await?;
        Ok(ClusterManager {
            shared: Arc::new(Shared {
                client,
                current: RwLock::new(connection),
                replacing: AtomicBool::new(false),
                last_replaced: Mutex::new(None),
            }),
        })
    }

    /// The connection to send on now.
    pub fn connection(&self) -> ClusterConnection {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks at a request's outcome: a timeout or a lost connection has the connection
    /// replaced in the background.
    pub fn observe<T>(&self, outcome: &RedisResult<T>) {
        let Err(error) = outcome else { return };
        if !(error.is_timeout() || error.is_connection_dropped()) {
            return;
        }
        if self.shared.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.shared.clone();
        let reason = error.to_string();
        tokio::spawn(async move {
            let last = *shared
                .last_replaced
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = last {
                tokio::time::sleep(REPLACE_PAUSE.saturating_sub(last.elapsed())).await;
            }
            let made =
                tokio::time::timeout(REPLACE_TIMEOUT, shared.client.get_async_connection()).await;
            match made {
                Ok(Ok(connection)) => {
                    *shared
                        .current
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = connection;
                    metrics::counter!("sprayer_redis_reconnects_total").increment(1);
                    tracing::warn!(error = %reason, "redis cluster connection replaced after a failed request");
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot replace the redis cluster connection; keeping it");
                }
                Err(_) => {
                    tracing::warn!("replacing the redis cluster connection timed out; keeping it");
                }
            }
            *shared
                .last_replaced
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            shared.replacing.store(false, Ordering::Release);
        });
    }
}
