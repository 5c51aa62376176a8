-- Make this process's holdings what it knows it holds, after a call that got no answer
-- (a timeout: Redis may have run it after the caller gave up). The difference goes
-- back to (or onto) each counter's reservations. The caller holds its other calls back
-- meanwhile, so nothing it sent is in flight.
--
-- KEYS[1]  the set of counters this process holds a field on; KEYS[2] the seeded marker
-- ARGV[1]  this process's field, h:<process id>; then pairs: counter key, amount held
-- Returns how many counters were corrected, or -2 when unseeded (try again later).
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -2
end
local field = ARGV[1]
local want = {}
for i = 2, #ARGV, 2 do
  want[ARGV[i]] = ARGV[i + 1]
end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if want[key] == nil then
    want[key] = '0'
  end
end
local corrected = 0
for key, amount in pairs(want) do
  if redis.call('EXISTS', key) == 1 then
    local delta = tonumber(amount) - (tonumber(redis.call('HGET', key, field)) or 0)
    if delta ~= 0 then
      if redis.call('HINCRBY', key, 'reserved', string.format('%.0f', delta)) < 0 then
        redis.call('HSET', key, 'reserved', '0')
      end
      corrected = corrected + 1
    end
    redis.call('HSET', key, field, amount)
    redis.call('SADD', KEYS[1], key)
  end
end
return corrected
