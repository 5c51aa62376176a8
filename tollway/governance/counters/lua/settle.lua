-- Drop reservations and add actual usage: the Redis twin of MemoryCounterStore.settle.
--
-- KEYS[1..n]  counter hashes {used, reserved, last_reset, h:<process>...}
-- KEYS[n+1]   the set of counters this process holds a field on (for the reaper)
-- KEYS[n+2]   the seeded marker (absent: Redis lost its data; write nothing)
-- KEYS[n+3]   the set of counters changed since the last usage flush (take_touched.lua)
-- ARGV[1]     five big-endian doubles per op: reserved, actual, floor_ms, reset_to_ms,
--             window_ms
-- ARGV[2]     this process's field, h:<process id>
--
-- A process gives back at most what it still holds: when a reaper has already taken a
-- reservation back (the process was presumed dead), settling it again must not eat the
-- reservations of other processes. Each counter is read once and written once: one
-- HSET of its totals while they stay below 2^53 (doubles count integers exactly up to
-- there), exact HINCRBY deltas beyond. As in acquire.lua, the expiry is set when a
-- counter starts a window. Returns 0, or -2 when unseeded.
local n = #KEYS - 3
local mine = ARGV[2]
if redis.call('EXISTS', KEYS[n + 2]) == 0 then
  return -2
end
local EXACT = 9007199254740992
local MARGIN = 3600000 -- expiry beyond two windows: requests in flight settle long before
local v = {struct.unpack('>' .. string.rep('d', 5 * n), ARGV[1])}

-- Per counter (slot j, in order of first op): the state as this call leaves it, and
-- what changed, for the exact path. A counter named twice is settled twice, in order.
local slot, keys = {}, {}
local used, reserved, last, held, has_field, exact, rolled, window = {}, {}, {}, {}, {}, {}, {}, {}
local d_used, d_reserved, d_held = {}, {}, {}
for i = 1, n do
  local at = (i - 1) * 5
  local key = KEYS[i]
  local j = slot[key]
  if j == nil then
    j = #keys + 1
    slot[key], keys[j] = j, key
    local got = redis.call('HMGET', key, 'used', 'reserved', 'last_reset', mine)
    local u, r, h = tonumber(got[1]) or 0, tonumber(got[2]) or 0, tonumber(got[4])
    used[j], reserved[j], last[j], held[j], has_field[j] = u, r, tonumber(got[3]), h or 0, h ~= nil
    exact[j] = u < EXACT and r < EXACT and (h or 0) < EXACT
    rolled[j], d_used[j], d_reserved[j], d_held[j] = false, 0, 0, 0
  end
  if last[j] == nil or last[j] < v[at + 3] then -- a new counter, or a new window
    used[j], d_used[j], last[j], rolled[j], window[j] = 0, 0, v[at + 4], true, v[at + 5]
  end
  local give = v[at + 1]
  if give > held[j] then
    give = held[j]
  end
  local left = reserved[j] - give
  if left < 0 then
    left = 0
  end
  held[j], d_held[j] = held[j] - give, d_held[j] - give
  d_reserved[j], reserved[j] = d_reserved[j] + left - reserved[j], left
  used[j], d_used[j] = used[j] + v[at + 2], d_used[j] + v[at + 2]
end

for j, key in ipairs(keys) do
  local gave = has_field[j] and d_held[j] ~= 0
  if exact[j] and used[j] < EXACT then -- one write, of the fields that changed
    if rolled[j] and gave then
      redis.call('HSET', key, 'used', used[j], 'reserved', reserved[j], 'last_reset', last[j], mine, held[j])
    elseif rolled[j] then
      redis.call('HSET', key, 'used', used[j], 'reserved', reserved[j], 'last_reset', last[j])
    elseif gave then
      redis.call('HSET', key, 'used', used[j], 'reserved', reserved[j], mine, held[j])
    else
      redis.call('HSET', key, 'used', used[j], 'reserved', reserved[j])
    end
  else -- totals beyond 2^53: let Redis add the exact deltas
    if rolled[j] then
      redis.call('HSET', key, 'used', '0', 'last_reset', last[j])
    end
    redis.call('HINCRBY', key, 'used', d_used[j])
    if redis.call('HINCRBY', key, 'reserved', d_reserved[j]) < 0 then
      redis.call('HSET', key, 'reserved', '0')
    end
    if gave then
      redis.call('HINCRBY', key, mine, d_held[j])
    end
  end
  if rolled[j] and window[j] > 0 then
    redis.call('PEXPIRE', key, 2 * window[j] + MARGIN)
  end
  redis.call('SADD', KEYS[n + 3], key)
end
return 0
