//! Presence across every deliverer node: `pres:{app:user}` (a HASH) holds, per node, how many
//! sockets of the user it has (`n:<node>`) and until when that count is known alive
//! (`u:<node>`, refreshed with the node's `conn:` entries), plus whether the user is online
//! (`online`) and since when (`since`).
//!
//! The user's first socket on any node makes `user.online`. When the last one closes, the user
//! is put in `<prefix>presence-offline` (a ZSET) due `deliverer.presence_debounce` later; a
//! socket that opens before then takes the user out again, so a reconnect makes no event.
//! Every node's sweeper settles the due ones: whichever flips `online` off emits
//! `user.offline`, once. A node that dies stops refreshing its counts: `<prefix>presence-expiry`
//! (a ZSET of users by when their counts lapse) lets the sweeper settle them too.
//!
//! Presence never holds a socket up: its Redis calls have a short deadline, and its events are
//! published beside the socket's work.

use std::sync::Arc;
use std::time::Duration;

use sprayer_shared::amqp::Publisher;
use sprayer_shared::feed::rfc3339_ms;
use sprayer_shared::model::{
    AppEvent, AppId, EventType, NodeId, UserId, UserOfflineData, UserOnlineData, event_id, now_ms,
};
use sprayer_shared::redis::{RedisConnection, presence_key};
use tokio_util::sync::CancellationToken;

/// The longest a socket waits on presence bookkeeping.
const DEADLINE: Duration = Duration::from_secs(1);
/// Presence events waiting to be published; past it an event is published on its own.
const EVENT_QUEUE: usize = 10_000;
/// Most presence events in one published batch.
const EVENT_BATCH: usize = 500;
/// How long a batch of presence events gathers after its first.
const EVENT_GATHER: Duration = Duration::from_millis(50);
/// Users settled per sweep round trip.
const SWEEP_BATCH: isize = 200;

/// Counts this node's change `ARGV[2]` (+1, -1 or 0) of a user's sockets, drops the counts of
/// nodes whose time ran out, and says where the user stands: `{state, since, sockets, nodes}`
/// with state `online` (just came online), `on` (was online already), `empty` (online, but no
/// live socket is left), `offline` (settled: it just went offline; only with ARGV[6] = 1) or
/// `off`.
const CHANGE: &str = r"
local key, node = KEYS[1], ARGV[1]
local delta, now, alive, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local settle = ARGV[6] == '1'
if delta ~= 0 then
  local n = redis.call('HINCRBY', key, 'n:' .. node, delta)
  if n <= 0 then
    redis.call('HDEL', key, 'n:' .. node, 'u:' .. node)
  else
    redis.call('HSET', key, 'u:' .. node, alive)
  end
end
local all = redis.call('HGETALL', key)
local fields = {}
for i = 1, #all, 2 do fields[all[i]] = all[i + 1] end
local sockets, nodes = 0, 0
for field, value in pairs(fields) do
  if string.sub(field, 1, 2) == 'n:' then
    local name = string.sub(field, 3)
    if tonumber(fields['u:' .. name] or '0') > now then
      sockets = sockets + tonumber(value)
      nodes = nodes + 1
    else
      redis.call('HDEL', key, field, 'u:' .. name)
    end
  end
end
local online = fields['online'] == '1'
local since = tonumber(fields['since'] or '0')
if sockets > 0 then
  redis.call('PEXPIRE', key, ttl)
  if not online then
    redis.call('HSET', key, 'online', '1', 'since', now)
    return {'online', now, sockets, nodes}
  end
  return {'on', since, sockets, nodes}
end
if online and not settle then
  redis.call('PEXPIRE', key, ttl)
  return {'empty', since, 0, 0}
end
redis.call('DEL', key)
if online then return {'offline', since, 0, 0} end
return {'off', 0, 0, 0}
";

/// What a change or a settle found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Standing {
    state: String,
    since: i64,
    sockets: i64,
    nodes: i64,
}

/// Presence bookkeeping of this node.
pub struct Presence {
    redis: RedisConnection,
    node: NodeId,
    debounce: Duration,
    conn_ttl: Duration,
    offline_key: String,
    expiry_key: String,
    publisher: Arc<Publisher>,
    script: redis::Script,
    events: tokio::sync::mpsc::Sender<AppEvent>,
}

/// Publishes presence events in batches, in the order they came: a burst of sockets opening
/// costs a few broker messages, not one publish (and one task) per socket.
async fn publish_batches(
    publisher: Arc<Publisher>,
    mut events: tokio::sync::mpsc::Receiver<AppEvent>,
) {
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + EVENT_GATHER;
        while batch.len() < EVENT_BATCH {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(error) = publisher.publish_app_events(batch).await {
            tracing::warn!(%error, "cannot publish presence events");
        }
    }
}

fn member(app: &AppId, user: &UserId) -> String {
    format!("{app}:{user}")
}

fn parse_member(member: &str) -> Option<(AppId, UserId)> {
    let (app, user) = member.split_once(':')?;
    Some((AppId::parse(app).ok()?, UserId::parse(user).ok()?))
}

impl Presence {
    /// Presence for `node`, with keys under `prefix` (the queue prefix).
    pub fn new(
        redis: RedisConnection,
        node: NodeId,
        settings: &sprayer_shared::Settings,
        publisher: Arc<Publisher>,
    ) -> Presence {
        Presence {
            redis,
            node,
            debounce: settings.deliverer.presence_debounce,
            conn_ttl: settings.deliverer.conn_ttl,
            offline_key: format!("{}presence-offline", settings.amqp.prefix),
            expiry_key: format!("{}presence-expiry", settings.amqp.prefix),
            script: redis::Script::new(CHANGE),
            events: {
                let (sender, receiver) = tokio::sync::mpsc::channel(EVENT_QUEUE);
                tokio::spawn(publish_batches(publisher.clone(), receiver));
                sender
            },
            publisher,
        }
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.conn_ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    async fn change(
        &self,
        app: &AppId,
        user: &UserId,
        delta: i64,
        settle: bool,
    ) -> redis::RedisResult<Standing> {
        let now = now_ms();
        let mut redis = self.redis.clone();
        let (state, since, sockets, nodes): (String, i64, i64, i64) = self
            .script
            .key(presence_key(app, user))
            .arg(self.node.as_str())
            .arg(delta)
            .arg(now)
            .arg(now + self.ttl_ms())
            .arg(self.ttl_ms() * 2)
            .arg(if settle { "1" } else { "0" })
            .invoke_async(&mut redis)
            .await?;
        Ok(Standing {
            state,
            since,
            sockets,
            nodes,
        })
    }

    /// A socket of `user` opened on this node.
    pub async fn opened(&self, app: &AppId, user: &UserId) {
        let work = async {
            let standing = self.change(app, user, 1, false).await?;
            let mut redis = self.redis.clone();
            let mut pipe = redis::pipe();
            pipe.zrem(&self.offline_key, member(app, user)).ignore();
            pipe.cmd("ZADD")
                .arg(&self.expiry_key)
                .arg("GT")
                .arg(now_ms() + self.ttl_ms())
                .arg(member(app, user))
                .ignore();
            pipe.query_async::<()>(&mut redis).await?;
            redis::RedisResult::Ok(standing)
        };
        match tokio::time::timeout(DEADLINE, work).await {
            Ok(Ok(standing)) if standing.state == "online" => {
                self.publish(app, user, EventType::UserOnline, &standing);
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot count a socket for presence"),
            Err(_) => tracing::warn!("presence bookkeeping timed out"),
        }
    }

    /// A socket of `user` closed on this node.
    pub async fn closed(&self, app: &AppId, user: &UserId) {
        let work = async {
            let standing = self.change(app, user, -1, false).await?;
            if standing.state == "empty" {
                let due = now_ms() + i64::try_from(self.debounce.as_millis()).unwrap_or(0);
                let mut redis = self.redis.clone();
                redis::cmd("ZADD")
                    .arg(&self.offline_key)
                    .arg("NX")
                    .arg(due)
                    .arg(member(app, user))
                    .query_async::<()>(&mut redis)
                    .await?;
            }
            redis::RedisResult::Ok(())
        };
        match tokio::time::timeout(DEADLINE, work).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot count a closed socket for presence"),
            Err(_) => tracing::warn!("presence bookkeeping timed out"),
        }
    }

    /// Keeps this node's counts of `users` alive (with the node's `conn:` entries).
    pub async fn refresh(&self, users: &[(AppId, UserId)]) -> redis::RedisResult<()> {
        let alive = now_ms() + self.ttl_ms();
        let mut pipe = redis::pipe();
        for (app, user) in users {
            let key = presence_key(app, user);
            pipe.hset(&key, format!("u:{}", self.node), alive).ignore();
            pipe.pexpire(&key, self.ttl_ms() * 2).ignore();
            pipe.cmd("ZADD")
                .arg(&self.expiry_key)
                .arg("GT")
                .arg(alive)
                .arg(member(app, user))
                .ignore();
        }
        let mut redis = self.redis.clone();
        pipe.query_async(&mut redis).await
    }

    /// Refreshes this node's counts of the users it holds sockets of, every third of
    /// `deliverer.conn_ttl`, until `shutdown`.
    pub async fn keep_alive(
        self: Arc<Self>,
        registry: Arc<crate::registry::Registry>,
        shutdown: CancellationToken,
    ) {
        let every = (self.conn_ttl / 3).max(Duration::from_millis(200));
        while sprayer_shared::shutdown::sleep_or_cancel(every, &shutdown).await {
            for chunk in registry.users().chunks(500) {
                if let Err(error) = self.refresh(chunk).await {
                    tracing::warn!(%error, "cannot refresh the node's presence counts");
                    break;
                }
            }
        }
    }

    /// Settles, every `every` until `shutdown`, the users due to go offline and those whose
    /// counts lapsed (a node died).
    pub async fn sweep(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        while sprayer_shared::shutdown::sleep_or_cancel(every, &shutdown).await {
            if let Err(error) = self.sweep_once().await {
                tracing::warn!(%error, "cannot settle presence");
            }
        }
    }

    async fn due(&self, key: &str) -> redis::RedisResult<Vec<String>> {
        let mut redis = self.redis.clone();
        redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(now_ms())
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH)
            .query_async(&mut redis)
            .await
    }

    /// One round: returns how many users it settled.
    pub async fn sweep_once(&self) -> redis::RedisResult<usize> {
        let mut settled = 0;
        for due in self.due(&self.offline_key).await? {
            let mut redis = self.redis.clone();
            // Whoever takes the entry settles it.
            let taken: i64 = redis::cmd("ZREM")
                .arg(&self.offline_key)
                .arg(&due)
                .query_async(&mut redis)
                .await?;
            let Some((app, user)) = parse_member(&due) else {
                continue;
            };
            if taken == 1 {
                let standing = self.change(&app, &user, 0, true).await?;
                if standing.state == "offline" {
                    self.publish(&app, &user, EventType::UserOffline, &standing);
                    settled += 1;
                }
            }
        }
        for lapsed in self.due(&self.expiry_key).await? {
            let mut redis = self.redis.clone();
            let taken: i64 = redis::cmd("ZREM")
                .arg(&self.expiry_key)
                .arg(&lapsed)
                .query_async(&mut redis)
                .await?;
            let Some((app, user)) = parse_member(&lapsed) else {
                continue;
            };
            if taken == 1 && self.change(&app, &user, 0, false).await?.state == "empty" {
                // No node holds a live socket of the user any more: offline once debounced.
                redis::cmd("ZADD")
                    .arg(&self.offline_key)
                    .arg("NX")
                    .arg(now_ms())
                    .arg(&lapsed)
                    .query_async::<()>(&mut redis)
                    .await?;
            }
        }
        Ok(settled)
    }

    /// Publishes a presence event beside the caller's work.
    fn publish(&self, app: &AppId, user: &UserId, kind: EventType, standing: &Standing) {
        let now = now_ms();
        let data = match kind {
            EventType::UserOnline => serde_json::to_value(UserOnlineData {
                user: user.as_str().to_owned(),
                since: rfc3339_ms(standing.since),
                sockets: standing.sockets,
                nodes: standing.nodes,
            }),
            _ => serde_json::to_value(UserOfflineData {
                user: user.as_str().to_owned(),
                online_since: rfc3339_ms(standing.since),
                offline_at: rfc3339_ms(now),
            }),
        }
        .unwrap_or_default();
        let event = AppEvent {
            app: app.clone(),
            kind,
            id: event_id(&[
                kind.as_str(),
                app.as_str(),
                user.as_str(),
                &standing.since.to_string(),
            ]),
            at: now,
            data,
        };
        metrics::counter!("sprayer_presence_events_total", "type" => kind.as_str()).increment(1);
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(event)) =
            self.events.try_send(event)
        {
            let publisher = self.publisher.clone();
            tokio::spawn(async move {
                if let Err(error) = publisher.publish_app_events(vec![event]).await {
                    tracing::warn!(%error, "cannot publish a presence event");
                }
            });
        }
    }
}
