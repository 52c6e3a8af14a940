-- semaphore_extend: push the end of a live lease.
--
-- KEYS[1]  holders (zset)
-- ARGV[1]  token of the caller
-- ARGV[2]  new lease in ms, from now
--
-- Returns 1 if the caller holds a live lease (extended), 0 if not.

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now_ms then
    return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now_ms + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then
    redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
