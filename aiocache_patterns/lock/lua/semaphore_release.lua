-- lock/semaphore_release: give back a lease and wake the waiters whose turn it is;
-- also how a waiter leaves (cancelled, timed out), giving back a lease it may
-- have been granted meanwhile, in the same atomic step.
--
-- KEYS[1]  holders (zset: token -> lease end, ms)
-- KEYS[2]  the wait queue (zset: token -> arrival number)
-- KEYS[3]  waiter deadlines (hash: token -> ms)
-- KEYS[4]  this release's receipt (kept 10 s: a resent release answers from it)
-- ARGV[1]  token of the caller
-- ARGV[2]  wake-up channel
-- ARGV[3]  limit: how many holders at once
--
-- Returns {released, woken}: released is 1 if the caller held a live lease (now
-- given back), 0 if not (it had expired and may have been taken: nothing else
-- is changed); woken is 0 if Redis refused to publish a wake-up (an ACL user
-- without channel permissions), else 1.
--
-- The lease goes first (a caller that held none leaves the queue): deletes,
-- which a full Redis (OOM) cannot refuse, before anything written for bookkeeping.
-- Then every live waiter who may now take a free place (up to 16) is woken
-- with "<token>"; a wake-up is only a hint, the waiter asks semaphore_acquire.
-- Waking after a waiter left is what keeps a cancelled head of the queue from
-- stalling the waiters behind it.
--
-- Resend: safe (the receipt answers a repeat with the first reply; a repeat changes nothing)

local token = ARGV[1]
local now_ms = server_time()
local score = redis.call('ZSCORE', KEYS[1], token)
local held = score and tonumber(score) > now_ms
redis.call('ZREM', KEYS[1], token)
if not held then
    -- A waiter leaving, or a holder whose lease ended (a holder is never queued).
    redis.call('ZREM', KEYS[2], token)
    redis.call('HDEL', KEYS[3], token)
    local receipt = redis.call('GET', KEYS[4])
    if receipt then
        return {1, tonumber(receipt) or 1}
    end
end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
local woken = 1
if free > 0 then
    for _, waiter in ipairs(live_waiters(KEYS[2], KEYS[3], now_ms, math.min(free, 16))) do
        woken = math.min(woken, wake(ARGV[2], waiter))
    end
end
if not held then
    return {0, woken}
end
redis.pcall('SET', KEYS[4], woken, 'PX', 10000)
return {1, woken}
