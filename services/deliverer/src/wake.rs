//! Wake-ups between nodes, on each node's channel `node:<node_id>`. For a new job the consumer
//! first publishes the message itself to the nodes that hold sockets of its recipients (found in
//! `conn:`), so sockets send it while it is being stored; after storing, it tells any node that
//! was not reached that way (a socket that connected meanwhile) to read the inbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sprayer_shared::model::{AppId, NodeId, UserId};
use sprayer_shared::redis::RedisConnection;
use tokio_util::sync::CancellationToken;

use crate::registry::{Push, Registry};

/// `node:<node_id>`: the pub/sub channel of one node.
pub fn node_channel(node: &str) -> String {
    format!("node:{node}")
}

/// One wake-up: a message with sequence number `seq` for some users of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wake {
    /// The app.
    pub app: AppId,
    /// The message id.
    pub id: String,
    /// The message's sequence number in these users' inboxes.
    pub seq: i64,
    /// The message as JSON; absent when the sockets are only told to read their inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Frames for the users' sockets to send as they are (a change of their history's state),
    /// in place of a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<String>,
    /// The users.
    pub users: Vec<UserId>,
}

/// Wake-ups being gathered for a batch of users: (node, seq) → users.
#[derive(Debug, Default)]
pub struct Wakes {
    by_node: HashMap<(String, i64), Vec<UserId>>,
}

impl Wakes {
    /// Notes that `node` holds sockets of `user`, whose inbox has the message at `seq`.
    pub fn add(&mut self, node: String, user: &UserId, seq: i64) {
        self.by_node
            .entry((node, seq))
            .or_default()
            .push(user.clone());
    }

    /// Wake-ups this will publish to `node`.
    pub fn count_for(&self, node: &str) -> u64 {
        self.by_node.keys().filter(|(to, _)| to == node).count() as u64
    }

    /// Publishes one wake-up per node (and sequence number), carrying `message` when given. A
    /// wake-up lost here only delays delivery until the socket next reads its inbox; the
    /// message is stored.
    pub async fn publish(
        self,
        redis: &mut RedisConnection,
        app: &AppId,
        id: &str,
        message: Option<&str>,
    ) -> redis::RedisResult<()> {
        if self.by_node.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for ((node, seq), users) in self.by_node {
            let wake = Wake {
                app: app.clone(),
                id: id.to_owned(),
                seq,
                message: message.map(str::to_owned),
                frames: Vec::new(),
                users,
            };
            let body = serde_json::to_string(&wake).unwrap_or_default();
            pipe.publish(node_channel(&node), body).ignore();
        }
        pipe.query_async::<()>(redis).await
    }
}

/// Sends `frames` to every socket of `user`, on every node that holds one (found in `conn:`).
/// A frame lost here leaves a socket with old counts until it next asks; nothing is lost.
pub async fn publish_frames(
    redis: &mut RedisConnection,
    app: &AppId,
    user: &UserId,
    frames: Vec<String>,
) -> redis::RedisResult<()> {
    let nodes = crate::inbox::nodes_of(redis, app, std::slice::from_ref(user)).await?;
    let Some(nodes) = nodes.into_iter().next().filter(|nodes| !nodes.is_empty()) else {
        return Ok(());
    };
    let wake = Wake {
        app: app.clone(),
        id: String::new(),
        seq: 0,
        message: None,
        frames,
        users: vec![user.clone()],
    };
    let body = serde_json::to_string(&wake).unwrap_or_default();
    let mut pipe = redis::pipe();
    for node in nodes {
        pipe.publish(node_channel(&node), &body).ignore();
    }
    pipe.query_async::<()>(redis).await
}

/// Listens on this node's channel until `shutdown`, resubscribing after a lost connection
/// (and then telling every socket to read its inbox, as wake-ups may have been missed).
///
/// `servers` holds one client per server in `redis.url`: the one server, or the seed nodes of
/// a Redis Cluster, which passes every `PUBLISH` on to all its nodes, so listening on any one
/// of them is enough. The subscription goes to the first that answers, starting after the one
/// used last: a node that went away is left at once.
pub async fn listen(
    servers: Vec<redis::Client>,
    node: NodeId,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let channel = node_channel(node.as_str());
    let mut backoff = Duration::from_millis(100);
    let mut next = 0;
    while !shutdown.is_cancelled() {
        let mut subscribed = None;
        for offset in 0..servers.len() {
            let index = (next + offset) % servers.len();
            let attempt = async {
                let mut pubsub = servers[index].get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                redis::RedisResult::Ok(pubsub)
            }
            .await;
            match attempt {
                Ok(pubsub) => {
                    next = (index + 1) % servers.len();
                    subscribed = Some((pubsub, index));
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, server = %server_of(&servers[index]), "cannot subscribe to the node's wake-ups");
                }
            }
        }
        let Some((pubsub, index)) = subscribed else {
            tracing::warn!("no server takes the wake-up subscription; retrying");
            if !sprayer_shared::shutdown::sleep_or_cancel(backoff, &shutdown).await {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        };
        backoff = Duration::from_millis(100);
        tracing::info!(channel, server = %server_of(&servers[index]), "listening for wake-ups");
        registry.catch_up_all();
        let mut messages = pubsub.into_on_message();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = messages.next() => match next {
                    None => {
                        tracing::warn!("wake-up subscription lost; resubscribing");
                        break;
                    }
                    Some(message) => deliver(&registry, message.get_payload_bytes()),
                },
            }
        }
    }
}

/// `host:port` of a client's server, for logs (never its credentials).
fn server_of(client: &redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

fn deliver(registry: &Registry, payload: &[u8]) {
    let wake: Wake = match serde_json::from_slice(payload) {
        Ok(wake) => wake,
        Err(error) => {
            tracing::warn!(%error, "unreadable wake-up ignored");
            return;
        }
    };
    if !wake.frames.is_empty() {
        for frame in wake.frames {
            let push = Push::Frame(frame.into());
            registry.push_all(
                &wake.app,
                wake.users.iter().map(|user| (user, push.clone())),
            );
        }
        return;
    }
    let push = match wake.message {
        Some(message) => Push::Entry {
            seq: wake.seq,
            id: wake.id.into(),
            message: message.into(),
            ticket: registry.ticket(),
        },
        None => Push::Stored { seq: wake.seq },
    };
    let reached = registry.push_all(
        &wake.app,
        wake.users.iter().map(|user| (user, push.clone())),
    );
    drop(push);
    registry.wake_seen();
    metrics::counter!("sprayer_ws_wakeups_total").increment(reached as u64);
}
