//! Per-app request rates, shared by every accepter through Redis.
//!
//! A generic cell rate algorithm (GCRA) in one Lua call per request: the key `rl:{<app>}` holds
//! the app's theoretical arrival time in microseconds of the Redis clock. An app may make
//! `rate_burst` requests at once and `rate_per_second` after that; a request above it is answered
//! 429 with `Retry-After`. When Redis cannot be asked, requests are let through (and counted in
//! `sprayer_rate_limit_errors_total`): a limiter must not take the API down with it.

use std::sync::LazyLock;

use redis::Script;
use sprayer_shared::config::Limits;
use sprayer_shared::model::AppId;
use sprayer_shared::redis::RedisConnection;

/// Returns 0 when the request may go ahead, else the microseconds until it may.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
",
    )
});

/// The Redis key of `app`'s rate.
pub fn rate_key(app: &AppId) -> String {
    format!("rl:{{{app}}}")
}

/// `Ok` when `app` may make one more request under `limits`, else the seconds to wait.
pub async fn admit(redis: &RedisConnection, app: &AppId, limits: &Limits) -> Result<(), u64> {
    if limits.rate_per_second == 0 {
        return Ok(());
    }
    let interval = 1_000_000 / u64::from(limits.rate_per_second).max(1);
    let tolerance = interval * u64::from(limits.rate_burst.max(1));
    let mut redis = redis.clone();
    let waited: redis::RedisResult<u64> = GCRA
        .key(rate_key(app))
        .arg(interval)
        .arg(tolerance)
        .invoke_async(&mut redis)
        .await;
    match waited {
        Ok(0) => Ok(()),
        Ok(micros) => {
            metrics::counter!("sprayer_rate_limited_total").increment(1);
            Err(micros.div_ceil(1_000_000).max(1))
        }
        Err(error) => {
            metrics::counter!("sprayer_rate_limit_errors_total").increment(1);
            tracing::warn!(%error, "cannot check the request rate; letting the request through");
            Ok(())
        }
    }
}
