-- Drop reservations and add actual usage: the Redis twin of MemoryCounterStore.settle.
--
-- KEYS[1..n]  counter hashes {used, reserved, last_reset}
-- KEYS[n+1]   this process's holdings hash (counter key -> amount it holds reserved)
-- KEYS[n+2]   the seeded marker (absent: Redis lost its data; write nothing)
-- ARGV: five per op: reserved, actual, floor_ms, reset_to_ms, ttl_ms
--
-- A process gives back at most what it still holds: when a reaper has already taken a
-- reservation back (the process was presumed dead), settling it again must not eat the
-- reservations of other processes. Returns 0, or -2 when unseeded.
local n = #KEYS - 2
local holdings = KEYS[n + 1]
if redis.call('EXISTS', KEYS[n + 2]) == 0 then
  return -2
end

for i = 1, n do
  local at = (i - 1) * 5
  local key, give, actual = KEYS[i], ARGV[at + 1], ARGV[at + 2]
  local floor, reset_to = ARGV[at + 3], ARGV[at + 4]
  local last = tonumber(redis.call('HGET', key, 'last_reset'))
  if last == nil then
    redis.call('HSET', key, 'used', '0', 'reserved', '0', 'last_reset', reset_to)
  elseif last < tonumber(floor) then
    redis.call('HSET', key, 'used', '0', 'last_reset', reset_to)
  end
  if give ~= '0' then
    local held = redis.call('HGET', holdings, key)
    if held == false or tonumber(held) <= 0 then
      give = '0'
    elseif tonumber(held) < tonumber(give) then
      give = held
    end
  end
  if give ~= '0' then
    if redis.call('HINCRBY', holdings, key, '-' .. give) <= 0 then
      redis.call('HDEL', holdings, key)
    end
    if redis.call('HINCRBY', key, 'reserved', '-' .. give) < 0 then
      redis.call('HSET', key, 'reserved', '0')
    end
  end
  if actual ~= '0' then
    redis.call('HINCRBY', key, 'used', actual)
  end
  if ARGV[at + 5] ~= '0' then
    redis.call('PEXPIRE', key, ARGV[at + 5])
  end
end
return 0
