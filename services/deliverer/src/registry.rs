//! The sockets this node holds, by user, and the node's entries in `conn:{app:user}`, which tell
//! the job consumer (on any node) whom to wake, and in `<prefix>ws-nodes`, the live nodes.
//! Entries carry an expiry and are refreshed every third of `deliverer.conn_ttl`; a node that
//! dies stops refreshing and its entries lapse.

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
        /// Counts the push as in flight until the socket has written it (or dropped it).
        ticket: Ticket,
    },
    /// A message was stored with `seq`: a socket whose cursor is below it missed it and reads
    /// the inbox.
    Stored {
        /// Its sequence number.
        seq: i64,
    },
    /// Read the inbox from the cursor on (wake-ups may have been missed).
    CatchUp,
    /// A frame to send as it is: the user's history changed (`state`, `counts`).
    Frame(Arc<str>),
}

/// One live message not yet written by a socket; cloning counts one more, dropping one less.
#[derive(Debug)]
pub struct Ticket(Arc<AtomicUsize>);

impl Ticket {
    /// A ticket counted in `counter`.
    pub fn new(counter: &Arc<AtomicUsize>) -> Ticket {
        counter.fetch_add(1, Ordering::Relaxed);
        Ticket(counter.clone())
    }
}

impl Clone for Ticket {
    fn clone(&self) -> Ticket {
        Ticket::new(&self.0)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Handle {
    id: u64,
    sender: mpsc::Sender<Push>,
}

type UserKey = (AppId, UserId);
type Sockets = HashMap<AppId, HashMap<UserId, Vec<Handle>>>;

/// The sockets of this node.
pub struct Registry {
    node: NodeId,
    redis: RedisConnection,
    conn_ttl: Duration,
    users: Mutex<Sockets>,
    next_id: AtomicU64,
    open: AtomicUsize,
    nodes_key: String,
    in_flight: Arc<AtomicUsize>,
    wakes_seen: AtomicU64,
}

impl Registry {
    /// An empty registry for `node`.
    pub fn new(
        node: NodeId,
        redis: RedisConnection,
        conn_ttl: Duration,
        nodes_key: String,
    ) -> Registry {
        Registry {
            nodes_key,
            node,
            redis,
            conn_ttl,
            users: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            wakes_seen: AtomicU64::new(0),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sockets> {
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
            .entry(app.clone())
            .or_default()
            .entry(user.clone())
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
            let mut sockets = self.lock();
            let mut removed = 0;
            if let Some(users) = sockets.get_mut(app.as_str()) {
                if let Some(handles) = users.get_mut(user.as_str()) {
                    let before = handles.len();
                    handles.retain(|handle| handle.id != id);
                    removed = before - handles.len();
                    if handles.is_empty() {
                        users.remove(user.as_str());
                    }
                }
                if users.is_empty() {
                    sockets.remove(app.as_str());
                }
            }
            removed
        };
        self.closed(removed);
    }

    /// Hands each user's push to every socket of that user (users of `app`); returns how many
    /// sockets were reached. A socket whose buffer is full is dropped from the registry, which
    /// its task sees as "slow consumer".
    pub fn push_all<'a>(
        &self,
        app: &AppId,
        pushes: impl IntoIterator<Item = (&'a UserId, Push)>,
    ) -> usize {
        let mut sockets = self.lock();
        let Some(users) = sockets.get_mut(app.as_str()) else {
            return 0;
        };
        let (mut reached, mut dropped) = (0, 0);
        for (user, push) in pushes {
            let Some(handles) = users.get_mut(user.as_str()) else {
                continue;
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
            reached += handles.len();
            dropped += before - handles.len();
            if handles.is_empty() {
                users.remove(user.as_str());
            }
        }
        if users.is_empty() {
            sockets.remove(app.as_str());
        }
        drop(sockets);
        self.closed(dropped);
        reached
    }

    /// Tells every socket to read its inbox (after the wake-up subscription was lost).
    pub fn catch_up_all(&self) {
        for users in self.lock().values() {
            for handle in users.values().flatten() {
                let _ = handle.sender.try_send(Push::CatchUp);
            }
        }
    }

    /// A ticket for a live message handed to sockets.
    pub fn ticket(&self) -> Ticket {
        Ticket::new(&self.in_flight)
    }

    /// Notes that a wake-up was handed to the sockets.
    pub fn wake_seen(&self) {
        self.wakes_seen.fetch_add(1, Ordering::Relaxed);
    }

    /// Wake-ups handed to the sockets so far.
    pub fn wakes_seen(&self) -> u64 {
        self.wakes_seen.load(Ordering::Relaxed)
    }

    /// Waits (at most `longest`) until this node has taken `wakes` more wake-ups than `since`
    /// and its sockets have written every live message they were handed. The job consumer
    /// waits so before writing inboxes: the live delivery of a broadcast goes first, the
    /// inbox writes, which no socket waits for, after it.
    pub async fn settle(&self, since: u64, wakes: u64, longest: Duration) {
        let deadline = tokio::time::Instant::now() + longest;
        while tokio::time::Instant::now() < deadline {
            if self.wakes_seen() >= since + wakes && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
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

    /// The users this node holds sockets of.
    pub fn users(&self) -> Vec<UserKey> {
        self.lock()
            .iter()
            .flat_map(|(app, users)| users.keys().map(|user| (app.clone(), user.clone())))
            .collect()
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

    /// Lists this node in `<prefix>ws-nodes` until when it is known alive.
    async fn announce(&self, redis: &mut RedisConnection) -> redis::RedisResult<()> {
        let ttl_ms = i64::try_from(self.conn_ttl.as_millis()).unwrap_or(i64::MAX / 4);
        redis::cmd("ZADD")
            .arg(&self.nodes_key)
            .arg(now_ms() + ttl_ms)
            .arg(self.node.as_str())
            .query_async(redis)
            .await
    }

    /// Refreshes this node's entries in `<prefix>ws-nodes` and `conn:` until `shutdown`.
    pub async fn keep_alive(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.conn_ttl / 3).max(Duration::from_millis(200));
        let mut redis = self.redis.clone();
        if let Err(error) = self.announce(&mut redis).await {
            tracing::warn!(%error, "cannot list the node as alive");
        }
        while sprayer_shared::shutdown::sleep_or_cancel(every, &shutdown).await {
            if let Err(error) = self.announce(&mut redis).await {
                tracing::warn!(%error, "cannot list the node as alive");
            }
            for chunk in self.users().chunks(500) {
                if let Err(error) = self.mark(&mut redis, chunk).await {
                    tracing::warn!(%error, "cannot refresh the node's connection entries");
                    break;
                }
            }
        }
    }

    /// Removes this node's entries in `<prefix>ws-nodes` and `conn:` (on a clean stop).
    pub async fn forget_all(&self) {
        let mut redis = self.redis.clone();
        let _ = redis::cmd("ZREM")
            .arg(&self.nodes_key)
            .arg(self.node.as_str())
            .query_async::<()>(&mut redis)
            .await;
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
