-- The next message number of a chat, in one step with the check that the chat exists.
-- Returns the number; 0 when the chat does not exist (beyond the chat counter, or voided);
-- -1 when the application's chat counter is not seeded; -2 when the chat's message counter
-- is not seeded (the caller checks the chat against the store, seeds, and calls again).
-- KEYS[1]: the application's chat counter   KEYS[2]: its set of voided chat numbers
-- KEYS[3]: the chat's message counter        ARGV[1]: the chat number (decimal)
local function le(a, b) -- decimal strings without leading zeros: a <= b, exactly
  if #a ~= #b then return #a < #b end
  return a <= b
end
local last = redis.call('GET', KEYS[1])
if not last then
  return -1
end
if not le(ARGV[1], last) or redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 0
end
if ARGV[2] == 'peek' then
  -- only asking whether the chat exists: 1 if its counter is seeded, else -2
  if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end
  return -2
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  return -2
end
return redis.call('INCR', KEYS[3])
