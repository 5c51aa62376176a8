-- Drop reservations and add actual usage: the Redis twin of MemoryCounterStore.settle.
--
-- KEYS[1..n]  counter hashes {used, reserved, last_reset}
-- KEYS[n+1]   this process's holdings hash (counter key -> amount it holds reserved)
-- KEYS[n+2]   the seeded marker (absent: Redis lost its data; write nothing)
-- ARGV        five per op: reserved, actual, floor_ms, reset_to_ms, ttl_ms
--
-- A process gives back at most what it still holds: when a reaper has already taken a
-- reservation back (the process was presumed dead), settling it again must not eat the
-- reservations of other processes. As in acquire.lua, the expiry is set when a counter
-- starts a window. Returns 0, or -2 when unseeded.
local n = #KEYS - 2
local holdings = KEYS[n + 1]
if redis.call('EXISTS', KEYS[n + 2]) == 0 then
  return -2
end

for i = 1, n do
  local at = (i - 1) * 5
  local key, give, actual, ttl = KEYS[i], ARGV[at + 1], ARGV[at + 2], ARGV[at + 5]
  local last = tonumber(redis.call('HGET', key, 'last_reset'))
  if last == nil or last < tonumber(ARGV[at + 3]) then -- a new counter, or a new window
    redis.call('HSET', key, 'used', '0', 'last_reset', ARGV[at + 4])
    redis.call('HSETNX', key, 'reserved', '0')
    if ttl ~= '0' then
      redis.call('PEXPIRE', key, ttl)
    end
  end
  if give ~= '0' then
    local left = redis.call('HINCRBY', holdings, key, '-' .. give)
    local back = '-' .. give
    if left < 0 then -- it held less (a reaper gave some back already): give back only that
      redis.call('HSET', holdings, key, '0')
      back = -(left + tonumber(give))
    end
    if back ~= 0 and redis.call('HINCRBY', key, 'reserved', back) < 0 then
      redis.call('HSET', key, 'reserved', '0')
    end
  end
  if actual ~= '0' then
    redis.call('HINCRBY', key, 'used', actual)
  end
end
return 0
