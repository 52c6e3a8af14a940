-- lock_release: compare-and-delete, or hand the lock straight to the next waiter.
--
-- KEYS[1]  the lock
-- KEYS[2]  the fencing counter
-- KEYS[3]  the wait queue (zset: token -> arrival number)
-- KEYS[4]  waiter deadlines (hash: token -> ms)
-- KEYS[5]  this release's receipt (kept 10 s: a resent release answers from it)
-- ARGV[1]  token of the caller
-- ARGV[2]  wake-up channel
-- ARGV[3]  lease (ms) given to the waiter the lock is handed to
-- ARGV[4]  time to live (ms) of the fencing counter
--
-- Returns 0 if the caller did not hold the lock (expired, or another holder
-- has it: nothing is changed); 1 if it was released with nobody waiting; 2 if
-- it was handed to the first live waiter, which is told on the channel with
-- "<token>:<fencing token>". The hand-off lease is short (the new holder
-- extends it on waking), so a waiter that died meanwhile blocks nobody for long.
-- A release that redis-py sends again after a lost reply finds its receipt and
-- answers 1 again instead of "not yours".

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    if redis.call('EXISTS', KEYS[5]) == 1 then
        return 1
    end
    return 0
end
redis.call('SET', KEYS[5], '1', 'PX', 10000)
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

for _ = 1, 100 do
    local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
    if not head then break end
    redis.call('ZREM', KEYS[3], head)
    local deadline = tonumber(redis.call('HGET', KEYS[4], head) or '0')
    redis.call('HDEL', KEYS[4], head)
    if deadline > now_ms then
        redis.call('SET', KEYS[1], head, 'PX', ARGV[3])
        local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
        local fence = string.format('%.0f', math.max(previous + 1, now_us))
        redis.call('SET', KEYS[2], fence, 'PX', ARGV[4])
        redis.call('PUBLISH', ARGV[2], head .. ':' .. fence)
        return 2
    end
end
redis.call('DEL', KEYS[1])
return 1
