-- Renew this process's lease, then give back the reservations of processes whose lease
-- ran out (killed mid-request, or cut off from Redis for longer than the lease).
--
-- KEYS[1]  the owners sorted set (process id -> lease deadline, Redis clock, ms)
-- ARGV[1]  this process's id; ARGV[2] its lease in ms (negative: give it up now, at close)
-- ARGV[3]  the prefix of the per-process sets of counters (prefix .. process id)
--
-- A process's reservations are the h:<process id> fields of the counters in its set.
-- Those keys are derived here rather than passed in KEYS: fine on the single Redis
-- primary this store requires (see redis.py). Returns the number of counters whose
-- reservations were given back.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local released = 0
for _, owner in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local holder_set, field = ARGV[3] .. owner, 'h:' .. owner
  for _, key in ipairs(redis.call('SMEMBERS', holder_set)) do
    local held = tonumber(redis.call('HGET', key, field))
    if held ~= nil and held > 0 then
      if redis.call('HINCRBY', key, 'reserved', string.format('%.0f', -held)) < 0 then
        redis.call('HSET', key, 'reserved', '0')
      end
      released = released + 1
    end
    redis.call('HDEL', key, field)
  end
  redis.call('DEL', holder_set)
  redis.call('ZREM', KEYS[1], owner)
end
return released
