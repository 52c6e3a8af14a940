-- lock/semaphore_extend: push the end of a live lease.
--
-- KEYS[1]  holders (zset: token -> lease end, ms)
-- ARGV[1]  token of the caller
-- ARGV[2]  new lease in ms, from now
--
-- Returns 1 if the caller holds a live lease (extended), 0 if not.
--
-- Expired leases are dropped first: housekeeping, and a delete, so that a full
-- Redis (OOM) does not refuse the score update that follows (it adds no data),
-- just as it does not refuse lock_extend's PEXPIRE.
--
-- Resend: safe (a repeat sets the same lease end again and answers the same)

local now_ms = server_time()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now_ms + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then
    redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
