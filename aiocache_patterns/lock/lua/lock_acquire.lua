-- lock/lock_acquire: take a lock if it is free and it is the caller's turn; or
-- confirm a lock a release handed to the caller.
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
-- Returns {1, fencing_token} when the caller holds the lock now: taken, or
-- handed to it by lock_release (its short hand-off lease is then stretched to
-- ARGV[2]). A waiter's wake-up is only a hint; this is how it learns, from Redis,
-- that the lock is its own and which fencing token it holds.
-- Returns {0, pttl} when not (pttl of the lock in ms, or -2 when the lock is
-- free but another waiter is ahead).
--
-- Fairness: a free lock goes to the head of the queue; waiters at the head
-- whose deadline passed (a crashed process) are dropped. Fencing tokens are
-- issued here, and only here, when a holder first learns it holds the lock.
-- Writes: the fencing counter (the one write that may be refused when Redis
-- is full) comes before the lock, so a refused acquire changes nothing. A
-- waiter already queued keeps its place on a full Redis (keep_place: its first
-- write adds no data); a new arrival cannot join one.
--
-- Resend: safe (a repeat finds the lock its own and answers with a fresh, higher fencing token)

local token = ARGV[1]
local now_ms, now_us = server_time()

if redis.call('GET', KEYS[1]) == token then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, next_fence(KEYS[2], now_us, ARGV[5])}
end

local head = live_waiters(KEYS[3], KEYS[4], now_ms, 1, token)[1]

if redis.call('EXISTS', KEYS[1]) == 0 and (not head or head == token) then
    local fence = next_fence(KEYS[2], now_us, ARGV[5])
    redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
    if head then
        redis.call('ZREM', KEYS[3], token)
        redis.call('HDEL', KEYS[4], token)
    end
    return {1, fence}
end

if ARGV[3] == '1' then
    keep_place(KEYS[3], KEYS[4], token, now_ms, tonumber(ARGV[4]))
end

return {0, redis.call('PTTL', KEYS[1])}
