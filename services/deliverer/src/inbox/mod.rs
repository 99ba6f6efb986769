//! A user's inbox in Redis: the WebSocket messages not yet acknowledged, in storing order, each
//! with its expiry. Every operation is one Lua script over the user's keys, which share the hash
//! tag `{app:user}` (one Redis Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `inbox:{app:user}` | ZSET | message id → sequence number (the inbox order) |
//! | `inbox:{app:user}:m` | HASH | message id → the message as JSON |
//! | `inbox:{app:user}:exp` | ZSET | message id → expiry (Unix ms) |
//! | `inbox:{app:user}:acked` | ZSET | acknowledged message id → expiry: a job delivered twice does not bring it back (pruned on acks) |
//! | `conn:{app:user}` | HASH | deliverer node → until when (Unix ms) it holds sockets of the user |
//! | `hist:{app:user}` | ZSET | message id → sequence number: the last `deliverer.history_max` messages, acknowledged or not |
//! | `hist:{app:user}:m` | HASH | message id → the message as JSON |
//! | `hist:{app:user}:s` | HASH | message id → its state bits (seen 1, read 2, archived 4; none: 0) |
//!
//! On a Redis Cluster each script keeps to one slot: one user's keys, or the one sequence key.
//!
//! A message has one sequence number in every inbox it is stored in, taken per job from
//! `<prefix>ws-seq` (`max(last + 1, now_ms × 1000)` on the Redis clock): jobs are stored one
//! after the other, so sequence order is sending order, across consumer failovers too.

use std::collections::HashMap;

use futures::StreamExt;
use redis::ScriptInvocation;
use redis::cluster_routing::Slot;
use sprayer_shared::model::{AppId, UserId};
use sprayer_shared::redis::RedisConnection;

/// The keys of one user's inbox.
#[derive(Debug, Clone)]
pub struct InboxKeys {
    entries: String,
    messages: String,
    expiries: String,
    acked: String,
    connections: String,
    history: String,
    history_messages: String,
    history_states: String,
}

impl InboxKeys {
    /// The keys of `user` of `app`.
    pub fn new(app: &AppId, user: &UserId) -> InboxKeys {
        let tag = format!("{{{app}:{user}}}");
        InboxKeys {
            entries: format!("inbox:{tag}"),
            messages: format!("inbox:{tag}:m"),
            expiries: format!("inbox:{tag}:exp"),
            acked: format!("inbox:{tag}:acked"),
            connections: connections_key(app, user),
            history: format!("hist:{tag}"),
            history_messages: format!("hist:{tag}:m"),
            history_states: format!("hist:{tag}:s"),
        }
    }
}

/// `conn:{app:user}`: HASH of deliverer node → until when it holds the user's sockets.
pub fn connections_key(app: &AppId, user: &UserId) -> String {
    format!("conn:{{{app}:{user}}}")
}

/// The member of the expiry index for a user: `app:user` (ids hold no `:`).
pub fn due_member(app: &AppId, user: &UserId) -> String {
    format!("{app}:{user}")
}

mod scripts;

use scripts::{ACK, HISTORY, NEXT_SEQ, PURGE, READ, STATE, STORE};

/// What storing one message in one inbox did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Whether the message is (now or already) in the inbox; `false` when it was acknowledged
    /// before (a job delivered twice).
    pub in_inbox: bool,
    /// Whether it was acknowledged before this call (a job delivered twice, or an ack that came
    /// while the job was being stored).
    pub acked_before: bool,
    /// Its sequence number.
    pub seq: i64,
    /// Older messages dropped because the inbox was full.
    pub dropped: Vec<String>,
    /// Nodes that hold sockets of the user.
    pub nodes: Vec<String>,
}

/// One message read from an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: i64,
    /// The message id.
    pub id: String,
    /// The message as JSON.
    pub message: String,
}

/// What a read found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// Messages after the cursor, in order.
    pub entries: Vec<Entry>,
    /// Messages found expired, now removed.
    pub expired: Vec<String>,
    /// The cursor to read on from.
    pub cursor: i64,
    /// Whether more may follow.
    pub more: bool,
}

fn number(text: &str) -> i64 {
    // Scores come back as integers or as doubles in exponent form; both are exact below 2^53.
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|value| value as i64))
        .unwrap_or(0)
}

/// The parts of one message in an inbox.
pub struct NewMessage<'a> {
    /// The message id.
    pub id: &'a str,
    /// The message as JSON.
    pub json: &'a str,
    /// When it expires (Unix ms).
    pub expires_at: i64,
    /// Its sequence number in every inbox (from [`next_seq`]).
    pub seq: i64,
}

/// The next sequence number, from `seq_key` (`<prefix>ws-seq`).
pub async fn next_seq(redis: &mut RedisConnection, seq_key: &str) -> redis::RedisResult<i64> {
    let seq: String = NEXT_SEQ.key(seq_key).invoke_async(redis).await?;
    Ok(number(&seq))
}

/// The nodes listed alive in `nodes_key` (`<prefix>ws-nodes`).
pub async fn live_nodes(
    redis: &mut RedisConnection,
    nodes_key: &str,
) -> redis::RedisResult<Vec<String>> {
    redis::cmd("ZRANGEBYSCORE")
        .arg(nodes_key)
        .arg(sprayer_shared::model::now_ms())
        .arg("+inf")
        .query_async(redis)
        .await
}

/// The nodes that hold sockets of each user (live entries of `conn:`), in one pipeline.
pub async fn nodes_of(
    redis: &mut RedisConnection,
    app: &AppId,
    users: &[UserId],
) -> redis::RedisResult<Vec<Vec<String>>> {
    let mut pipe = redis::pipe();
    for user in users {
        pipe.hgetall(connections_key(app, user));
    }
    // HGETALL as flat lists: node, until, node, until...
    let held: Vec<Vec<String>> = pipe.query_async(redis).await?;
    let now = sprayer_shared::model::now_ms();
    Ok(held
        .into_iter()
        .map(|flat| {
            flat.chunks_exact(2)
                .filter(|pair| pair[1].parse::<i64>().is_ok_and(|until| until > now))
                .map(|pair| pair[0].clone())
                .collect()
        })
        .collect())
}

/// What [`STORE`] answers per user: stored, seq, dropped ids, nodes.
type StoreReply = Vec<(i64, String, Vec<String>, Vec<String>)>;

/// Script calls of one batch in flight at once on a Redis Cluster.
const STORE_CALLS_IN_FLIGHT: usize = 64;

/// How much an inbox and a history keep.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Most messages waiting in an inbox.
    pub inbox: usize,
    /// Most messages in a history (0: none kept).
    pub history: usize,
    /// How long a history is kept after its latest message (ms).
    pub history_ttl_ms: i64,
}

impl Capacity {
    /// The capacities the deliverer's settings give.
    pub fn of(settings: &sprayer_shared::config::DelivererSettings) -> Capacity {
        Capacity {
            inbox: settings.inbox_max,
            history: settings.history_max,
            history_ttl_ms: i64::try_from(settings.history_ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// Stores `message` in each user's inbox and adds each user to the expiry index `due_key`.
/// Results are in the order of `users`.
///
/// On one server: one round trip and one script call for all of them. On a Redis Cluster,
/// where a script may touch the keys of one slot only, one script call per slot (the users
/// whose tags share a slot go together; most users have a slot to themselves), all at once,
/// then one `ZADD` of the index, which is a key of the installation and stays out of the
/// scripts: one command per batch of users, not a load worth spreading.
pub async fn store_many(
    redis: &mut RedisConnection,
    app: &AppId,
    users: &[UserId],
    message: &NewMessage<'_>,
    capacity: Capacity,
    due_key: &str,
) -> redis::RedisResult<Vec<Stored>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let mut due = redis::cmd("ZADD");
    due.arg(due_key).arg("LT");
    for user in users {
        due.arg(message.expires_at).arg(due_member(app, user));
    }
    if redis.is_cluster() {
        let stored = store_by_slot(redis, app, users, message, capacity).await?;
        due.query_async::<()>(redis).await?;
        return Ok(stored);
    }
    let mut pipe = redis::pipe();
    pipe.load_script(&STORE).ignore();
    pipe.invoke_script(&store_invocation(app, users, message, capacity));
    pipe.add_command(due).ignore();
    let (replies,): (StoreReply,) = pipe.query_async(redis).await?;
    Ok(replies.into_iter().map(stored).collect())
}

/// One [`STORE`] call per hash slot of `users`, at once; results in the order of `users`.
async fn store_by_slot(
    redis: &RedisConnection,
    app: &AppId,
    users: &[UserId],
    message: &NewMessage<'_>,
    capacity: Capacity,
) -> redis::RedisResult<Vec<Stored>> {
    let mut by_slot: HashMap<Slot, Vec<usize>> = HashMap::new();
    for (index, user) in users.iter().enumerate() {
        by_slot
            .entry(Slot::for_key(connections_key(app, user)))
            .or_default()
            .push(index);
    }
    let mut results: Vec<Option<Stored>> = vec![None; users.len()];
    let mut calls = futures::stream::iter(by_slot.into_values().map(|indices| {
        let mut redis = redis.clone();
        let these: Vec<UserId> = indices.iter().map(|&index| users[index].clone()).collect();
        let invocation = store_invocation(app, &these, message, capacity);
        async move {
            let replies: StoreReply = invocation.invoke_async(&mut redis).await?;
            redis::RedisResult::Ok((indices, replies))
        }
    }))
    .buffer_unordered(STORE_CALLS_IN_FLIGHT);
    while let Some(call) = calls.next().await {
        let (indices, replies) = call?;
        for (index, reply) in indices.into_iter().zip(replies) {
            results[index] = Some(stored(reply));
        }
    }
    results
        .into_iter()
        .map(|result| {
            result.ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "an inbox write answered for fewer users than it was given",
                ))
            })
        })
        .collect()
}

/// The [`STORE`] call for `users`.
fn store_invocation(
    app: &AppId,
    users: &[UserId],
    message: &NewMessage<'_>,
    capacity: Capacity,
) -> ScriptInvocation<'static> {
    const KEEP_PAST_EXPIRY_MS: i64 = 24 * 3600 * 1000;
    let mut invocation = STORE.prepare_invoke();
    for user in users {
        let keys = InboxKeys::new(app, user);
        invocation
            .key(keys.entries)
            .key(keys.messages)
            .key(keys.expiries)
            .key(keys.acked)
            .key(keys.connections)
            .key(keys.history)
            .key(keys.history_messages)
            .key(keys.history_states);
    }
    invocation
        .arg(message.id)
        .arg(message.json)
        .arg(message.expires_at)
        .arg(capacity.inbox)
        .arg(KEEP_PAST_EXPIRY_MS)
        .arg(message.seq)
        .arg(capacity.history)
        .arg(capacity.history_ttl_ms);
    invocation
}

fn stored((stored, seq, dropped, nodes): (i64, String, Vec<String>, Vec<String>)) -> Stored {
    Stored {
        in_inbox: stored >= 0,
        acked_before: stored < 0,
        seq: number(&seq),
        dropped,
        nodes,
    }
}

/// Reads up to `limit` messages after `cursor`; expired ones are removed and listed apart.
pub async fn read(
    redis: &mut RedisConnection,
    keys: &InboxKeys,
    cursor: i64,
    limit: usize,
) -> redis::RedisResult<Read> {
    type Reply = (Vec<String>, Vec<String>, String, i64);
    let (flat, expired, last, more): Reply = READ
        .key(&keys.entries)
        .key(&keys.messages)
        .key(&keys.expiries)
        .arg(cursor)
        .arg(limit.max(1))
        .invoke_async(redis)
        .await?;
    let entries = flat
        .chunks_exact(3)
        .map(|chunk| Entry {
            seq: number(&chunk[0]),
            id: chunk[1].clone(),
            message: chunk[2].clone(),
        })
        .collect();
    Ok(Read {
        entries,
        expired,
        cursor: number(&last).max(cursor),
        more: more == 1,
    })
}

/// What an ack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acked {
    /// Ids removed from the inbox now.
    pub removed: Vec<String>,
    /// Ids acknowledged before (an ack sent again, from this device or another).
    pub before: Vec<String>,
}

/// Removes acknowledged messages from the inbox.
pub async fn acknowledge(
    redis: &mut RedisConnection,
    keys: &InboxKeys,
    ids: &[String],
) -> redis::RedisResult<Acked> {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    let mut invocation = ACK.key(&keys.entries);
    invocation
        .key(&keys.messages)
        .key(&keys.expiries)
        .key(&keys.acked)
        .arg(DAY_MS);
    for id in ids {
        invocation.arg(id);
    }
    let (removed, before) = invocation.invoke_async(redis).await?;
    Ok(Acked { removed, before })
}

/// The state bit of `seen`.
pub const SEEN: u8 = 1;
/// The state bit of `read` (a read message is also seen).
pub const READ_BIT: u8 = 2;
/// The state bit of `archived`.
pub const ARCHIVED: u8 = 4;

/// Which messages of a history a state change is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// These ids (those not in the history are left out).
    Ids(Vec<String>),
    /// Every message in the history.
    All,
    /// Every message stored before this sequence number.
    Before(i64),
}

/// The unread and unseen counts of a history (archived messages left out), and its size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Not read.
    pub unread: u64,
    /// Not seen.
    pub unseen: u64,
    /// Every message in the history, archived ones too.
    pub total: u64,
}

/// One message whose state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Its id.
    pub id: String,
    /// Its state bits before.
    pub before: u8,
    /// Its state bits now.
    pub after: u8,
}

/// What a state change did: the messages whose state changed and the counts after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateChange {
    /// Each message that changed.
    pub changed: Vec<Changed>,
    /// The counts after the change.
    pub counts: Counts,
    /// Ids asked for that are not in the history: when there are any, nothing changed.
    pub missing: Vec<String>,
}

/// Sets the bits `set` and clears `clear` on `targets`; `(0, 0, Ids([]))` only counts.
pub async fn change_state(
    redis: &mut RedisConnection,
    keys: &InboxKeys,
    set: u8,
    clear: u8,
    targets: &Targets,
) -> redis::RedisResult<StateChange> {
    let mut invocation = STATE.key(&keys.history);
    invocation
        .key(&keys.history_messages)
        .key(&keys.history_states)
        .arg(set)
        .arg(clear);
    match targets {
        Targets::Ids(ids) => {
            invocation.arg("ids").arg(0);
            for id in ids {
                invocation.arg(id);
            }
        }
        Targets::All => {
            invocation.arg("all").arg(0);
        }
        Targets::Before(seq) => {
            invocation.arg("before").arg(*seq);
        }
    }
    let (flat, unread, unseen, total, missing): (Vec<String>, u64, u64, u64, Vec<String>) =
        invocation.invoke_async(redis).await?;
    let changed = flat
        .chunks_exact(3)
        .map(|triple| Changed {
            id: triple[0].clone(),
            before: triple[1].parse().unwrap_or(0),
            after: triple[2].parse().unwrap_or(0),
        })
        .collect();
    Ok(StateChange {
        changed,
        counts: Counts {
            unread,
            unseen,
            total,
        },
        missing,
    })
}

/// One message of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Past {
    /// Its sequence number.
    pub seq: i64,
    /// Its id.
    pub id: String,
    /// The message as JSON.
    pub message: String,
    /// Its state bits.
    pub bits: u8,
}

/// A page of a history, newest first: up to `limit` messages before `cursor` (`None`: from
/// the newest) that pass `filter`; the cursor of the next page when there is one.
pub async fn history(
    redis: &mut RedisConnection,
    keys: &InboxKeys,
    cursor: Option<i64>,
    limit: usize,
    filter: &str,
) -> redis::RedisResult<(Vec<Past>, Option<i64>)> {
    let bound = cursor.map_or_else(|| "+inf".to_owned(), |seq| seq.to_string());
    let (flat, next): (Vec<String>, String) = HISTORY
        .key(&keys.history)
        .key(&keys.history_messages)
        .key(&keys.history_states)
        .arg(bound)
        .arg(limit.max(1))
        .arg(filter)
        .invoke_async(redis)
        .await?;
    let page = flat
        .chunks_exact(4)
        .map(|chunk| Past {
            seq: number(&chunk[0]),
            id: chunk[1].clone(),
            message: chunk[2].clone(),
            bits: chunk[3].parse().unwrap_or(0),
        })
        .collect();
    Ok((page, (!next.is_empty()).then(|| number(&next))))
}

/// Removes expired messages; returns them and the earliest expiry left.
pub async fn purge(
    redis: &mut RedisConnection,
    keys: &InboxKeys,
) -> redis::RedisResult<(Vec<String>, Option<i64>)> {
    let (expired, first): (Vec<String>, String) = PURGE
        .key(&keys.entries)
        .key(&keys.messages)
        .key(&keys.expiries)
        .invoke_async(redis)
        .await?;
    Ok((expired, (!first.is_empty()).then(|| number(&first))))
}

/// The earliest expiry in the inbox, if any.
pub async fn earliest_expiry(
    redis: &mut RedisConnection,
    keys: &InboxKeys,
) -> redis::RedisResult<Option<i64>> {
    let first: Vec<String> = redis::cmd("ZRANGE")
        .arg(&keys.expiries)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query_async(redis)
        .await?;
    Ok(first.get(1).map(|score| number(score)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_in_both_forms() {
        assert_eq!(number("1763790000000000"), 1_763_790_000_000_000);
        assert_eq!(number("1.763790000000001e+15"), 1_763_790_000_000_001);
        assert_eq!(number("0"), 0);
    }
}
