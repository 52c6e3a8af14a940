-- ratelimit/token_bucket: a bucket of `limit` tokens refilled continuously at
-- limit / window tokens per microsecond; a hit takes `cost` tokens.
--
-- KEYS[i]        hash of rate i: t = tokens, ts = time of last update (microseconds)
-- ARGV[1..3]     'hit' or 'peek', cost, n (see ratelimit/lib)
-- ARGV[4..]      for each rate: limit (bucket size), window in microseconds
--
-- Returns {allowed (0/1), binding rate index, remaining, reset_after_us,
--          retry_after_us}: all-or-nothing over the rates (the binding
-- rate: least remaining, longer window on a tie). A full bucket's
-- key expires, which is the same as a full bucket. Durations are rounded up
-- to the microsecond: a retry at retry_after is admitted, a peek at
-- reset_after sees a full bucket.
--
-- A bucket whose fields are not finite numbers, or whose last update is more
-- than a window in the future, is deleted and counts as full (instead of
-- failing, or refusing, for ever); tokens are kept within [0, limit].
-- Writes: only on an allowed hit (and that delete).

local now = server_us()

local function finite(x)
    return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge
end

local st = {}
local all = true
for i = 1, n do
    local limit, window = rate(i)
    local per_us = limit / window
    local h = redis.call('HMGET', KEYS[i], 't', 'ts')
    local tokens, ts = tonumber(h[1]), tonumber(h[2])
    if not (finite(tokens) and finite(ts) and ts <= now + window) then
        if h[1] or h[2] then
            redis.call('DEL', KEYS[i])
        end
        tokens, ts = limit, now
    end
    tokens = math.min(limit, math.max(0, tokens) + math.max(0, now - ts) * per_us)
    local ok = tokens + 1e-9 >= cost
    all = all and ok
    st[i] = {limit = limit, window = window, rate = per_us, tokens = tokens, ok = ok}
end

local commit = all and mode == 'hit'
local best, best_remaining, retry = 1, nil, 0
for i = 1, n do
    local s = st[i]
    local left = s.tokens
    if commit then left = left - cost end
    local remaining = math.max(0, math.floor(left + 1e-9))
    if binds(st, best, best_remaining, i, remaining) then
        best, best_remaining = i, remaining
    end
    if not s.ok then retry = math.max(retry, (cost - s.tokens) / s.rate) end
    s.after = left
    if commit then
        redis.call('HSET', KEYS[i], 't', string.format('%.17g', left), 'ts', string.format('%.0f', now))
        redis.call('PEXPIRE', KEYS[i], math.ceil((s.limit - left) / s.rate / 1000) + 1)
    end
end
local b = st[best]
local reset = (b.limit - b.after) / b.rate
return decision(all, best, best_remaining, math.ceil(reset), math.ceil(retry))
