//! Expiry of messages waiting in inboxes of users who do not connect: every inbox with messages
//! is in the index `<prefix>inbox-due` (a ZSET of `app:user` by its earliest expiry). Each node
//! sweeps the inboxes that are due, removes what expired and reports it `expired`.

use std::sync::Arc;
use std::time::Duration;

use sprayer_shared::model::{AppId, DeliveryStatus, UserId, now_ms};
use sprayer_shared::redis::RedisConnection;
use tokio_util::sync::CancellationToken;

use crate::inbox::{self, InboxKeys};
use crate::reporter::{Reporter, ws_event};

/// Inboxes swept per round trip to the index.
const SWEEP_BATCH: usize = 500;

/// Sweeps every `every` until `shutdown`.
pub async fn run(
    mut redis: RedisConnection,
    due_key: Arc<str>,
    reporter: Reporter,
    every: Duration,
    shutdown: CancellationToken,
) {
    while sprayer_shared::shutdown::sleep_or_cancel(every, &shutdown).await {
        loop {
            match sweep(&mut redis, &due_key, &reporter).await {
                Ok(swept) if swept >= SWEEP_BATCH && !shutdown.is_cancelled() => {}
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot sweep expired inbox messages");
                    break;
                }
            }
        }
    }
}

/// One pass over the inboxes due now; returns how many were looked at.
pub async fn sweep(
    redis: &mut RedisConnection,
    due_key: &str,
    reporter: &Reporter,
) -> redis::RedisResult<usize> {
    let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(due_key)
        .arg("-inf")
        .arg(now_ms())
        .arg("LIMIT")
        .arg(0)
        .arg(SWEEP_BATCH)
        .query_async(redis)
        .await?;
    for member in &due {
        let parsed = member
            .split_once(':')
            .and_then(|(app, user)| Some((AppId::parse(app).ok()?, UserId::parse(user).ok()?)));
        let Some((app, user)) = parsed else {
            redis::cmd("ZREM")
                .arg(due_key)
                .arg(member)
                .query_async::<()>(redis)
                .await?;
            continue;
        };
        let keys = InboxKeys::new(&app, &user);
        let (expired, next) = inbox::purge(redis, &keys).await?;
        for id in &expired {
            reporter
                .report(ws_event(&app, &user, id, DeliveryStatus::Expired, None))
                .await;
        }
        metrics::counter!("sprayer_ws_expired_total").increment(expired.len() as u64);
        match next {
            Some(next) => {
                redis::cmd("ZADD")
                    .arg(due_key)
                    .arg(next)
                    .arg(member)
                    .query_async::<()>(redis)
                    .await?;
            }
            None => {
                redis::cmd("ZREM")
                    .arg(due_key)
                    .arg(member)
                    .query_async::<()>(redis)
                    .await?;
            }
        }
        // A message stored meanwhile may have lowered the entry before it was reset: put it back.
        if let Some(earliest) = inbox::earliest_expiry(redis, &keys).await? {
            redis::cmd("ZADD")
                .arg(due_key)
                .arg("LT")
                .arg(earliest)
                .arg(member)
                .query_async::<()>(redis)
                .await?;
        }
    }
    Ok(due.len())
}
