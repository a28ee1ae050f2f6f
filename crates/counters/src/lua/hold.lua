-- Claims or renews a process's hold until Redis's own clock passes now + ARGV[2] ms (the
-- servers' clocks may differ; only this one is compared).
-- KEYS[1]: the sorted set of holds; ARGV[1]: the process; ARGV[2]: how long the hold lasts
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
return 1
