-- ratelimit/sliding_log: the exact sliding window, a sorted set of hits.
--
-- Each admitted hit is one member "<total>:<cost>" scored by its server time
-- (microseconds), where <total> is the running total of the costs admitted to
-- this log up to and including this hit, as 16 zero-padded digits (so totals
-- are unique members, and equal times order like the totals). The cost still
-- inside the window is then total(newest) - total(oldest in the window) +
-- cost(oldest in the window): two O(log n) reads, whatever the log's size.
--
-- Per-call work is bounded: entries older than the window are removed at
-- most TRIM per call (a backlog, left by a burst on a big limit, drains over
-- the next calls and never blocks Redis for long; the key expires one window
-- after its newest hit anyway), and retry_after bisects the entries by rank.
--
-- KEYS[i]        log of rate i (zset: "<total>:<cost>" -> time in microseconds)
-- ARGV[1..3]     'hit' or 'peek', cost, n (see ratelimit/lib)
-- ARGV[4..]      for each rate: limit, window in microseconds
--
-- Returns {allowed (0/1), binding rate index, remaining, reset_after_us,
--          retry_after_us}: all-or-nothing over the rates (the binding
-- rate: least remaining, longer window on a tie). Exact: within any
-- window-long span, admitted costs never exceed the limit. A retry at
-- retry_after is admitted; a peek at reset_after sees the full quota.
--
-- A log with a member that is not "<total>:<cost>", or whose totals do not
-- add up, is deleted and counts as empty (instead of failing every call).
-- Writes: removing old entries (even on a peek or a refusal), and an
-- allowed hit's entry. Under a full Redis (OOM) an entry is refused unless
-- old entries were removed first in the same call; either way all of a
-- hit's rates are written or none.

local TRIM = 256

local now = server_us()

-- Members are "<total>:<cost>" with the total in 16 digits: read by position.
local sub = string.sub

-- The running total of a member (nil if it is not one of ours).
local function total_of(member)
    if sub(member, 17, 17) ~= ':' then
        return nil
    end
    return tonumber(sub(member, 1, 16))
end

-- The entry at `rank` (`got`: its ZRANGE ... WITHSCORES reply, if read
-- already): total, cost, time; nil if there is none or it is not ours.
local function entry(log, rank, got)
    got = got or redis.call('ZRANGE', log, rank, rank, 'WITHSCORES')
    local member = got[1]
    if not member then
        return nil
    end
    local total, c = total_of(member), tonumber(sub(member, 18))
    if total == nil or c == nil or c < 1 or c > total then
        return nil
    end
    return total, c, tonumber(got[2])
end

local st = {}
local all = true
for i = 1, n do
    local log = KEYS[i]
    local limit, window = rate(i)
    local horizon = now - window
    -- the oldest entry: if it is inside the window, nothing has expired (the
    -- common case: one read), else count, trim (bounded) and read it again
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    local expired = 0
    if oldest[2] and tonumber(oldest[2]) <= horizon then
        expired = redis.call('ZCOUNT', log, '-inf', horizon)
        local drop = math.min(expired, TRIM)
        redis.call('ZREMRANGEBYRANK', log, 0, drop - 1)
        expired = expired - drop
        oldest = nil
    end
    -- the window's entries are ranks `expired` .. -1
    local s = {log = log, limit = limit, window = window, first = expired,
               total = 0, last_total = 0, last_time = nil}
    local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    if newest[1] then
        local last_total, last_time = total_of(newest[1]), tonumber(newest[2])
        local damaged = last_total == nil
        if not damaged then
            s.last_total, s.last_time = last_total, last_time
            if last_time > horizon then
                local first_total, first_cost = entry(log, expired, oldest)
                if first_total == nil or first_total > last_total then
                    damaged = true
                else
                    s.total = last_total - first_total + first_cost
                end
            end
        end
        if damaged then
            redis.call('DEL', log)
            s.first, s.total, s.last_total, s.last_time = 0, 0, 0, nil
        end
    end
    s.ok = s.total + cost <= limit
    all = all and s.ok
    st[i] = s
end

-- When enough of the oldest hits have slid out for this one to fit: the first
-- entry (by rank, from the window's first) whose running total reaches
-- `need`; found by bisection, O(log(cost) * log n).
local function retry_after(s)
    local need = s.last_total - s.limit + cost
    local lo, hi = s.first, s.first + (s.total + cost - s.limit) - 1
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        local total = entry(s.log, mid)
        if total == nil or total >= need then -- past the newest: the newest fits
            hi = mid
        else
            lo = mid + 1
        end
    end
    local total, _, time = entry(s.log, lo)
    if total == nil or total < need then
        return s.window
    end
    return math.max(1, time + s.window - now)
end

local commit = all and mode == 'hit'
local best, best_remaining, retry = 1, nil, 0
for i = 1, n do
    local s = st[i]
    local used = s.total
    if commit then used = used + cost end
    local remaining = math.max(0, s.limit - used)
    if binds(st, best, best_remaining, i, remaining) then
        best, best_remaining = i, remaining
    end
    if not s.ok then retry = math.max(retry, retry_after(s)) end
    if commit then
        local at = now
        if s.last_time ~= nil and s.last_time > at then
            at = s.last_time -- the server clock stepped back: keep the log in order
        end
        s.last_time = at
        local member = string.format('%016.0f', s.last_total + cost) .. ':' .. cost
        redis.call('ZADD', s.log, string.format('%.0f', at), member)
        redis.call('PEXPIRE', s.log, math.ceil((at + s.window - now) / 1000))
    end
end
local b = st[best]
local reset = 0
if b.last_time ~= nil and b.last_time + b.window > now then
    reset = b.last_time + b.window - now
end
return decision(all, best, best_remaining, reset, retry)
