//! The timer loop: every replica claims due timers from every shard and does their work; a
//! shard that had timers due is looked at again at once, the others after `scheduler.poll`.

use std::sync::Arc;
use std::time::Duration;

use sprayer_shared::model::now_ms;
use sprayer_shared::schedule::{SHARDS, scripts};
use tokio_util::sync::CancellationToken;

use crate::steps::{Claimed, Stepper};

/// How often the pending timers are counted for `sprayer_scheduler_timers_pending`.
const COUNT_EVERY: Duration = Duration::from_secs(10);

/// Claims and fires timers until `shutdown`: one loop per shard, so a shard waiting on its
/// broker confirms holds no other back.
pub async fn run(stepper: Arc<Stepper>, shutdown: CancellationToken) {
    let mut loops = tokio::task::JoinSet::new();
    for shard in 0..SHARDS {
        let stepper = stepper.clone();
        let shutdown = shutdown.clone();
        loops.spawn(async move { shard_loop(&stepper, shard, &shutdown).await });
    }
    let counting = async {
        loop {
            count_pending(&stepper).await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(COUNT_EVERY) => {}
            }
        }
    };
    tokio::join!(counting, async {
        while loops.join_next().await.is_some() {}
    });
    tracing::info!("scheduler timers stopped");
}

async fn shard_loop(stepper: &Stepper, shard: u16, shutdown: &CancellationToken) {
    let poll = stepper.settings.scheduler.poll;
    while !shutdown.is_cancelled() {
        if !round(stepper, shard).await {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// Claims what is due in `shard` and does it; whether anything was due.
async fn round(stepper: &Stepper, shard: u16) -> bool {
    let settings = &stepper.settings.scheduler;
    let mut redis = stepper.redis_for(shard);
    let now = now_ms();
    let lease = i64::try_from(settings.claim_lease.as_millis()).unwrap_or(30_000);
    let started = std::time::Instant::now();
    let claimed: redis::RedisResult<Vec<String>> = scripts::CLAIM
        .key(stepper.keys.timers(shard))
        .key(stepper.keys.items(shard))
        .arg(now)
        .arg(now + lease)
        .arg(settings.claim_batch)
        .invoke_async(&mut redis)
        .await;
    let claimed = match claimed {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(%error, shard, "cannot claim timers");
            return false;
        }
    };
    if claimed.is_empty() {
        return false;
    }
    crate::steps::stage_took("claim", started);
    let timers: Vec<Claimed> = claimed
        .chunks(3)
        .filter_map(|triple| match triple {
            [id, due, payload] => Some(Claimed {
                id: id.clone(),
                due: due.parse::<f64>().map_or(now, |due| due as i64),
                payload: payload.clone(),
            }),
            _ => None,
        })
        .collect();
    let count = timers.len();
    if let Err(error) = stepper.fire(shard, timers).await {
        // Not acked: the timers fire again when their claim ends.
        tracing::warn!(%error, shard, count, "cannot fire timers; they fire again after the claim lease");
        return false;
    }
    true
}

async fn count_pending(stepper: &Stepper) {
    let mut redis = stepper.redis.clone();
    let mut pipe = redis::pipe();
    for shard in 0..SHARDS {
        pipe.zcard(stepper.keys.timers(shard));
    }
    match pipe.query_async::<Vec<u64>>(&mut redis).await {
        Ok(counts) => {
            metrics::gauge!("sprayer_scheduler_timers_pending")
                .set(counts.iter().sum::<u64>() as f64);
        }
        Err(error) => tracing::debug!(%error, "cannot count pending timers"),
    }
}
