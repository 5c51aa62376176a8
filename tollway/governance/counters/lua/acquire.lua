-- Reserve on every counter or on none: the Redis twin of MemoryCounterStore.acquire.
--
-- KEYS[1..n]  counter hashes {used, reserved, last_reset, h:<process>...}; a process's
--             field holds what it has reserved on the counter
-- KEYS[n+1]   the set of counters this process holds a field on (for the reaper)
-- KEYS[n+2]   the seeded marker (absent: Redis lost its data and must be reseeded)
-- ARGV[1]     five big-endian doubles per op: limit, amount, floor_ms, reset_to_ms,
--             ttl_ms (one binary argument: far cheaper to send and read than 5n decimals)
-- ARGV[2]     this process's field, h:<process id>
--
-- Values are compared and computed as Lua doubles, which count integers exactly below
-- 2^53 (one request's amount always is); a total beyond that is written as exact HINCRBY
-- deltas instead. Nothing is written unless every op fits, and a counter's expiry is set
-- when it starts a window: a counter in use rolls at least once a window, so it never
-- expires in use. Returns {-2} when unseeded, else {failed, used1, reserved1,
-- last_reset1, used2, ...} with failed = -1 (all reserved) or the 0-based index of the
-- first op that did not fit; the readings are after the call, in op order.
local n = #KEYS - 2
local holder_set, mine = KEYS[n + 1], ARGV[2]
if redis.call('EXISTS', KEYS[n + 2]) == 0 then
  return {-2}
end
local EXACT = 9007199254740992
local v = {struct.unpack('>' .. string.rep('d', 5 * n), ARGV[1])}

-- Per counter (slot j, in order of first op): the state as this call leaves it. A
-- counter named twice is checked twice, in order, like the memory store does.
local slot, keys = {}, {}
local used, reserved, last, held, add = {}, {}, {}, {}, {}
local exact = true

local failed = -1
for i = 1, n do
  local at = (i - 1) * 5
  local key = KEYS[i]
  local j = slot[key]
  if j == nil then
    j = #keys + 1
    slot[key], keys[j] = j, key
    local state = redis.call('HMGET', key, 'used', 'reserved', 'last_reset', mine)
    used[j], reserved[j], last[j], held[j], add[j] =
      tonumber(state[1]), tonumber(state[2]), tonumber(state[3]), tonumber(state[4]), 0
    if last[j] == nil then -- a new counter
      used[j], reserved[j], last[j] = 0, 0, v[at + 4]
      redis.call('HSET', key, 'used', '0', 'reserved', '0', 'last_reset', v[at + 4])
      if v[at + 5] ~= 0 then
        redis.call('PEXPIRE', key, v[at + 5])
      end
    end
  end
  if last[j] < v[at + 3] then -- a new window
    used[j], last[j] = 0, v[at + 4]
    redis.call('HSET', key, 'used', '0', 'last_reset', v[at + 4])
    if v[at + 5] ~= 0 then
      redis.call('PEXPIRE', key, v[at + 5])
    end
  end
  if failed < 0 then
    local amount = v[at + 2]
    if used[j] + reserved[j] + amount > v[at + 1] then
      failed = i - 1
      for k = 1, i - 1 do -- all or nothing: the earlier ops' reservations are not made
        local earlier = slot[KEYS[k]]
        reserved[earlier], add[earlier] = reserved[earlier] - v[(k - 1) * 5 + 2], 0
      end
    else
      reserved[j], add[j] = reserved[j] + amount, add[j] + amount
      if reserved[j] >= EXACT or (held[j] or 0) + add[j] >= EXACT then
        exact = false
      end
    end
  end
end

if failed < 0 then
  if exact then -- one write per counter
    for j, key in ipairs(keys) do
      if add[j] > 0 then
        redis.call('HSET', key, 'reserved', reserved[j], mine, (held[j] or 0) + add[j])
      end
    end
  else -- totals beyond 2^53: let Redis add the exact deltas
    for i = 1, n do
      local amount = v[(i - 1) * 5 + 2]
      if amount ~= 0 then
        redis.call('HINCRBY', KEYS[i], 'reserved', amount)
        redis.call('HINCRBY', KEYS[i], mine, amount)
      end
    end
  end
  for j, key in ipairs(keys) do
    if add[j] > 0 and held[j] == nil then -- its first field on this counter: tell the reaper
      redis.call('SADD', holder_set, key)
    end
  end
end

local out = {failed}
for i = 1, n do
  local j = slot[KEYS[i]]
  out[3 * i - 1], out[3 * i], out[3 * i + 1] = used[j], reserved[j], last[j]
end
return out
