-- Seed counters Redis does not know yet; known ones are kept (several nodes starting at
-- once all load the same database state, and none may overwrite live counters).
--
-- KEYS[1..n]  counter hashes; KEYS[n+1] the seeded marker
-- ARGV[1]     '1' when this is the last batch of a full load: then set the marker
-- ARGV: then two per counter: used, last_reset
-- Returns how many counters were seeded.
local n = #KEYS - 1
local seeded = 0
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'used', ARGV[2 * i], 'reserved', '0', 'last_reset', ARGV[2 * i + 1])
    seeded = seeded + 1
  end
end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[n + 1], '1')
end
return seeded
