-- semaphore_release: give back a lease and wake the first waiter.
--
-- KEYS[1]  holders (zset)
-- KEYS[2]  the wait queue (zset)
-- ARGV[1]  token of the caller
-- ARGV[2]  wake-up channel
--
-- Returns 1 if the caller held a lease (now given back), 0 if not (it had
-- expired and may have been taken: nothing is changed).

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now_ms then
    redis.call('ZREM', KEYS[1], ARGV[1])
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if head then
    redis.call('PUBLISH', ARGV[2], head)
end
return 1
