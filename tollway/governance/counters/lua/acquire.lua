-- Reserve on every counter or on none: the Redis twin of MemoryCounterStore.acquire.
--
-- KEYS[1..n]  counter hashes {used, reserved, last_reset}
-- KEYS[n+1]   this process's holdings hash (counter key -> amount it holds reserved)
-- KEYS[n+2]   the owners sorted set (process id -> lease deadline, Redis clock, ms)
-- KEYS[n+3]   the seeded marker (absent: Redis lost its data and must be reseeded)
-- ARGV[1] owner id, ARGV[2] lease ms, then five per op: limit, amount, floor_ms, reset_to_ms, ttl_ms
--
-- Amounts travel as decimal strings and are written with HINCRBY, so stored values are
-- exact 64-bit integers; only the limit comparison uses Lua's doubles (exact below 2^53).
-- Returns {-2} when unseeded, else {failed, used1, reserved1, last_reset1, used2, ...}
-- with failed = -1 (all reserved) or the 0-based index of the first op that did not fit.
local n = #KEYS - 3
local holdings, owners = KEYS[n + 1], KEYS[n + 2]
if redis.call('EXISTS', KEYS[n + 3]) == 0 then
  return {-2}
end

-- The counter rolled into the op's window (created when missing); returns used, reserved.
local function current(key, floor, reset_to)
  local state = redis.call('HMGET', key, 'used', 'reserved', 'last_reset')
  local last = tonumber(state[3])
  if last == nil then
    redis.call('HSET', key, 'used', '0', 'reserved', '0', 'last_reset', reset_to)
    return 0, 0
  end
  if last < tonumber(floor) then
    redis.call('HSET', key, 'used', '0', 'last_reset', reset_to)
    return 0, tonumber(state[2])
  end
  return tonumber(state[1]), tonumber(state[2])
end

local failed = -1
for i = 1, n do
  local at = 2 + (i - 1) * 5
  local key, amount = KEYS[i], ARGV[at + 2]
  local used, reserved = current(key, ARGV[at + 3], ARGV[at + 4])
  if failed < 0 then
    if used + reserved + tonumber(amount) > tonumber(ARGV[at + 1]) then
      failed = i - 1
      for j = 1, i - 1 do -- all or nothing: take back this call's reservations
        local taken = ARGV[2 + (j - 1) * 5 + 2]
        if taken ~= '0' then
          redis.call('HINCRBY', KEYS[j], 'reserved', '-' .. taken)
        end
      end
    elseif amount ~= '0' then
      redis.call('HINCRBY', key, 'reserved', amount)
    end
  end
  if ARGV[at + 5] ~= '0' then
    redis.call('PEXPIRE', key, ARGV[at + 5])
  end
end

if failed < 0 then
  for i = 1, n do
    local amount = ARGV[2 + (i - 1) * 5 + 2]
    if amount ~= '0' then
      redis.call('HINCRBY', holdings, KEYS[i], amount)
    end
  end
  local now = redis.call('TIME')
  redis.call('ZADD', owners, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2]), ARGV[1])
end

local out = {failed}
for i = 1, n do
  local state = redis.call('HMGET', KEYS[i], 'used', 'reserved', 'last_reset')
  out[#out + 1] = state[1]
  out[#out + 1] = state[2]
  out[#out + 1] = state[3]
end
return out
