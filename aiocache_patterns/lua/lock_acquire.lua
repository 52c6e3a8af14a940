-- lock_acquire: take a lock if it is free and it is the caller's turn.
--
-- KEYS[1]  the lock (string: holder's token, with PX)
-- KEYS[2]  the fencing counter
-- KEYS[3]  the wait queue (zset: token -> arrival number)
-- KEYS[4]  waiter deadlines (hash: token -> ms; field '#seq' numbers arrivals)
-- ARGV[1]  token of the caller
-- ARGV[2]  lease in ms
-- ARGV[3]  '1' to join the queue if the lock cannot be taken now, '0' to try once
-- ARGV[4]  how long (ms) a queued waiter keeps its place without trying again
-- ARGV[5]  time to live (ms) of the fencing counter
--
-- Returns {1, fencing_token} when taken (also when it was already handed to
-- the caller by lock_release, whose lease is then extended to ARGV[2]);
-- {0, pttl} when not (pttl of the lock in ms, or -2 when the lock is free but
-- another waiter is ahead).
--
-- Fairness: a free lock goes to the head of the queue; waiters at the head
-- whose deadline passed (a crashed process) are dropped. Fencing tokens are
-- max(previous + 1, server time in microseconds): strictly increasing, and
-- still above every token ever issued if the counter key expires or a
-- failover loses its last writes.

local token = ARGV[1]
if redis.call('GET', KEYS[1]) == token then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, redis.call('GET', KEYS[2]) or '0'}
end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

local head = nil
for _ = 1, 100 do
    head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
    if not head or head == token then break end
    local deadline = tonumber(redis.call('HGET', KEYS[4], head) or '0')
    if deadline > now_ms then break end
    redis.call('ZREM', KEYS[3], head)
    redis.call('HDEL', KEYS[4], head)
    head = nil
end

if redis.call('EXISTS', KEYS[1]) == 0 and (not head or head == token) then
    redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
    if head then
        redis.call('ZREM', KEYS[3], token)
        redis.call('HDEL', KEYS[4], token)
    end
    local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
    local fence = math.max(previous + 1, now_us)
    redis.call('SET', KEYS[2], string.format('%.0f', fence), 'PX', ARGV[5])
    return {1, string.format('%.0f', fence)}
end

if ARGV[3] == '1' then
    if not redis.call('ZSCORE', KEYS[3], token) then
        redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[4], '#seq', 1), token)
    end
    local lease = tonumber(ARGV[4])
    redis.call('HSET', KEYS[4], token, now_ms + lease)
    redis.call('PEXPIRE', KEYS[3], lease * 2)
    redis.call('PEXPIRE', KEYS[4], lease * 2)
end

local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return {0, -2} end
return {0, pttl}
