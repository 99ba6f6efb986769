//! Durable timers and escalation state in Redis, shared by the accepter (which plans and cancels
//! messages) and the scheduler (which claims due timers and runs the steps).
//!
//! Timers live in [`SHARDS`] sorted sets, `<prefix>{orch<n>}:timers` (timer id → due time, Unix
//! ms), with their payloads beside them in `<prefix>{orch<n>}:items`. A message's timers and
//! its state all go to the shard of its id, under the same hash tag, so every script that
//! moves a user along a chain and adds or acks its timers is atomic, on a Redis Cluster too;
//! the shards spread messages over a cluster's nodes.
//!
//! A replica claims due timers by moving their due time to the end of a lease
//! (`scheduler.claim_lease`), does their work, and acks them (removes them, and remembers them
//! as fired so they are never added again). A replica that dies between the claim and the ack
//! leaves the timer to come due again when the lease ends, on any replica: timers fire at least
//! once, and twice only when a replica dies after a timer's work was published and before its
//! ack.

pub mod scripts;

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{AppId, MessageId, Plan, StepRecord, StepState, UserId, now_ms};
use crate::redis::RedisConnection;

/// How many timer shards there are. Fixed: it must not change while timers are pending.
pub const SHARDS: u16 = 16;

/// How long a message's state outlives its expiry, for late outcomes and cancellations.
pub const KEEP_AFTER_EXPIRY_MS: i64 = 3_600_000;

/// The shard of a message (FNV-1a of its id).
pub fn shard_of(message: &MessageId) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in message.as_str().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    u16::try_from(hash % u32::from(SHARDS)).unwrap_or(0)
}

/// The key names; see the book's Redis keys page.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// The keys of one message, all in its shard's hash slot.
#[derive(Debug, Clone)]
pub struct MessageKeys {
    /// STRING: the [`Plan`] as JSON.
    pub plan: String,
    /// HASH: `cancelled`, `started:<step>` counts (created when the message begins or is
    /// cancelled).
    pub state: String,
    /// HASH: user → chain state (see [`scripts`]).
    pub users: String,
    /// HASH: `<step>:<user>` → that step's deliveries not yet failed.
    pub remaining: String,
    /// SET: users the app cancelled.
    pub cancelled: String,
    /// SET: the message's pending timers.
    pub mine: String,
    /// SET: the message's timers that fired.
    pub fired: String,
    /// SET: deliveries counted as failed for good (`<step>:<delivery id>`).
    pub failed: String,
    /// The shard's timers.
    pub timers: String,
    /// The shard's timer payloads.
    pub items: String,
}

impl Keys {
    /// The keys of an installation whose global keys start with `prefix` (`amqp.prefix`).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// ZSET: timer id → due (Unix ms).
    pub fn timers(&self, shard: u16) -> String {
        format!("{}{{orch{shard}}}:timers", self.prefix)
    }

    /// HASH: timer id → payload.
    pub fn items(&self, shard: u16) -> String {
        format!("{}{{orch{shard}}}:items", self.prefix)
    }

    /// The keys of `message`.
    pub fn message(&self, message: &MessageId) -> MessageKeys {
        let shard = shard_of(message);
        let base = format!("{}{{orch{shard}}}:m:{message}", self.prefix);
        MessageKeys {
            plan: format!("{base}:plan"),
            state: format!("{base}:state"),
            users: format!("{base}:users"),
            remaining: format!("{base}:remaining"),
            cancelled: format!("{base}:cancelled"),
            mine: format!("{base}:timers"),
            fired: format!("{base}:fired"),
            failed: format!("{base}:failed"),
            timers: self.timers(shard),
            items: self.items(shard),
        }
    }
}

/// `ckey:<app>:<key>`: SET, the messages sent with a cancellation key.
pub fn cancel_key_key(app: &AppId, key: &str) -> String {
    format!("ckey:{app}:{key}")
}

/// `policy:<app>`: HASH, policy name → its steps as JSON.
pub fn policies_key(app: &AppId) -> String {
    format!("policy:{app}")
}

/// What a timer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// A message comes due: its first step begins for everyone.
    Start(MessageId),
    /// A step begins for the users of the payload.
    Run {
        /// The message.
        message: MessageId,
        /// The step.
        step: usize,
        /// Which batch of the step (unique within it).
        batch: String,
    },
    /// A step's wait ended for the users of the payload.
    Deadline {
        /// The message.
        message: MessageId,
        /// The step.
        step: usize,
        /// Which batch of the step.
        batch: String,
    },
}

impl Timer {
    /// The message the timer belongs to.
    pub fn message(&self) -> &MessageId {
        match self {
            Timer::Start(message)
            | Timer::Run { message, .. }
            | Timer::Deadline { message, .. } => message,
        }
    }

    /// Parses a timer id.
    pub fn parse(id: &str) -> Option<Timer> {
        let mut parts = id.split('|');
        let kind = parts.next()?;
        let message = MessageId::parse(parts.next()?).ok()?;
        match kind {
            "s" => Some(Timer::Start(message)),
            "r" | "d" => {
                let step = parts.next()?.parse().ok()?;
                let batch = parts.next()?.to_owned();
                Some(if kind == "r" {
                    Timer::Run {
                        message,
                        step,
                        batch,
                    }
                } else {
                    Timer::Deadline {
                        message,
                        step,
                        batch,
                    }
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for Timer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timer::Start(message) => write!(formatter, "s|{message}"),
            Timer::Run {
                message,
                step,
                batch,
            } => write!(formatter, "r|{message}|{step}|{batch}"),
            Timer::Deadline {
                message,
                step,
                batch,
            } => write!(formatter, "d|{message}|{step}|{batch}"),
        }
    }
}

/// When a message's keys expire (Unix ms).
pub fn keys_expire_at(plan: &Plan) -> i64 {
    plan.expires_at.saturating_add(KEEP_AFTER_EXPIRY_MS)
}

/// Stores a plan and its start timer, and indexes its cancellation key. Returns false if the
/// message was planned already.
pub async fn plan(
    redis: &mut RedisConnection,
    keys: &Keys,
    plan: &Plan,
) -> redis::RedisResult<bool> {
    let json = serde_json::to_string(plan).map_err(|error| {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "cannot encode a plan",
            error.to_string(),
        ))
    })?;
    let message = keys.message(&plan.id);
    let expire_at = keys_expire_at(plan);
    // The key first: a message is never planned without the key that cancels it.
    if let Some(cancel_key) = &plan.cancel_key {
        index_cancel_key(redis, &plan.app, cancel_key, &plan.id, expire_at).await?;
    }
    let added: i64 = scripts::ACCEPT
        .key(&message.plan)
        .key(&message.state)
        .key(&message.timers)
        .key(&message.items)
        .key(&message.mine)
        .key(&message.fired)
        .arg(json)
        .arg(Timer::Start(plan.id.clone()).to_string())
        .arg(plan.send_at)
        .arg(expire_at)
        .invoke_async(redis)
        .await?;
    Ok(added == 1)
}

/// Takes back a planned message whose acceptance failed (its record could not be published),
/// unless a replica claimed its start already; returns whether it was taken back.
pub async fn retract(
    redis: &mut RedisConnection,
    keys: &Keys,
    plan: &Plan,
) -> redis::RedisResult<bool> {
    let message = keys.message(&plan.id);
    let taken: i64 = scripts::RETRACT
        .key(&message.plan)
        .key(&message.state)
        .key(&message.timers)
        .key(&message.items)
        .key(&message.mine)
        .arg(Timer::Start(plan.id.clone()).to_string())
        .arg(plan.send_at)
        .invoke_async(redis)
        .await?;
    Ok(taken == 1)
}

/// Remembers that `message` was sent with `cancel_key`, until `expire_at` (the latest
/// message's).
pub async fn index_cancel_key(
    redis: &mut RedisConnection,
    app: &AppId,
    cancel_key: &str,
    message: &MessageId,
    expire_at: i64,
) -> redis::RedisResult<()> {
    let key = cancel_key_key(app, cancel_key);
    redis::pipe()
        .sadd(&key, message.as_str())
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&key)
        .arg(expire_at)
        .arg("GT")
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&key)
        .arg(expire_at)
        .arg("NX")
        .ignore()
        .query_async(redis)
        .await
}

/// The plan of `message`, if it is a planned message that has not expired long ago.
pub async fn load_plan(
    redis: &mut RedisConnection,
    keys: &Keys,
    message: &MessageId,
) -> redis::RedisResult<Option<Plan>> {
    let json: Option<String> = redis::cmd("GET")
        .arg(keys.message(message).plan)
        .query_async(redis)
        .await?;
    Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
}

/// Users whose chain stopped, as the scripts give them: user, the step they had reached,
/// and whether that step had begun (`r`) or was only due (`q`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The user.
    pub user: UserId,
    /// The step reached.
    pub step: usize,
    /// Whether that step had begun.
    pub begun: bool,
}

/// Parses the scripts' `[user, step, letter, ...]` lists.
pub fn parse_stopped(json: &str) -> Vec<Stopped> {
    let values: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    values
        .chunks(3)
        .filter_map(|triple| {
            let [user, step, kind] = triple else {
                return None;
            };
            Some(Stopped {
                user: UserId::parse(user.as_str()?).ok()?,
                step: usize::try_from(step.as_u64()?).ok()?,
                begun: kind.as_str()? == "r",
            })
        })
        .collect()
}

/// Parses a JSON list of users from a script or a payload.
pub fn parse_users(json: &str) -> Vec<UserId> {
    let values: Vec<String> = serde_json::from_str(json).unwrap_or_default();
    values
        .into_iter()
        .filter_map(|user| UserId::parse(user).ok())
        .collect()
}

/// The records of `steps` of `plan` for `users`, all in `state` for `reason`.
pub fn step_records(
    plan: &Plan,
    users: &[UserId],
    steps: std::ops::Range<usize>,
    state: StepState,
    reason: &str,
) -> Vec<StepRecord> {
    let at = now_ms();
    users
        .iter()
        .flat_map(|user| {
            steps.clone().map(move |step| StepRecord {
                app: plan.app.clone(),
                message: plan.id.clone(),
                user: user.clone(),
                step: u8::try_from(step).unwrap_or(u8::MAX),
                state,
                reason: reason.to_owned(),
                at,
            })
        })
        .collect()
}

/// The records of the steps a stopped chain will not run: those after the step reached, and
/// that step too when it had not begun.
pub fn stopped_records(plan: &Plan, stopped: &[Stopped], reason: &str) -> Vec<StepRecord> {
    stopped
        .iter()
        .flat_map(|stop| {
            let first = if stop.begun { stop.step + 1 } else { stop.step };
            step_records(
                plan,
                std::slice::from_ref(&stop.user),
                first..plan.steps.len(),
                StepState::Cancelled,
                reason,
            )
        })
        .collect()
}

/// What a cancellation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// The message was still waiting for `send_at`: nothing was sent.
    pub scheduled: bool,
    /// Users each step had begun for, by step.
    pub started: BTreeMap<usize, u64>,
    /// Users whose chain stopped now.
    pub stopped: Vec<Stopped>,
    /// The message's timers that were pending (now made due, to stop at once).
    pub pending: u64,
}

/// Cancels `message` for `users` (everyone when `None`); `None` if it is not a planned
/// message (or expired over an hour ago).
pub async fn cancel(
    redis: &mut RedisConnection,
    keys: &Keys,
    message: &MessageId,
    expire_at: i64,
    users: Option<&[UserId]>,
) -> redis::RedisResult<Option<Cancelled>> {
    let message_keys = keys.message(message);
    let mut invocation = scripts::CANCEL.prepare_invoke();
    invocation
        .key(&message_keys.plan)
        .key(&message_keys.state)
        .key(&message_keys.users)
        .key(&message_keys.cancelled)
        .key(&message_keys.timers)
        .key(&message_keys.mine)
        .arg(now_ms())
        .arg(expire_at)
        .arg(Timer::Start(message.clone()).to_string());
    for user in users.unwrap_or_default() {
        invocation.arg(user.as_str());
    }
    let reply: Vec<redis::Value> = invocation.invoke_async(redis).await?;
    let found: i64 = reply
        .first()
        .map(redis::from_redis_value_ref)
        .transpose()?
        .unwrap_or(0);
    if found == 0 {
        return Ok(None);
    }
    let (_, scheduled, started, stopped, pending): (i64, i64, String, String, u64) =
        redis::from_redis_value(redis::Value::Array(reply))?;
    let started: BTreeMap<String, u64> = serde_json::from_str(&started).unwrap_or_default();
    Ok(Some(Cancelled {
        scheduled: scheduled == 1,
        started: started
            .into_iter()
            .filter_map(|(step, count)| Some((step.parse().ok()?, count)))
            .collect(),
        stopped: parse_stopped(&stopped),
        pending,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_ids_round_trip() {
        let message = MessageId::generate();
        for timer in [
            Timer::Start(message.clone()),
            Timer::Run {
                message: message.clone(),
                step: 2,
                batch: "g3".into(),
            },
            Timer::Deadline {
                message,
                step: 0,
                batch: "x1".into(),
            },
        ] {
            assert_eq!(Timer::parse(&timer.to_string()), Some(timer));
        }
        assert_eq!(Timer::parse("z|abc"), None);
    }

    #[test]
    fn a_message_keys_share_its_shard_tag() {
        let keys = Keys::new("sp.");
        let message = MessageId::generate();
        let all = keys.message(&message);
        let tag = format!("{{orch{}}}", shard_of(&message));
        for key in [&all.plan, &all.users, &all.fired, &all.timers, &all.items] {
            assert!(key.contains(&tag), "{key}");
        }
    }

    #[test]
    fn stopped_lists_parse() {
        let stopped = parse_stopped(r#"["ann",1,"r","bob",2,"q"]"#);
        assert_eq!(stopped.len(), 2);
        assert!(stopped[0].begun && !stopped[1].begun);
        assert_eq!(parse_users("[]"), Vec::<UserId>::new());
        assert_eq!(parse_users("{}"), Vec::<UserId>::new());
    }
}
