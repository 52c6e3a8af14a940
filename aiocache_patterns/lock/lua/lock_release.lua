-- lock/lock_release: give the lock back (compare-and-delete) and hand it to the
-- next live waiter; also how a waiter leaves (cancelled, timed out), giving
-- back a lock that was handed to it meanwhile, in the same atomic step.
--
-- KEYS[1]  the lock
-- KEYS[2]  the wait queue (zset: token -> arrival number)
-- KEYS[3]  waiter deadlines (hash: token -> ms)
-- KEYS[4]  the fencing counter
-- KEYS[5]  this release's receipt (kept 10 s: a resent release answers from it)
-- ARGV[1]  token of the caller
-- ARGV[2]  wake-up channel
-- ARGV[3]  lease (ms) given to the waiter the lock is handed to
-- ARGV[4]  time to live (ms) of the fencing counter
--
-- Returns {released, woken[, waiter, fencing_token]}: released is 1 if the
-- caller held the lock (it is now free, or handed over), 0 if it did not
-- (expired, or another holder has it: the lock is left alone); woken is 0 if
-- Redis refused to publish a wake-up (an ACL user without channel
-- permissions), else 1; waiter and fencing_token name the waiter the lock was
-- handed to, and its token (the releaser tells a waiter in its own process).
--
-- A caller that does not hold the lock leaves the queue. For the holder, the
-- delete comes first: it is the release, so it comes before anything written
-- for bookkeeping (the hand-off, the fencing counter, the receipt), and a full
-- Redis (OOM) cannot refuse it. A lock
-- handed over gets a short lease, and the waiter is told "<token>" on the
-- channel: a hint, on which the waiter confirms with lock_acquire (which
-- stretches the lease and issues its own fencing token), so a waiter that died
-- meanwhile blocks the others for that short lease only. When the lock is free
-- and waiters remain (the caller was the one woken), the first live one is woken.
--
-- Resend: safe (the receipt answers a repeat with the first reply; a repeat changes nothing)

local token = ARGV[1]
if redis.call('GET', KEYS[1]) ~= token then
    -- Not the holder: a waiter leaving, or a holder whose lease ended. (A holder
    -- is never in the queue: it left it when it took or was handed the lock.)
    redis.call('ZREM', KEYS[2], token)
    redis.call('HDEL', KEYS[3], token)
    local receipt = redis.call('GET', KEYS[5])
    if receipt then
        local reply = {1}
        for part in string.gmatch(receipt, '[^:]+') do
            reply[#reply + 1] = part
        end
        return reply
    end
    local woken = 1
    if redis.call('EXISTS', KEYS[1]) == 0 then
        local now_ms = server_time()
        local head = live_waiters(KEYS[2], KEYS[3], now_ms, 1)[1]
        if head then
            woken = wake(ARGV[2], head)
        end
    end
    return {0, woken}
end

redis.call('DEL', KEYS[1])
local now_ms, now_us = server_time()
local reply = {1, 1}
local head = live_waiters(KEYS[2], KEYS[3], now_ms, 1)[1]
if head then
    local handed = redis.pcall('SET', KEYS[1], head, 'PX', ARGV[3])
    if not handed.err then
        redis.call('ZREM', KEYS[2], head)
        redis.call('HDEL', KEYS[3], head)
        reply[3], reply[4] = head, next_fence(KEYS[4], now_us, ARGV[4])
    end
    reply[2] = wake(ARGV[2], head)
end
redis.pcall('SET', KEYS[5], table.concat(reply, ':', 2), 'PX', 10000)
return reply
