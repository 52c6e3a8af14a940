-- lock/semaphore_holders: how many leases are live now.
--
-- KEYS[1]  holders (zset: token -> lease end, ms)
--
-- Returns the number of holders whose lease ends after the server's now.

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms, '+inf')
