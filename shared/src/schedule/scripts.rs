//! The scheduler's Lua scripts. Every key one script touches carries the same hash tag (the
//! message's timer shard), so each runs atomically on one node of a Redis Cluster too.
//!
//! A user's chain state (`<msg>:u` field) is one of: absent (not begun), `r<i>` (step `i`
//! started), `q<i>` (step `i` due at once: the earlier one was skipped or failed everywhere),
//! `m<i>` (step `i`'s `until` met: the chain stopped), `x` (cancelled), `e` (ended: the last
//! step failed everywhere or had nothing to send to).

use std::sync::LazyLock;

use redis::Script;

/// Lua helpers the scripts share: adding a timer unless it fired already.
const ADD_TIMER: &str = r"
local function add_timer(timers, items, mine, fired, id, due, payload, expire_at)
  if redis.call('SISMEMBER', fired, id) == 1 then return 0 end
  redis.call('ZADD', timers, 'NX', due, id)
  if payload ~= '' then redis.call('HSETNX', items, id, payload) end
  redis.call('SADD', mine, id)
  redis.call('PEXPIREAT', mine, expire_at)
  return 1
end
";

/// Accepts a message. KEYS: plan, state (unused until the message begins), timers, items, mine
/// (the message's timers), fired.
/// ARGV: plan JSON, start timer id, due, keys' expiry (Unix ms). Returns 0 if the message was
/// planned already.
pub static ACCEPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ADD_TIMER}
if redis.call('SET', KEYS[1], ARGV[1], 'NX') == false then return 0 end
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
add_timer(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[2], ARGV[3], '', ARGV[4])
return 1
"
    ))
});

/// Claims due timers. KEYS: timers, items. ARGV: now, lease end, most. A claimed timer is
/// given the lease's end as its due time: if it is not acked by then, it fires again (on any
/// replica). Returns `[id, due, payload, ...]`.
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
  out[#out + 1] = id
  out[#out + 1] = due[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
",
    )
});

/// Acks fired timers of one message. KEYS: timers, items, mine, fired. ARGV: expiry, ids...
pub static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 2, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('SREM', KEYS[3], ARGV[i])
  redis.call('SADD', KEYS[4], ARGV[i])
end
redis.call('PEXPIREAT', KEYS[4], ARGV[1])
return 1
",
    )
});

/// Adds a timer of one message unless it fired already. KEYS: timers, items, mine, fired.
/// ARGV: id, due, payload, expiry.
pub static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ADD_TIMER}
return add_timer(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"
    ))
});

/// Begins step `i` for users. KEYS: state, users, cancelled users. ARGV: i, expiry, users...
/// Returns one code per user: `g` (go), `c` (cancelled now), `n` (nothing: the chain is over
/// or past this step).
pub static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local step = tonumber(ARGV[1])
local all = redis.call('HGET', KEYS[1], 'cancelled')
local out = {}
local started = 0
for k = 3, #ARGV do
  local user = ARGV[k]
  local s = redis.call('HGET', KEYS[2], user)
  local kind = s and string.sub(s, 1, 1)
  local at = s and tonumber(string.sub(s, 2))
  local code
  if kind == 'm' or kind == 'x' or kind == 'e' or (at and at > step) then
    code = 'n'
  elseif all or redis.call('SISMEMBER', KEYS[3], user) == 1 then
    redis.call('HSET', KEYS[2], user, 'x')
    code = 'c'
  else
    if s ~= 'r' .. step then started = started + 1 end
    redis.call('HSET', KEYS[2], user, 'r' .. step)
    code = 'g'
  end
  out[#out + 1] = code
end
if started > 0 then redis.call('HINCRBY', KEYS[1], 'started:' .. step, started) end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return out
",
    )
});

/// Records what step `i` sent to each user, and sets its deadline. KEYS: remaining, timers,
/// items, mine, fired. ARGV: i, expiry, deadline id (empty for none), due, payload, then
/// user and delivery count pairs.
pub static ARM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ADD_TIMER}
for k = 6, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[1] .. ':' .. ARGV[k], ARGV[k + 1])
end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  add_timer(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[3], ARGV[4], ARGV[5], ARGV[2])
end
return 1
"
    ))
});

/// A step's deadline: every user of the batch still in step `i` moves on to step `i + 1`
/// (a timer due now), unless the app cancelled them; then the deadline is acked. The payload
/// (`{"run": <timer>, "users": [...]}`) names the timer that began the step: until that one
/// is acked (its jobs confirmed by the broker) the deadline waits, so a step whose run is being
/// repeated after a crash is never passed over. KEYS: state, users, cancelled users, timers,
/// items, mine, fired. ARGV: deadline id, i, next run id, now, expiry, when to look again.
/// Returns `[moved on (JSON list), cancelled (JSON list)]`.
pub static DEADLINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ADD_TIMER}
if redis.call('SISMEMBER', KEYS[7], ARGV[1]) == 1 then return {{'[]', '[]'}} end
local payload = redis.call('HGET', KEYS[5], ARGV[1])
local step = tonumber(ARGV[2])
local moved = {{}}
local stopped = {{}}
local armed = (payload and payload ~= '') and cjson.decode(payload) or {{users = {{}}}}
if armed.run and redis.call('SISMEMBER', KEYS[7], armed.run) == 0 then
  redis.call('ZADD', KEYS[4], 'XX', ARGV[6], ARGV[1])
  return {{'[]', '[]'}}
end
local users = armed.users or {{}}
if #users > 0 then
  local all = redis.call('HGET', KEYS[1], 'cancelled')
  for _, user in ipairs(users) do
    if redis.call('HGET', KEYS[2], user) == 'r' .. step then
      if all or redis.call('SISMEMBER', KEYS[3], user) == 1 then
        redis.call('HSET', KEYS[2], user, 'x')
        stopped[#stopped + 1] = user
      else
        redis.call('HSET', KEYS[2], user, 'q' .. (step + 1))
        moved[#moved + 1] = user
      end
    end
  end
end
if #moved > 0 then
  add_timer(KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[3], ARGV[4], cjson.encode(moved), ARGV[5])
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[1])
redis.call('SADD', KEYS[7], ARGV[1])
redis.call('PEXPIREAT', KEYS[7], ARGV[5])
local function list(t) if #t == 0 then return '[]' end return cjson.encode(t) end
return {{list(moved), list(stopped)}}
"
    ))
});

/// Delivery outcomes of one message. KEYS: state, users, remaining, timers, items, mine, fired,
/// failed deliveries. ARGV: now, expiry, next run id, step count, then quadruples of user,
/// step, `m` (its `until` met) or `f` (one of its deliveries failed for good), and the
/// delivery's id. A met step stops the user's chain; a step whose deliveries all failed
/// starts the next at once. A failure is counted once per delivery, however often its event
/// comes. Returns `[stopped, moved on,
/// ended]`, stopped as `[user, step reached, state letter, ...]` JSON, the others as JSON lists.
pub static OUTCOMES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ADD_TIMER}
local steps = tonumber(ARGV[4])
local stopped = {{}}
local moved = {{}}
local ended = {{}}
for k = 5, #ARGV, 4 do
  local user = ARGV[k]
  local step = tonumber(ARGV[k + 1])
  local s = redis.call('HGET', KEYS[2], user)
  local kind = s and string.sub(s, 1, 1)
  local at = s and tonumber(string.sub(s, 2))
  if (kind == 'r' or kind == 'q') and at and step <= at then
    if ARGV[k + 2] == 'm' then
      redis.call('HSET', KEYS[2], user, 'm' .. step)
      stopped[#stopped + 1] = user
      stopped[#stopped + 1] = at
      stopped[#stopped + 1] = kind
    elseif kind == 'r' and step == at and redis.call('SADD', KEYS[8], ARGV[k + 3]) == 1 then
      local left = redis.call('HINCRBY', KEYS[3], step .. ':' .. user, -1)
      if left <= 0 then
        if step + 1 < steps then
          redis.call('HSET', KEYS[2], user, 'q' .. (step + 1))
          moved[#moved + 1] = user
        else
          redis.call('HSET', KEYS[2], user, 'e')
          ended[#ended + 1] = user
        end
      end
    end
  end
end
if #moved > 0 then
  add_timer(KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[3], ARGV[1], cjson.encode(moved), ARGV[2])
end
redis.call('PEXPIREAT', KEYS[8], ARGV[2])
local function list(t) if #t == 0 then return '[]' end return cjson.encode(t) end
return {{list(stopped), list(moved), list(ended)}}
"
    ))
});

/// Cancels a message, or some of its users. KEYS: plan, state, users, cancelled users, timers,
/// mine. ARGV: now, expiry, the start timer's id, then the users (none: everyone). The users
/// named whose chain was
/// running stop now (and are returned); users not begun are stopped when their step comes up.
/// When everyone is cancelled, the message is marked so and its timers are made due now: each
/// running chain stops as its deadline fires (at once), each user not begun as its step comes
/// up, so a cancellation costs the same for a group of a million as for one user (a timer
/// another replica holds may then run twice: both runs only cancel). Returns `[found, scheduled, started per step
/// (JSON object), stopped (JSON list of user, step reached, state letter), pending timers]`.
pub static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local stopped = {}
local function stop(user, s)
  local kind = s and string.sub(s, 1, 1)
  if kind == 'r' or kind == 'q' then
    redis.call('HSET', KEYS[3], user, 'x')
    stopped[#stopped + 1] = user
    stopped[#stopped + 1] = tonumber(string.sub(s, 2))
    stopped[#stopped + 1] = kind
  end
end
if #ARGV > 3 then
  for k = 4, #ARGV do
    redis.call('SADD', KEYS[4], ARGV[k])
    stop(ARGV[k], redis.call('HGET', KEYS[3], ARGV[k]))
  end
  redis.call('PEXPIREAT', KEYS[4], ARGV[2])
else
  redis.call('HSET', KEYS[2], 'cancelled', '1')
  redis.call('PEXPIREAT', KEYS[2], ARGV[2])
end
local pending = redis.call('SMEMBERS', KEYS[6])
if #ARGV == 3 then
  for _, id in ipairs(pending) do
    redis.call('ZADD', KEYS[5], 'XX', 'LT', ARGV[1], id)
  end
end
local started = {}
local state = redis.call('HGETALL', KEYS[2])
for k = 1, #state, 2 do
  local name = state[k]
  if string.sub(name, 1, 8) == 'started:' then started[string.sub(name, 9)] = tonumber(state[k + 1]) end
end
local scheduled = redis.call('SISMEMBER', KEYS[6], ARGV[3])
local encoded = '{}'
if next(started) ~= nil then encoded = cjson.encode(started) end
local list = '[]'
if #stopped > 0 then list = cjson.encode(stopped) end
return {1, scheduled, encoded, list, #pending}
",
    )
});

/// Takes back a message whose acceptance failed, unless a replica has claimed its start
/// already. KEYS: plan, state, timers, items, mine. ARGV: start timer id, its due time.
/// Returns 1 if taken back.
pub static RETRACT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not due or tonumber(due) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[5])
return 1
",
    )
});
