-- Readings under the given windows, changing nothing: the twin of MemoryCounterStore.read.
--
-- KEYS[1..n]  counter hashes {used, reserved, last_reset}
-- ARGV: two per op: floor_ms, reset_to_ms
-- Returns {used1, reserved1, last_reset1, used2, ...} as decimal strings.
local out = {}
for i = 1, #KEYS do
  local floor, reset_to = ARGV[2 * i - 1], ARGV[2 * i]
  local state = redis.call('HMGET', KEYS[i], 'used', 'reserved', 'last_reset')
  local last = tonumber(state[3])
  if last == nil then
    out[#out + 1], out[#out + 2], out[#out + 3] = '0', '0', reset_to
  elseif last < tonumber(floor) then
    out[#out + 1], out[#out + 2], out[#out + 3] = '0', state[2], reset_to
  else
    out[#out + 1], out[#out + 2], out[#out + 3] = state[1], state[2], state[3]
  end
end
return out
