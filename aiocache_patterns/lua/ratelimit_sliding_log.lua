-- ratelimit_sliding_log: the exact sliding window, a sorted set of hits.
-- Each hit is one member "<cost>:<unique id>" scored by its server time, so
-- simultaneous hits never collapse into one; a running total of costs is
-- kept beside it.
--
-- KEYS[2i-1]     log of rate i (zset: "<cost>:<id>" -> time in microseconds)
-- KEYS[2i]       total cost in the log of rate i
-- ARGV[1]        'hit' (consume if allowed) or 'peek' (consume nothing)
-- ARGV[2]        cost
-- ARGV[3]        n, the number of rates
-- ARGV[4]        a unique id for this hit
-- ARGV[5..]      for each rate: limit, window in microseconds
--
-- Returns {allowed (0/1), binding rate index, remaining, reset_after_us,
--          retry_after_us}: all-or-nothing over the rates (the binding
-- rate: least remaining, longer window on a tie). Exact: within any
-- window-long span, admitted costs never exceed the limit.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode, cost, n, id = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]

local function cost_of(member)
    return tonumber(string.match(member, '^(%d+):'))
end

local st = {}
local all = true
for i = 1, n do
    local log, sum = KEYS[2 * i - 1], KEYS[2 * i]
    local limit, window = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
    local horizon = now - window
    local gone = redis.call('ZRANGEBYSCORE', log, '-inf', horizon)
    local total = tonumber(redis.call('GET', sum) or '0')
    if #gone > 0 then
        for _, member in ipairs(gone) do total = total - cost_of(member) end
        redis.call('ZREMRANGEBYSCORE', log, '-inf', horizon)
        if total <= 0 or redis.call('ZCARD', log) == 0 then
            total = 0
            redis.call('DEL', sum)
        else
            redis.call('SET', sum, total, 'KEEPTTL')
        end
    end
    local ok = total + cost <= limit
    all = all and ok
    st[i] = {log = log, sum = sum, limit = limit, window = window, total = total, ok = ok}
end

local function retry_after(s)
    -- the time at which enough of the oldest hits have slid out; each hit costs
    -- at least 1, so the oldest `excess` entries always free enough: O(excess)
    local excess = s.total + cost - s.limit
    local freed = 0
    local entries = redis.call('ZRANGE', s.log, 0, excess - 1, 'WITHSCORES')
    for j = 1, #entries, 2 do
        freed = freed + cost_of(entries[j])
        if freed >= excess then
            return math.max(0, tonumber(entries[j + 1]) + s.window - now)
        end
    end
    return s.window
end

local commit = all and mode == 'hit'
local best, best_remaining, retry = 1, nil, 0
for i = 1, n do
    local s = st[i]
    local used = s.total
    if commit then used = used + cost end
    local remaining = math.max(0, s.limit - used)
    if best_remaining == nil or remaining < best_remaining
        or (remaining == best_remaining and s.window > st[best].window) then
        best, best_remaining = i, remaining
    end
    if not s.ok then retry = math.max(retry, retry_after(s)) end
    if commit then
        local ms = math.ceil(s.window / 1000)
        redis.call('ZADD', s.log, now, cost .. ':' .. id)
        redis.call('INCRBY', s.sum, cost)
        redis.call('PEXPIRE', s.log, ms)
        redis.call('PEXPIRE', s.sum, ms)
    end
end
local b = st[best]
local reset = 0
if commit then
    reset = b.window  -- the newest hit is this one
else
    local newest = redis.call('ZRANGE', b.log, -1, -1, 'WITHSCORES')
    if newest[2] then reset = tonumber(newest[2]) + b.window - now end
end
return {all and 1 or 0, best, best_remaining, math.floor(reset), math.ceil(retry)}
