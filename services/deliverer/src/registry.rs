//! The sockets this node holds, by user, and the node's entries in `conn:{app:user}`, which tell
//! the job consumer (on any node) whom to wake. Entries carry an expiry and are refreshed every
//! third of `deliverer.conn_ttl`; a node that dies stops refreshing and its entries lapse.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use sprayer_shared::model::{AppId, NodeId, UserId, now_ms};
use sprayer_shared::redis::RedisConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::inbox::connections_key;

/// What a socket is told.
#[derive(Debug, Clone)]
pub enum Push {
    /// A message being stored in the user's inbox with `seq`: a socket whose cursor is below
    /// it sends it as is.
    Entry {
        /// Its sequence number.
        seq: i64,
        /// Its id.
        id: Arc<str>,
        /// The message as JSON.
        message: Arc<str>,
    },
    /// A message was stored with `seq`: a socket whose cursor is below it missed it and reads
    /// the inbox.
    Stored {
        /// Its sequence number.
        seq: i64,
    },
    /// Read the inbox from the cursor on (wake-ups may have been missed).
    CatchUp,
}

struct Handle {
    id: u64,
    sender: mpsc::Sender<Push>,
}

type UserKey = (AppId, UserId);

/// The sockets of this node.
pub struct Registry {
    node: NodeId,
    redis: RedisConnection,
    conn_ttl: Duration,
    users: Mutex<HashMap<UserKey, Vec<Handle>>>,
    next_id: AtomicU64,
    open: AtomicUsize,
}

impl Registry {
    /// An empty registry for `node`.
    pub fn new(node: NodeId, redis: RedisConnection, conn_ttl: Duration) -> Registry {
        Registry {
            node,
            redis,
            conn_ttl,
            users: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserKey, Vec<Handle>>> {
        // A panic while holding the lock cannot leave the map half-changed: use it as is.
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a socket of `user` and marks this node in `conn:`; returns the socket's id.
    pub async fn register(
        &self,
        app: &AppId,
        user: &UserId,
        sender: mpsc::Sender<Push>,
    ) -> redis::RedisResult<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry((app.clone(), user.clone()))
            .or_default()
            .push(Handle { id, sender });
        self.opened(1);
        let mut redis = self.redis.clone();
        let marked = self.mark(&mut redis, &[(app.clone(), user.clone())]).await;
        if let Err(error) = marked {
            self.unregister(app, user, id);
            return Err(error);
        }
        Ok(id)
    }

    /// Removes a socket. Its `conn:` entry is left to lapse: a wake-up for a user who left
    /// costs nothing, while removing it could race with the same user connecting again.
    pub fn unregister(&self, app: &AppId, user: &UserId, id: u64) {
        let removed = {
            let mut users = self.lock();
            let key = (app.clone(), user.clone());
            let mut removed = 0;
            if let Some(handles) = users.get_mut(&key) {
                let before = handles.len();
                handles.retain(|handle| handle.id != id);
                removed = before - handles.len();
                if handles.is_empty() {
                    users.remove(&key);
                }
            }
            removed
        };
        self.closed(removed);
    }

    /// Hands `push` to every socket of `user`. A socket whose buffer is full is dropped from
    /// the registry, which its task sees as "slow consumer".
    pub fn push(&self, app: &AppId, user: &UserId, push: &Push) -> usize {
        let mut users = self.lock();
        let key = (app.clone(), user.clone());
        let Some(handles) = users.get_mut(&key) else {
            return 0;
        };
        let before = handles.len();
        handles.retain(|handle| match handle.sender.try_send(push.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("sprayer_ws_slow_consumers_total").increment(1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        let reached = handles.len();
        if handles.is_empty() {
            users.remove(&key);
        }
        drop(users);
        self.closed(before - reached);
        reached
    }

    /// Tells every socket to read its inbox (after the wake-up subscription was lost).
    pub fn catch_up_all(&self) {
        for handles in self.lock().values() {
            for handle in handles {
                let _ = handle.sender.try_send(Push::CatchUp);
            }
        }
    }

    /// Sockets open on this node.
    pub fn sockets(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn opened(&self, count: usize) {
        let now = self.open.fetch_add(count, Ordering::Relaxed) + count;
        metrics::gauge!("sprayer_ws_sockets").set(now as f64);
    }

    fn closed(&self, count: usize) {
        if count > 0 {
            let now = self.open.fetch_sub(count, Ordering::Relaxed) - count;
            metrics::gauge!("sprayer_ws_sockets").set(now as f64);
        }
    }

    fn users(&self) -> Vec<UserKey> {
        self.lock().keys().cloned().collect()
    }

    async fn mark(&self, redis: &mut RedisConnection, users: &[UserKey]) -> redis::RedisResult<()> {
        let ttl_ms = i64::try_from(self.conn_ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let until = now_ms() + ttl_ms;
        let mut pipe = redis::pipe();
        for (app, user) in users {
            let key = connections_key(app, user);
            pipe.hset(&key, self.node.as_str(), until).ignore();
            pipe.pexpire(&key, ttl_ms * 2).ignore();
        }
        pipe.query_async::<()>(redis).await
    }

    /// Refreshes this node's `conn:` entries until `shutdown`, then removes them.
    pub async fn keep_alive(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.conn_ttl / 3).max(Duration::from_millis(200));
        let mut redis = self.redis.clone();
        while sprayer_shared::shutdown::sleep_or_cancel(every, &shutdown).await {
            for chunk in self.users().chunks(500) {
                if let Err(error) = self.mark(&mut redis, chunk).await {
                    tracing::warn!(%error, "cannot refresh the node's connection entries");
                    break;
                }
            }
        }
    }

    /// Removes this node's `conn:` entries (on a clean stop).
    pub async fn forget_all(&self) {
        let mut redis = self.redis.clone();
        for chunk in self.users().chunks(500) {
            let mut pipe = redis::pipe();
            for (app, user) in chunk {
                pipe.hdel(connections_key(app, user), self.node.as_str())
                    .ignore();
            }
            if let Err(error) = pipe.query_async::<()>(&mut redis).await {
                tracing::warn!(%error, "cannot remove the node's connection entries; they lapse");
                return;
            }
        }
    }
}
