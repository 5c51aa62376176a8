-- Make this process's holdings what it knows it holds, after a call that got no answer
-- (a timeout: Redis may have run it after the caller gave up). The difference goes
-- back to (or onto) each counter's reservations. The caller holds its other calls back
-- meanwhile, so nothing it sent is in flight.
--
-- KEYS[1]  this process's holdings hash; KEYS[2] the seeded marker
-- ARGV     pairs: counter key, amount held
-- Returns how many counters were corrected, or -2 when unseeded (try again later).
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -2
end
local want = {}
for i = 1, #ARGV, 2 do
  want[ARGV[i]] = tonumber(ARGV[i + 1])
end
local have = {}
local entries = redis.call('HGETALL', KEYS[1])
for k = 1, #entries, 2 do
  have[entries[k]] = tonumber(entries[k + 1])
end
local corrected = 0
local function fix(key, delta)
  if delta ~= 0 and redis.call('EXISTS', key) == 1 then
    if redis.call('HINCRBY', key, 'reserved', delta) < 0 then
      redis.call('HSET', key, 'reserved', '0')
    end
    corrected = corrected + 1
  end
end
for key, amount in pairs(have) do
  fix(key, (want[key] or 0) - amount)
end
for key, amount in pairs(want) do
  if have[key] == nil then
    fix(key, amount)
  end
end
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return corrected
