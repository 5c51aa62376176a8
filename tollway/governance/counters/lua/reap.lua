-- Renew this process's lease, then give back the reservations of processes whose lease
-- ran out (killed mid-request, or cut off from Redis for longer than the lease).
--
-- KEYS[1]  the owners sorted set (process id -> lease deadline, Redis clock, ms)
-- ARGV[1]  this process's id; ARGV[2] its lease in ms (negative: give it up now, at close)
-- ARGV[3]  the prefix of holdings hashes (prefix .. owner id)
--
-- The holdings keys are derived here from the owners set rather than passed in KEYS:
-- fine on the single Redis primary this store requires (see redis.py).
-- Returns the number of counters whose reservations were given back.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local released = 0
for _, owner in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local holdings = ARGV[3] .. owner
  local entries = redis.call('HGETALL', holdings)
  for k = 1, #entries, 2 do
    local key, amount = entries[k], entries[k + 1]
    if tonumber(amount) > 0 and redis.call('EXISTS', key) == 1 then
      if redis.call('HINCRBY', key, 'reserved', '-' .. amount) < 0 then
        redis.call('HSET', key, 'reserved', '0')
      end
      released = released + 1
    end
  end
  redis.call('DEL', holdings)
  redis.call('ZREM', KEYS[1], owner)
end
return released
