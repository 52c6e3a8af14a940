-- semaphore_release: give back a lease and wake the first waiter.
--
-- KEYS[1]  holders (zset)
-- KEYS[2]  the wait queue (zset)
-- KEYS[3]  this release's receipt (kept 10 s: a resent release answers from it)
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
    if redis.call('EXISTS', KEYS[3]) == 1 then
        return 1  -- a resent release that already ran
    end
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', 10000)
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if head then
    redis.call('PUBLISH', ARGV[2], head)
end
return 1
