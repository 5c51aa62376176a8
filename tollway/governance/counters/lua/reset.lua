-- An operator's reset: usage to zero and the window restarted at ARGV[1]; reservations
-- in flight stay (their requests will settle). KEYS: counter hashes, then the set of
-- counters changed since the last usage flush (take_touched.lua).
local n = #KEYS - 1
for i = 1, n do
  redis.call('HSET', KEYS[i], 'used', '0', 'last_reset', ARGV[1])
  redis.call('HSETNX', KEYS[i], 'reserved', '0')
  redis.call('SADD', KEYS[n + 1], KEYS[i])
end
return n
