-- Seeds a chat's counters in one step, unless they are seeded: the floor and the version
-- counter are written with the message counter, so whoever sees the counter sees them too.
-- KEYS[1]: message counter   KEYS[2]: message floor   KEYS[3]: version counter
-- ARGV[1]: highest stored message number   ARGV[2]: highest stored version
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
return 1
