-- The next chat number of an application, or -1 when its counter is not seeded yet (never
-- INCR a missing counter: after a Redis data loss that would hand out numbers again).
-- KEYS[1]: the application's chat counter
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call('INCR', KEYS[1])
