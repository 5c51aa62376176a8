-- Reserve on every counter of a request or on none: the Redis twin of
-- MemoryCounterStore.acquire, for a batch of requests (those of one event-loop turn of
-- one gateway process), each all or nothing, in order, as if they came one by one.
--
-- KEYS        the counters of every request, request after request (a counter may
--             appear many times), then: the set of counters this process holds a field
--             on (for the reaper), and the seeded marker (absent: Redis lost its data)
-- ARGV[1]     five big-endian doubles per op: limit, amount, floor_ms, reset_to_ms,
--             window_ms (one binary argument: far cheaper to send and read than 5n decimals)
-- ARGV[2]     this process's field in a counter hash, h:<process id>: what it holds
--             reserved there
-- ARGV[3]     one big-endian double per request: how many ops it has
--
-- Each counter is read once and written once per batch, whatever the number of requests
-- on it. Values are compared and computed as Lua doubles, which count integers exactly
-- below 2^53 (one request's amount always is); a total beyond that is written as exact
-- HINCRBY deltas instead. A counter's expiry is set when it starts a window: a counter in
-- use rolls at least once a window, so it never expires in use (two windows and an hour;
-- no expiry when window_ms is 0, unknown).
-- Returns big-endian doubles (one binary reply, cheap to read): -2 alone when unseeded,
-- else per request: failed, then used, reserved, last_reset of each op after it; failed
-- is -1 (all reserved) or the 0-based index of its first op that did not fit.
local total = #KEYS - 3 -- the tail: holdings, seeded marker, touched set (settle.lua)
local holder_set, mine = KEYS[total + 1], ARGV[2]
if redis.call('EXISTS', KEYS[total + 2]) == 0 then
  return struct.pack('>d', -2)
end
local EXACT = 9007199254740992
local MARGIN = 3600000 -- expiry beyond two windows: requests in flight settle long before
local v = {struct.unpack('>' .. string.rep('d', 5 * total), ARGV[1])}
local sizes = {struct.unpack('>' .. string.rep('d', #ARGV[3] / 8), ARGV[3])}

-- Per counter (slot j, in order of first op): the state as the batch leaves it.
local slot, keys = {}, {}
local used, reserved, last, held, add, started, window = {}, {}, {}, {}, {}, {}, {}
local out = {}
local first = 1
for request = 1, #ARGV[3] / 8 do
  local size = sizes[request]
  local failed = -1
  for i = first, first + size - 1 do
    local at = (i - 1) * 5
    local key = KEYS[i]
    local j = slot[key]
    if j == nil then
      j = #keys + 1
      slot[key], keys[j] = j, key
      local state = redis.call('HMGET', key, 'used', 'reserved', 'last_reset', mine)
      used[j], reserved[j], last[j], held[j], add[j] =
        tonumber(state[1]), tonumber(state[2]), tonumber(state[3]), tonumber(state[4]), 0
      if last[j] == nil then -- a new counter
        used[j], reserved[j], last[j], started[j], window[j] = 0, 0, v[at + 4], true, v[at + 5]
      end
    end
    if last[j] < v[at + 3] then -- a new window
      used[j], last[j], started[j], window[j] = 0, v[at + 4], true, v[at + 5]
    end
    if failed < 0 then
      local amount = v[at + 2]
      if used[j] + reserved[j] + amount > v[at + 1] then
        failed = i - first
        for k = first, i - 1 do -- all or nothing: the request's earlier ops are not reserved
          local earlier, taken = slot[KEYS[k]], v[(k - 1) * 5 + 2]
          reserved[earlier], add[earlier] = reserved[earlier] - taken, add[earlier] - taken
        end
      else
        reserved[j], add[j] = reserved[j] + amount, add[j] + amount
      end
    end
  end
  out[#out + 1] = failed
  for i = first, first + size - 1 do
    local j = slot[KEYS[i]]
    out[#out + 1], out[#out + 2], out[#out + 3] = used[j], reserved[j], last[j]
  end
  first = first + size
end

for j, key in ipairs(keys) do
  local holds = add[j] ~= 0
  local now_held = (held[j] or 0) + add[j]
  if reserved[j] < EXACT and now_held < EXACT then -- one write, of the fields that changed
    if started[j] and holds then
      redis.call('HSET', key, 'used', used[j], 'reserved', reserved[j], 'last_reset', last[j], mine, now_held)
    elseif started[j] then
      redis.call('HSET', key, 'used', used[j], 'reserved', reserved[j], 'last_reset', last[j])
    elseif holds then
      redis.call('HSET', key, 'reserved', reserved[j], mine, now_held)
    end
  else -- totals beyond 2^53: let Redis add the exact deltas
    if started[j] then
      redis.call('HSET', key, 'used', '0', 'last_reset', last[j])
      redis.call('HSETNX', key, 'reserved', '0')
    end
    if holds then
      redis.call('HINCRBY', key, 'reserved', add[j])
      redis.call('HINCRBY', key, mine, add[j])
    end
  end
  if holds and held[j] == nil then -- its first field on this counter: tell the reaper
    redis.call('SADD', holder_set, key)
  end
  if started[j] and window[j] > 0 then
    redis.call('PEXPIRE', key, 2 * window[j] + MARGIN)
  end
end
return struct.pack('>' .. string.rep('d', #out), unpack(out))
