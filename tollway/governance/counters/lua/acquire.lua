-- Reserve on every counter or on none: the Redis twin of MemoryCounterStore.acquire.
--
-- KEYS[1..n]  counter hashes {used, reserved, last_reset}
-- KEYS[n+1]   this process's holdings hash (counter key -> amount it holds reserved)
-- KEYS[n+2]   the seeded marker (absent: Redis lost its data and must be reseeded)
-- ARGV        five per op: limit, amount, floor_ms, reset_to_ms, ttl_ms
--
-- Amounts travel as decimal strings and are written with HINCRBY, so stored values are
-- exact 64-bit integers; the limit comparison and the readings use Lua's doubles (exact
-- below 2^53). Nothing is written unless every op fits, and a counter's expiry is set
-- when it starts a window: a counter in use rolls at least once a window, so it never
-- expires in use. Returns {-2} when unseeded, else {failed, used1, reserved1,
-- last_reset1, used2, ...} with failed = -1 (all reserved) or the 0-based index of the
-- first op that did not fit; the readings are after the call, in op order.
local n = #KEYS - 2
local holdings = KEYS[n + 1]
if redis.call('EXISTS', KEYS[n + 2]) == 0 then
  return {-2}
end

local used, reserved, last = {}, {}, {} -- by key, as this call leaves them

-- Load the counter and roll it into the op's window (created when missing).
local function current(key, floor, reset_to, ttl)
  if last[key] == nil then
    local state = redis.call('HMGET', key, 'used', 'reserved', 'last_reset')
    used[key], reserved[key], last[key] = tonumber(state[1]), tonumber(state[2]), tonumber(state[3])
    if last[key] == nil then
      used[key], reserved[key], last[key] = 0, 0, tonumber(reset_to)
      redis.call('HSET', key, 'used', '0', 'reserved', '0', 'last_reset', reset_to)
      if ttl ~= '0' then
        redis.call('PEXPIRE', key, ttl)
      end
      return
    end
  end
  if last[key] < tonumber(floor) then
    used[key], last[key] = 0, tonumber(reset_to)
    redis.call('HSET', key, 'used', '0', 'last_reset', reset_to)
    if ttl ~= '0' then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end

local failed = -1
for i = 1, n do
  local at = (i - 1) * 5
  local key = KEYS[i]
  current(key, ARGV[at + 3], ARGV[at + 4], ARGV[at + 5])
  if failed < 0 then
    local amount = tonumber(ARGV[at + 2])
    if used[key] + reserved[key] + amount > tonumber(ARGV[at + 1]) then
      failed = i - 1
      for j = 1, i - 1 do -- all or nothing: the earlier ops' reservations are not made
        reserved[KEYS[j]] = reserved[KEYS[j]] - tonumber(ARGV[(j - 1) * 5 + 2])
      end
    else
      reserved[key] = reserved[key] + amount
    end
  end
end

if failed < 0 then
  for i = 1, n do
    local amount = ARGV[(i - 1) * 5 + 2]
    if amount ~= '0' then
      redis.call('HINCRBY', KEYS[i], 'reserved', amount)
      redis.call('HINCRBY', holdings, KEYS[i], amount)
    end
  end
end

local out = {failed}
for i = 1, n do
  local key = KEYS[i]
  out[3 * i - 1], out[3 * i], out[3 * i + 1] = used[key], reserved[key], last[key]
end
return out
