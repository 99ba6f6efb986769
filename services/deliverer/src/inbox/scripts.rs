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

/// KEYS: entries, messages, expiries, acked, connections, history, history messages, history
/// states of each user in turn (eight a user).
/// ARGV: id, message JSON, expires (ms), inbox capacity, key lifetime past the expiry (ms), seq,
/// history capacity (0: none), history lifetime (ms).
/// Returns per user {stored (1 new, 0 already there, -1 already acknowledged), its seq,
/// dropped ids, nodes holding sockets}. One call serves many users: its cost per user is a few
/// commands, not a script invocation. The message also enters the history once, acked or not,
/// whose oldest leave it past its capacity.
pub(super) static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{}",
        r"
local results = {}
local keep = tonumber(ARGV[3]) + tonumber(ARGV[5])
local keep_text = string.format('%.0f', keep)
local capacity = tonumber(ARGV[4])
local history = tonumber(ARGV[7])
local history_until = string.format('%.0f', now + tonumber(ARGV[8]))
for base = 0, #KEYS - 8, 8 do
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
  -- The history takes the message once, acked or not: an ack may come from a socket that had
  -- it live before this store ran.
  local past, past_m, past_s = KEYS[base + 6], KEYS[base + 7], KEYS[base + 8]
  if history > 0 and not redis.call('ZSCORE', past, ARGV[1]) then
    redis.call('ZADD', past, ARGV[6], ARGV[1])
    redis.call('HSET', past_m, ARGV[1], ARGV[2])
    local out = redis.call('ZCARD', past) - history
    if out > 0 then
      for _, old in ipairs(redis.call('ZRANGE', past, 0, out - 1)) do
        redis.call('ZREM', past, old)
        redis.call('HDEL', past_m, old)
        redis.call('HDEL', past_s, old)
      end
    end
    redis.call('PEXPIREAT', past, history_until)
    redis.call('PEXPIREAT', past_m, history_until)
    redis.call('PEXPIREAT', past_s, history_until)
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

/// The history's state bits: seen 1, read 2 (a read message is seen), archived 4.
/// KEYS: history, history messages, history states. ARGV: set bits, clear bits, mode (`ids`,
/// `all`, `before`: every message with a sequence below ARGV[4]), the bound, ids...
/// Returns {{id, bits before, bits after, ...} of what changed, unread, unseen, total, ids not
/// in the history}: counts leave archived messages out. Ids not in the history change nothing.
pub(super) static STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local set, clear, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local targets = {}
if mode == 'ids' then
  local missing = {}
  for i = 5, #ARGV do
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
      table.insert(targets, ARGV[i])
    else
      table.insert(missing, ARGV[i])
    end
  end
  if #missing > 0 then return {{}, 0, 0, 0, missing} end
elseif mode == 'all' then
  targets = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  targets = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
end
local changed = {}
for _, id in ipairs(targets) do
  local bits = tonumber(redis.call('HGET', KEYS[3], id) or '0')
  local after = bit.band(bit.bor(bits, set), bit.bnot(clear))
  if bit.band(after, 2) ~= 0 then after = bit.bor(after, 1) end
  if after ~= bits then
    redis.call('HSET', KEYS[3], id, after)
    table.insert(changed, id)
    table.insert(changed, bits)
    table.insert(changed, after)
  end
end
local ttl = redis.call('PTTL', KEYS[1])
if #changed > 0 and ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
local unread, unseen = 0, 0
local all = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(all) do
  local bits = tonumber(redis.call('HGET', KEYS[3], id) or '0')
  if bit.band(bits, 4) == 0 then
    if bit.band(bits, 2) == 0 then unread = unread + 1 end
    if bit.band(bits, 1) == 0 then unseen = unseen + 1 end
  end
end
return {changed, unread, unseen, #all, {}}
",
    )
});

/// KEYS: history, history messages, history states. ARGV: cursor (exclusive; `+inf` for the
/// newest), most entries, filter (`all`, `unread`, `unseen`, `read`, `archived`; every filter
/// but `archived` and `all` leaves archived messages out).
/// Returns {{seq, id, message, bits, ...} newest first, the cursor to go on from or ''}.
pub(super) static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local limit, filter = tonumber(ARGV[2]), ARGV[3]
local bound = ARGV[1]
if bound ~= '+inf' then bound = '(' .. bound end
local found = redis.call('ZREVRANGEBYSCORE', KEYS[1], bound, '-inf', 'WITHSCORES')
local out, taken, next_cursor = {}, 0, ''
for i = 1, #found, 2 do
  local id, seq = found[i], found[i + 1]
  local bits = tonumber(redis.call('HGET', KEYS[3], id) or '0')
  local archived = bit.band(bits, 4) ~= 0
  local keep
  if filter == 'all' then keep = true
  elseif filter == 'archived' then keep = archived
  elseif archived then keep = false
  elseif filter == 'unread' then keep = bit.band(bits, 2) == 0
  elseif filter == 'unseen' then keep = bit.band(bits, 1) == 0
  elseif filter == 'read' then keep = bit.band(bits, 2) ~= 0
  else keep = true end
  if keep then
    if taken == limit then
      next_cursor = out[#out - 3]
      break
    end
    table.insert(out, seq)
    table.insert(out, id)
    table.insert(out, redis.call('HGET', KEYS[2], id) or '{}')
    table.insert(out, bits)
    taken = taken + 1
  end
end
return {out, next_cursor}
",
    )
});
