-- The usage flush takes the counters changed since the last one (settle.lua and
-- reset.lua add them to KEYS[1]) into KEYS[2], which it reads and then deletes. A flush
-- that failed before deleting KEYS[2] left it behind: what was changed since is added
-- to it, so nothing is lost between two flushes. Returns how many names KEYS[2] holds.
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])
    redis.call('DEL', KEYS[1])
  else
    redis.call('RENAME', KEYS[1], KEYS[2])
  end
end
return redis.call('SCARD', KEYS[2])
