-- The rate limit of one application, shared by every server (GCRA on Redis's own clock).
-- KEYS[1]: the application's theoretical arrival time, in microseconds
-- ARGV[1]: microseconds between requests at the average rate; ARGV[2]: the burst
-- Returns 0 when the request may go on, else the microseconds to wait.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
