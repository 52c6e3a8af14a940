-- lock/semaphore_acquire: take one of `limit` leases if it is the caller's turn.
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
-- extended and a fresh fencing token issued); {0, ms} when not, ms being how
-- long until the first lease ends (-2 if a lease is free but waiters ahead of
-- the caller take it first).
--
-- Expired leases are dropped first, so a crashed holder frees its place when
-- its lease ends. Waiters are admitted in arrival order; waiters whose
-- deadline passed (a crashed process) lose their place. A wake-up is only a
-- hint: a waiter always asks this script before it believes it holds a lease.
--
-- Resend: safe (a repeat finds the lease its own and answers with a fresh, higher fencing token)

local token = ARGV[1]
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[6])
local now_ms, now_us = server_time()

local function keep_alive(key, ms)
    if redis.call('PTTL', key) < ms then
        redis.call('PEXPIRE', key, ms)
    end
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZSCORE', KEYS[1], token) then
    redis.call('ZADD', KEYS[1], now_ms + lease, token)
    keep_alive(KEYS[1], lease)
    return {1, next_fence(KEYS[2], now_us, ARGV[5])}
end

local free = limit - redis.call('ZCARD', KEYS[1])
if free > 0 then
    -- Dead waiters among those who would be admitted before the caller lose their place.
    local ahead = live_waiters(KEYS[3], KEYS[4], now_ms, free, token)
    local rank = nil
    for i, waiter in ipairs(ahead) do
        if waiter == token then
            rank = i - 1
        end
    end
    if rank or #ahead < free then
        local fence = next_fence(KEYS[2], now_us, ARGV[5])
        redis.call('ZADD', KEYS[1], now_ms + lease, token)
        keep_alive(KEYS[1], lease)
        if rank then
            redis.call('ZREM', KEYS[3], token)
            redis.call('HDEL', KEYS[4], token)
        end
        return {1, fence}
    end
end

if ARGV[3] == '1' then
    keep_place(KEYS[3], KEYS[4], token, now_ms, tonumber(ARGV[4]))
end

if free > 0 then return {0, -2} end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.max(1, tonumber(first[2]) - now_ms)}
