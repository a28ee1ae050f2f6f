-- One atomic step on a chat's counters (see floor.rs): check that the chat was handed out
-- and not voided, that its counters are seeded, then do the operation.
-- KEYS[1]: the application's chat counter   KEYS[2]: its set of voided chat numbers
-- KEYS[3]: the chat's message counter        KEYS[4]: the chat's message floor
-- KEYS[5]: the chat's version counter        KEYS[6]: the chat's set of voided messages
-- ARGV[1]: the chat number (decimal)   ARGV[2]: 'peek' | 'next' | 'version'
-- ARGV[3]: the message number (decimal), for 'version'
-- Returns {kind, value, floor}: kind -1 the application's counter is not seeded, -2 the
-- chat's counters are not seeded, 0 no such chat, 1 done (value: the number or version;
-- floor: the message floor), 2 no such message.
local function le(a, b) -- decimal strings without leading zeros: a <= b, exactly
  if #a ~= #b then return #a < #b end
  return a <= b
end
local last = redis.call('GET', KEYS[1])
if not last then
  return {-1, 0, 0}
end
if not le(ARGV[1], last) or redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return {0, 0, 0}
end
local messages = redis.call('GET', KEYS[3])
if not messages then
  return {-2, 0, 0}
end
local op = ARGV[2]
if op == 'peek' then
  return {1, 0, 0}
elseif op == 'next' then
  return {1, redis.call('INCR', KEYS[3]), 0}
end
-- 'version'
if not le(ARGV[3], messages) or redis.call('SISMEMBER', KEYS[6], ARGV[3]) == 1 then
  return {2, 0, 0}
end
local floor = tonumber(redis.call('GET', KEYS[4]) or '0')
return {1, redis.call('INCR', KEYS[5]), floor}
