-- leaderboard_lib: functions shared by every leaderboard_* script. Not a script
-- of its own: aiocache_patterns/_leaderboard_reads.py prepends it to each of
-- them (and leaderboard_lib_write to those that write), so KEYS and ARGV below
-- are those of the script it is prepended to.
--
-- KEYS     none of its own
-- ARGV     none of its own
-- Returns  nothing: it only defines local functions.
--
-- A board is four keys, all with the board's hash tag:
--   z    zset: encoded member -> score, where encoded = 7-byte prefix .. member
--   m    hash: member -> its current 7-byte prefix
--   ds   zset of the distinct scores (member = canonical score string), for
--        dense ranks; kept up to date by every writer once it exists, and
--        built on first use by a dense reader or writer (ensure_ds)
--   seq  string: the last tie-break sequence number issued
--
-- Tie-break: when a member reaches a new score it gets the next sequence
-- number, max(last + 1, server time in microseconds), so "first to reach a
-- score" is the server's order, never a client clock. The prefix is 2^53 - seq
-- on descending boards and seq on ascending ones, as 7 bytes big-endian:
-- Redis orders equal scores by member bytes, so ZREVRANGE (descending) and
-- ZRANGE (ascending) both list the earliest arrival first.
--
-- Numbers are always handed to redis.call as strings formatted here: Lua
-- would otherwise format them with 14 significant digits.

-- The exact, canonical text of a score (17 significant digits round-trip a double).
local function canon(score)
    if score == 0 then
        score = 0 -- -0 and 0 are one score
    end
    return string.format('%.17g', score)
end

local function int_text(n)
    return string.format('%.0f', n)
end

-- How many entries of zset `key` rank strictly better than `score`.
local function count_better(key, score, desc)
    local s = '(' .. canon(score)
    if desc then
        return redis.call('ZCOUNT', key, s, '+inf')
    end
    return redis.call('ZCOUNT', key, '-inf', s)
end

-- Build the distinct-score zset of board `z` if it is missing (one O(n) pass,
-- the first time a board is ranked densely). It gets z's time to live.
local function ensure_ds(z, ds)
    if redis.call('EXISTS', ds) == 1 or redis.call('EXISTS', z) == 0 then
        return
    end
    local size = redis.call('ZCARD', z)
    local last = nil
    local batch, nb = {}, 0
    for start = 0, size - 1, 1000 do
        local page = redis.call('ZRANGE', z, int_text(start), int_text(start + 999), 'WITHSCORES')
        for j = 2, #page, 2 do
            local s = tonumber(page[j])
            if s ~= last then
                last = s
                local c = canon(s)
                batch[nb + 1] = c
                batch[nb + 2] = c
                nb = nb + 2
                if nb >= 1000 then
                    redis.call('ZADD', ds, unpack(batch, 1, nb))
                    nb = 0
                end
            end
        end
    end
    if nb > 0 then
        redis.call('ZADD', ds, unpack(batch, 1, nb))
    end
    local ttl = redis.call('PTTL', z)
    if ttl > 0 then
        redis.call('PEXPIRE', ds, ttl)
    end
end
