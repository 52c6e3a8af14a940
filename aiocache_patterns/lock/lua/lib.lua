-- lock/lib: what the lock and semaphore scripts share. Inserted after each
-- script's header (load_script(..., libs=("lib",))), never run alone.
--
-- server_time()                      -> now in ms, now in µs (from Redis TIME)
-- stored_int(raw)                    -> a number this library wrote, or nil
-- next_fence(key, now_us, ttl_ms)    -> the next fencing token (a string), stored in key
-- live_waiters(q, qd, now, n, keep)  -> the first n live queued tokens, dead ones dropped
-- wake(channel, token)               -> 1 if a wake-up was published, 0 if Redis
--                                       refused it (an ACL user without channels);
--                                       sharded (SPUBLISH) on a cluster node
-- keep_place(q, qd, token, now, ms)  -> queue the caller (last) or keep its place

local function server_time()
    local t = redis.call('TIME')
    local s, us = tonumber(t[1]), tonumber(t[2])
    return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end

-- A whole number from 0 to 2^53 - 1, as this library writes them; nil for
-- anything else (missing, or written by someone else: text, 1e300, nan, -5).
local function stored_int(raw)
    local n = tonumber(raw)
    if n and n == n and n >= 0 and n < 9007199254740992 and n == math.floor(n) then
        return n
    end
    return nil
end

-- Fencing tokens are max(previous + 1, server time in µs): strictly increasing,
-- and a counter that is missing (expired, lost in a failover) or unreadable
-- (overwritten, even with another type) resumes from the server clock, above
-- every token ever issued. Redis logs a warning when it finds one unreadable.
local function next_fence(key, now_us, ttl_ms)
    local raw = redis.pcall('GET', key)
    if type(raw) == 'table' then
        raw = 'a value of another type'  -- WRONGTYPE: the SET below replaces it
    end
    local previous = stored_int(raw)
    if raw and not previous then
        redis.log(redis.LOG_WARNING,
            'aiocache_patterns: fencing counter ' .. key .. ' held no valid number; ' ..
            'it restarts from the server clock')
    end
    local fence = math.max((previous or 0) + 1, now_us)
    if fence >= 9007199254740992 then
        fence = now_us
    end
    fence = string.format('%.0f', fence)
    redis.call('SET', key, fence, 'PX', ttl_ms)
    return fence
end

-- The first n queued waiters that are alive (their deadline has not passed),
-- oldest first; dead ones found on the way (a crashed process: deadline passed
-- or unreadable) are dropped. `keep` (the caller, which is alive) is never dropped.
local function live_waiters(q, qd, now_ms, n, keep)
    local live = {}
    for _ = 1, 100 do
        local batch = redis.call('ZRANGE', q, 0, n - 1)
        live = {}
        for _, waiter in ipairs(batch) do
            local deadline = stored_int(redis.call('HGET', qd, waiter)) or 0
            if waiter == keep or deadline > now_ms then
                live[#live + 1] = waiter
            else
                redis.call('ZREM', q, waiter)
                redis.call('HDEL', qd, waiter)
            end
        end
        if #live == #batch then break end
    end
    return live
end

-- A wake-up is only a hint (the waiter asks Redis before it believes anything),
-- so a refused one costs the waiter its fallback poll, never correctness: it
-- must not fail a script whose writes are already applied.
-- On a cluster node it is sharded (SPUBLISH: the message stays on the shard that
-- owns the channel's slot, which is the script's: the channel shares the keys'
-- hash tag) instead of broadcast to every node; PUBLISH where there is no
-- SPUBLISH (before Redis 7) and on a server that is not a cluster node. Waiters
-- subscribe the same way (SSUBSCRIBE on a cluster of Redis 7+).
local on_cluster = nil
local function wake(channel, token)
    if on_cluster == nil then
        on_cluster = type(redis.pcall('CLUSTER', 'MYID')) == 'string'
    end
    local reply
    if on_cluster then
        reply = redis.pcall('SPUBLISH', channel, token)
        if type(reply) == 'table' and reply.err and not string.find(reply.err, 'NOPERM') then
            reply = redis.pcall('PUBLISH', channel, token)
        end
    else
        reply = redis.pcall('PUBLISH', channel, token)
    end
    if type(reply) == 'table' and reply.err then
        return 0
    end
    return 1
end

-- Queue `token` (a new arrival goes last) or keep its place, alive for `lease_ms`
-- more. A waiter already queued keeps its place on a full Redis (OOM): its first
-- write is a PEXPIRE, which adds no data, and after it Redis lets the script's
-- other writes through. A new arrival's first write adds data (the arrival
-- number, its place), so a full Redis refuses it whole: it cannot join.
local function keep_place(q, qd, token, now_ms, lease_ms)
    if redis.call('ZSCORE', q, token) then
        redis.call('PEXPIRE', q, lease_ms * 2)
    else
        local seq = redis.pcall('HINCRBY', qd, '#seq', 1)
        if type(seq) == 'table' then
            -- '#seq' held no integer (overwritten), or Redis is full (then the
            -- HSET below is refused): go on after the last arrival.
            local last = redis.call('ZRANGE', q, -1, -1, 'WITHSCORES')[2]
            seq = (stored_int(last) or 0) + 1
            redis.call('HSET', qd, '#seq', seq)
        end
        redis.call('ZADD', q, seq, token)
        redis.call('PEXPIRE', q, lease_ms * 2)
    end
    redis.call('HSET', qd, token, now_ms + lease_ms)
    redis.call('PEXPIRE', qd, lease_ms * 2)
end
