//! The inbox's Lua scripts: each runs atomically on the Redis node of the user's hash slot.

use std::sync::LazyLock;

use redis::Script;

const NOW: &str = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// KEYS: the sequence key. Returns the next sequence number.
pub(super) static NEXT_SEQ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{}",
        r"
local seq = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, now * 1000)
local text = string.format('%.0f', seq)
redis.call('SET', KEYS[1], text)
return text
"
    ))
});

/// KEYS: entries, messages, expiries, acked, connections of each user in turn (five a user).
/// ARGV: id, message JSON, expires (ms), inbox capacity, key lifetime past the expiry (ms), seq.
/// Returns per user {stored (1 new, 0 already there, -1 already acknowledged), its seq,
/// dropped ids, nodes holding sockets}. One call serves many users: its cost per user is a few
/// commands, not a script invocation.
pub(super) static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{}",
        r"
local results = {}
local keep = tonumber(ARGV[3]) + tonumber(ARGV[5])
local keep_text = string.format('%.0f', keep)
local capacity = tonumber(ARGV[4])
for base = 0, #KEYS - 5, 5 do
  local entries, messages, expiries = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3]
  local stored, seq = 0, ARGV[6]
  local dropped = {}
  if redis.call('ZSCORE', KEYS[base + 4], ARGV[1]) then
    stored = -1
  else
    local existing = redis.call('ZSCORE', entries, ARGV[1])
    if existing then
      seq = existing
    else
      redis.call('HSET', messages, ARGV[1], ARGV[2])
      redis.call('ZADD', entries, seq, ARGV[1])
      redis.call('ZADD', expiries, ARGV[3], ARGV[1])
      stored = 1
      local over = redis.call('ZCARD', entries) - capacity
      if over > 0 then
        dropped = redis.call('ZRANGE', entries, 0, over - 1)
        for _, old in ipairs(dropped) do
          redis.call('ZREM', entries, old)
          redis.call('HDEL', messages, old)
          redis.call('ZREM', expiries, old)
        end
      end
      local pttl = redis.call('PTTL', entries)
      if pttl < 0 or now + pttl < keep then
        redis.call('PEXPIREAT', entries, keep_text)
        redis.call('PEXPIREAT', messages, keep_text)
        redis.call('PEXPIREAT', expiries, keep_text)
      end
    end
  end
  local nodes = {}
  local held = redis.call('HGETALL', KEYS[base + 5])
  for i = 1, #held, 2 do
    if tonumber(held[i + 1]) > now then
      table.insert(nodes, held[i])
    else
      redis.call('HDEL', KEYS[base + 5], held[i])
    end
  end
  table.insert(results, {stored, seq, dropped, nodes})
end
return results
"
    ))
});

/// KEYS: entries, messages, expiries. ARGV: cursor (exclusive), most entries.
/// Returns {{seq, id, message, ...}, expired ids, last seq scanned, more}.
pub(super) static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{}",
        r"
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out, expired = {}, {}
local last = ARGV[1]
for i = 1, #found, 2 do
  local id = found[i]
  last = found[i + 1]
  local expires = tonumber(redis.call('ZSCORE', KEYS[3], id) or '0')
  if expires <= now then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    table.insert(expired, id)
  else
    table.insert(out, found[i + 1])
    table.insert(out, id)
    table.insert(out, redis.call('HGET', KEYS[2], id) or '{}')
  end
end
local more = 0
if #found / 2 >= tonumber(ARGV[2]) then more = 1 end
return {out, expired, last, more}
"
    ))
});

/// KEYS: entries, messages, expiries, acked. ARGV: a day in ms, ids...
/// Every id is remembered as acknowledged (until the message's expiry, or a day for an id not
/// in the inbox: a job still being stored must not bring it back).
/// Returns {ids removed now, ids acknowledged before}.
pub(super) static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{}",
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local removed, before = {}, {}
local keep = now
for i = 2, #ARGV do
  local id = ARGV[i]
  local expires = redis.call('ZSCORE', KEYS[3], id)
  local until_ms = tonumber(expires or (now + tonumber(ARGV[1])))
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    table.insert(removed, id)
    redis.call('ZADD', KEYS[4], string.format('%.0f', until_ms), id)
  elseif redis.call('ZADD', KEYS[4], 'NX', string.format('%.0f', until_ms), id) == 0 then
    table.insert(before, id)
  end
  if until_ms > keep then keep = until_ms end
end
local pttl = redis.call('PTTL', KEYS[4])
if pttl < 0 or now + pttl < keep then
  redis.call('PEXPIREAT', KEYS[4], string.format('%.0f', keep))
end
return {removed, before}
"
    ))
});

/// KEYS: entries, messages, expiries. Removes what has expired (up to 1,000).
/// Returns {expired ids, the earliest expiry left or ''}.
pub(super) static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{}",
        r"
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {expired, first[2] or ''}
"
    ))
});
