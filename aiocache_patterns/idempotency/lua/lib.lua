-- idempotency/lib: what the idempotency scripts share. Inserted after each
-- script's header (load_script(..., libs=("lib",))), never run alone.
--
-- server_time()       -> now in ms, now in µs (from Redis TIME)
-- stored_int(raw)     -> a number this library wrote, or nil
-- read_record(key)    -> state, token, fence, deadline, fingerprint (all strings or
--                        false); a key of another type (not ours) is deleted first

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

local function read_record(key)
    local fields = redis.pcall('HMGET', key, 's', 't', 'f', 'e', 'p')
    if fields.err then
        -- WRONGTYPE: not a record this library wrote; it is replaced.
        redis.log(redis.LOG_WARNING,
            'aiocache_patterns: idempotency record ' .. key .. ' held another type; replaced')
        redis.call('DEL', key)
        return false, false, false, false, false
    end
    return fields[1], fields[2], fields[3], fields[4], fields[5]
end
