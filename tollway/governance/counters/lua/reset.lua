-- An operator's reset: usage to zero and the window restarted at ARGV[1]; reservations
-- in flight stay (their requests will settle). KEYS: counter hashes.
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 'used', '0', 'last_reset', ARGV[1])
  redis.call('HSETNX', KEYS[i], 'reserved', '0')
end
return #KEYS
