-- leaderboard/lib: functions shared by every leaderboard script. Not a script
-- of its own: load_script inserts it after the header of each of them (and
-- leaderboard/lib_write after it in those that write; see _scripts.py), so
-- KEYS and ARGV below are those of the script it is inserted into.
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
--        built on first use by dense readers and writers, a bounded step a
--        call (ensure_ds)
--   seq  string: the last tie-break sequence number issued; while m is being
--        rebuilt (leaderboard_heal), "heal <last> <scan cursor>" instead, and
--        writers that would add entries wait (take_seqs returns nil)
-- and, only while m is being rebuilt, the hash m .. ':heal' (see leaderboard_heal).
--
-- m has one field per entry of z. If they disagree on the count (m, or part of
-- it, was evicted or deleted; see `damaged`), a write that cannot find its
-- member in m does nothing and says so, instead of adding a second entry for a
-- member that may be on z under its old prefix; the client then rebuilds m
-- from z (leaderboard_heal) and tries again. Reads that cannot find a member
-- say so too.
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

-- The distinct-score zset ds of board z is built in steps of DS_STEP entries
-- of z, best scores first, so that no call blocks Redis for long. While it is
-- partial, ds holds the member DS_MARK scored with the last score included:
-- ds then has every distinct score of z at or above it (descending boards; at
-- or below it on ascending boards), and nothing else. The marker's score is
-- never counted by count_better for a score inside that range.
local DS_STEP = 2000
local DS_MARK = 'building'

-- Whether `score` is inside the part of ds built so far (`cursor`: the
-- marker's score, nil once ds is complete).
local function ds_covers(cursor, score, desc)
    if cursor == nil then
        return true
    end
    if desc then
        return score >= cursor
    end
    return score <= cursor
end

-- Build one step of ds, if it is missing or partial. Returns the marker's
-- score (a number) while ds is still partial, nil once it is complete (or z
-- is empty). A new ds gets z's time to live.
local function ensure_ds(z, ds, desc)
    local cursor = nil
    local fresh = redis.call('EXISTS', ds) == 0
    if not fresh then
        cursor = redis.call('ZSCORE', ds, DS_MARK)
        if not cursor then
            return nil
        end
    elseif redis.call('EXISTS', z) == 0 then
        return nil
    end
    local page
    if desc then
        local from = '+inf'
        if cursor then from = '(' .. cursor end
        page = redis.call('ZREVRANGEBYSCORE', z, from, '-inf', 'WITHSCORES', 'LIMIT', 0, DS_STEP)
    else
        local from = '-inf'
        if cursor then from = '(' .. cursor end
        page = redis.call('ZRANGEBYSCORE', z, from, '+inf', 'WITHSCORES', 'LIMIT', 0, DS_STEP)
    end
    local batch, nb, last = {}, 0, nil
    for j = 2, #page, 2 do
        local c = canon(tonumber(page[j]))
        if c ~= last then
            last = c
            batch[nb + 1] = c
            batch[nb + 2] = c
            nb = nb + 2
        end
    end
    local done = #page < 2 * DS_STEP
    if not done then
        batch[nb + 1] = last
        batch[nb + 2] = DS_MARK
        nb = nb + 2
    end
    if nb > 0 then
        redis.call('ZADD', ds, unpack(batch, 1, nb))
    end
    if done then
        redis.call('ZREM', ds, DS_MARK)
    end
    if fresh then
        local ttl = redis.call('PTTL', z)
        if ttl > 0 then
            redis.call('PEXPIRE', ds, ttl)
        end
    end
    if done then
        return nil
    end
    return tonumber(last)
end

-- True if the member index m and the board z disagree on the number of
-- members: m (or part of it) was evicted or deleted. A write must not add a
-- member it cannot find in m (it may be on z under its old prefix).
local function damaged(z, m)
    return redis.call('HLEN', m) ~= redis.call('ZCARD', z)
end
