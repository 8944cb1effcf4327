"""The two Lua scripts that keep a tenant's budget in Redis (`tenant_redis`).

Each runs atomically on the server, so checking the budget and recording a request is one
step for every process on every machine. They do what `SqlitePacer` does inside its write
transaction, operation for operation, so that the figures come out the same to the bit:

- KEYS[1], a hash: the `PaceState` (next_at, paused_until) and the `AdaptiveRate` state
  (refused_at, cut_at, signalled_at); a field at minus infinity is left out (SQL's NULL);
- KEYS[2], a sorted set: the sliding-window log, one member per request, scored by the
  time it stops occupying the window (its end, or latest possible end, plus one window);
- KEYS[3], a sorted set: the processes seen in the last window, scored likewise.

Times are the callers' (`clock.shared_timeline`), passed in. Every call pushes the keys'
expiry a few windows (and any pause) ahead, so that a tenant nobody uses vanishes.
"""

from __future__ import annotations

from typing import Final

__all__ = ["THROTTLE", "TRY_PASS"]

_STATE: Final = """
-- ARGV: now, ceiling, floor, recovery, beta, window, ttl_ms, then each script's own.
local now, ceiling, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local recovery, beta, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local NONE = -math.huge
local fields = {'next_at', 'paused_until', 'refused_at', 'cut_at', 'signalled_at'}
local s = {}
local stored = redis.call('HMGET', KEYS[1], unpack(fields))
for i, name in ipairs(fields) do
  s[name] = stored[i] and tonumber(stored[i]) or (name == 'refused_at' and ceiling or NONE)
end

-- adaptive.AdaptiveRate.at, in the same order of operations.
local function rate_at(t)
  local since = math.max(0, t - s.cut_at)
  local scale = (1 - beta) * s.refused_at / recovery ^ 3
  local rate = s.refused_at + scale * (since - recovery) ^ 3
  return math.max(floor, math.min(ceiling, rate))
end

local function exact(x) return string.format('%.17g', x) end

local function save()
  for _, name in ipairs(fields) do
    if s[name] == NONE then redis.call('HDEL', KEYS[1], name)
    else redis.call('HSET', KEYS[1], name, exact(s[name])) end
  end
end

local function keep()  -- a few windows after the last use, and past any pause
  local ttl = math.max(tonumber(ARGV[7]), math.ceil((s.paused_until - now + window) * 1000))
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, string.format('%d', ttl)) end
end

local function reply(at, sharers)
  local state = {}
  for i, name in ipairs(fields) do state[i] = s[name] == NONE and '' or exact(s[name]) end
  return {at, sharers, unpack(state)}
end
"""

TRY_PASS: Final = (
    _STATE
    + """
-- ARGV[8..]: limit, burst, early, max_request_s, this process, this request's member,
-- then (member, end) pairs of this process's requests that ended ('' : never sent).
local limit, burst, early = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local max_request_s = tonumber(ARGV[11])
for i = 14, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('ZREM', KEYS[2], ARGV[i])
  else redis.call('ZADD', KEYS[2], 'XX', exact(tonumber(ARGV[i + 1]) + window), ARGV[i]) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local in_window = redis.call('ZCARD', KEYS[2])
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local oldest = first[2] and tonumber(first[2]) or math.huge
redis.call('ZADD', KEYS[3], exact(now + window), ARGV[12])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local sharers = redis.call('ZCARD', KEYS[3])

-- pacer.decide: nil when the request may leave now, else the earliest time one may.
local at
if now < s.paused_until then at = s.paused_until
elseif in_window >= limit then at = oldest
else
  local paced_at = s.next_at - (burst - 1) / rate_at(now)
  if now < paced_at - early then at = paced_at end
end
if at == nil then  -- PaceState.passed, and the request in the log until its latest end
  redis.call('ZADD', KEYS[2], exact(now + max_request_s + window), ARGV[13])
  s.next_at = math.max(s.next_at, now) + 1 / rate_at(now)
  save()
end
keep()
return reply(at and exact(at) or '', sharers)
"""
)

THROTTLE: Final = (
    _STATE
    + """
-- ARGV[8], ARGV[9]: the pause asked for, and when the refused request was sent.
local pause, sent_at = tonumber(ARGV[8]), tonumber(ARGV[9])
-- PaceState.throttle, with AdaptiveRate.cut: one cut per episode (requests sent before
-- the last cut were paced by the old rate, so their refusals say nothing new).
s.paused_until = math.max(s.paused_until, now + pause)
if sent_at > s.signalled_at then
  s.refused_at = rate_at(now)
  s.signalled_at = now
  s.cut_at = math.max(now, s.paused_until)
  s.next_at = math.max(s.next_at, now + 1 / rate_at(now), s.paused_until)
end
save()
keep()
return reply('', 0)
"""
)
