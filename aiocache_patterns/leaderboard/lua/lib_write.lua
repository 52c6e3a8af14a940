-- leaderboard/lib_write: functions shared by the leaderboard scripts that
-- write (tie-break sequence numbers and prefixes, the distinct-score set,
-- expiry). Not a script of its own: it is inserted, after leaderboard/lib,
-- into submit, increment, remove, view and heal.
--
-- KEYS     none of its own
-- ARGV     none of its own
-- Returns  nothing: it only defines local functions.
--
-- The key layout and the tie-break are described in leaderboard/lib.

local SEQ_SPAN = 9007199254740992 -- 2^53

-- v (0 <= v < 2^56) as 7 bytes, big-endian.
local function bytes7(v)
    local b7 = v % 256
    v = (v - b7) / 256
    local b6 = v % 256
    v = (v - b6) / 256
    local b5 = v % 256
    v = (v - b5) / 256
    local b4 = v % 256
    v = (v - b4) / 256
    local b3 = v % 256
    v = (v - b3) / 256
    local b2 = v % 256
    v = (v - b2) / 256
    return string.char(v, b2, b3, b4, b5, b6, b7)
end

local function prefix_of(seq, desc)
    if desc then
        return bytes7(SEQ_SPAN - seq)
    end
    return bytes7(seq)
end

-- The prefixes of sequence numbers first, first + 1, ...: each call returns
-- the next one. The two low bytes are counted as numbers and the prefix is
-- built with one string.char (the five high bytes change once in 65,536):
-- a bulk submit calls this once per member, so it is kept to a few
-- arithmetic steps and a single new string.
local function prefix_stream(first, desc)
    local v, step = first, 1
    if desc then
        v, step = SEQ_SPAN - first, -1
    end
    local low = v % 65536
    local high = v - low
    local hi, lo = (low - low % 256) / 256, low % 256
    local h1, h2, h3, h4, h5 = string.byte(bytes7(high), 1, 5)
    local char = string.char
    return function()
        local prefix = char(h1, h2, h3, h4, h5, hi, lo)
        lo = lo + step
        if lo == 256 or lo == -1 then
            lo = lo % 256
            hi = hi + step
            if hi == 256 or hi == -1 then
                hi = hi % 256
                high = high + step * 65536
                h1, h2, h3, h4, h5 = string.byte(bytes7(high), 1, 5)
            end
        end
        return prefix
    end
end

local function seq_of(prefix, desc)
    local b1, b2, b3, b4, b5, b6, b7 = string.byte(prefix, 1, 7)
    local v = ((((((b1 * 256 + b2) * 256 + b3) * 256 + b4) * 256 + b5) * 256 + b6) * 256) + b7
    if desc then
        return SEQ_SPAN - v
    end
    return v
end

-- Whether writers keep ds up to date, and the part of it built so far (see
-- ensure_ds): a dense writer builds a step of it; any writer keeps it once it
-- exists. Returns keep, cursor.
local function ds_state(z, ds, dense, desc)
    if dense then
        return true, ensure_ds(z, ds, desc)
    end
    if redis.call('EXISTS', ds) == 0 then
        return false, nil
    end
    return true, tonumber(redis.call('ZSCORE', ds, DS_MARK))
end

-- Record new scores in ds (a list of scores as text; duplicates are fine);
-- while ds is partial, only those inside its built part (the build adds the
-- others when it gets to them).
local function ds_add(ds, scores, cursor, desc)
    local batch, nb, seen = {}, 0, {}
    for i = 1, #scores do
        local c = canon(tonumber(scores[i]))
        if not seen[c] and ds_covers(cursor, tonumber(c), desc) then
            seen[c] = true
            batch[nb + 1] = c
            batch[nb + 2] = c
            nb = nb + 2
        end
    end
    if nb > 0 then
        redis.call('ZADD', ds, unpack(batch, 1, nb))
    end
end

-- Drop from ds the old scores nobody on board z holds any more.
local function ds_drop(z, ds, scores)
    local seen = {}
    for i = 1, #scores do
        local c = canon(scores[i])
        if not seen[c] then
            seen[c] = true
            if redis.call('ZCOUNT', z, c, c) == 0 then
                redis.call('ZREM', ds, c)
            end
        end
    end
end

-- The first of `count` new sequence numbers (the counter keeps its TTL, if
-- any); nil while the board's member index is being rebuilt (the caller must
-- then write nothing). A counter that is not a number counts as 0: the server
-- clock keeps the numbers increasing.
local function take_seqs(seq_key, count)
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local raw = redis.call('GET', seq_key)
    local last = 0
    if raw then
        if string.sub(raw, 1, 5) == 'heal ' then
            return nil
        end
        last = tonumber(raw)
        if last == nil or last ~= last or last >= SEQ_SPAN or last < 0 then
            last = 0
        end
    end
    local first = math.max(last + 1, now)
    redis.call('SET', seq_key, int_text(first + count - 1), 'KEEPTTL')
    return first
end

-- Periodic boards: every key expires at `at` (Unix seconds, text); '0' = never.
local function expire_at(at, keys)
    if at == '0' then
        return
    end
    for i = 1, #keys do
        redis.call('EXPIREAT', keys[i], at)
    end
end
