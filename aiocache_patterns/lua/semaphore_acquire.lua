-- semaphore_acquire: take one of `limit` leases if it is the caller's turn.
--
-- KEYS[1]  holders (zset: token -> lease end, ms)
-- KEYS[2]  the fencing counter
-- KEYS[3]  the wait queue (zset: token -> arrival number)
-- KEYS[4]  waiter deadlines (hash: token -> ms; field '#seq' numbers arrivals)
-- ARGV[1]  token of the caller
-- ARGV[2]  lease in ms
-- ARGV[3]  '1' to join the queue if no lease can be taken now, '0' to try once
-- ARGV[4]  how long (ms) a queued waiter keeps its place without trying again
-- ARGV[5]  time to live (ms) of the fencing counter
-- ARGV[6]  limit: how many holders at once
--
-- Returns {1, fencing_token} when taken (or already held: the lease is then
-- extended); {0, ms} when not, ms being how long until the first lease ends
-- (-2 if a lease is free but waiters ahead of the caller take it first).
--
-- Expired leases are dropped first, so a crashed holder frees its place when
-- its lease ends. Waiters are admitted in arrival order; waiters whose
-- deadline passed (a crashed process) lose their place.

local token = ARGV[1]
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[6])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function keep_alive(key, ms)
    if redis.call('PTTL', key) < ms then
        redis.call('PEXPIRE', key, ms)
    end
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local held = redis.call('ZSCORE', KEYS[1], token)
if held then
    redis.call('ZADD', KEYS[1], now_ms + lease, token)
    keep_alive(KEYS[1], lease)
    return {1, redis.call('GET', KEYS[2]) or '0'}
end

local free = limit - redis.call('ZCARD', KEYS[1])
local rank = nil
if free > 0 then
    -- Drop dead waiters among those who would be admitted before the caller.
    for _ = 1, 100 do
        local ahead = redis.call('ZRANGE', KEYS[3], 0, free - 1)
        local dropped = false
        for _, waiter in ipairs(ahead) do
            if waiter ~= token then
                local deadline = tonumber(redis.call('HGET', KEYS[4], waiter) or '0')
                if deadline <= now_ms then
                    redis.call('ZREM', KEYS[3], waiter)
                    redis.call('HDEL', KEYS[4], waiter)
                    dropped = true
                end
            end
        end
        if not dropped then break end
    end
    rank = redis.call('ZRANK', KEYS[3], token)
    local queued = redis.call('ZCARD', KEYS[3])
    if (rank and rank < free) or (not rank and queued < free) then
        redis.call('ZADD', KEYS[1], now_ms + lease, token)
        keep_alive(KEYS[1], lease)
        if rank then
            redis.call('ZREM', KEYS[3], token)
            redis.call('HDEL', KEYS[4], token)
        end
        local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
        local fence = string.format('%.0f', math.max(previous + 1, now_us))
        redis.call('SET', KEYS[2], fence, 'PX', ARGV[5])
        return {1, fence}
    end
end

if ARGV[3] == '1' then
    if not redis.call('ZSCORE', KEYS[3], token) then
        redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[4], '#seq', 1), token)
    end
    local waiter_lease = tonumber(ARGV[4])
    redis.call('HSET', KEYS[4], token, now_ms + waiter_lease)
    redis.call('PEXPIRE', KEYS[3], waiter_lease * 2)
    redis.call('PEXPIRE', KEYS[4], waiter_lease * 2)
end

if free > 0 then return {0, -2} end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.max(1, tonumber(first[2]) - now_ms)}
