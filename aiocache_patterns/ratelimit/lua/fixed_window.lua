-- ratelimit/fixed_window: a counter per rate that starts at the first hit and
-- expires after the window (atomic INCRBY; the window is the key's lifetime).
--
-- KEYS[i]        counter of rate i
-- ARGV[1..3]     'hit' or 'peek', cost, n (see ratelimit/lib)
-- ARGV[4..]      for each rate: limit, window in microseconds
--
-- Returns {allowed (0/1), binding rate index (1-based), remaining,
--          reset_after_us, retry_after_us}: all-or-nothing over the rates;
-- the binding rate is the one with the least remaining (the longer window
-- on a tie). A refusal's retry_after is always > 0.
--
-- Time is the server's, in the key's expiry. Redis keeps a key until the END
-- of the millisecond PTTL counts down to: a key with PTTL p lives up to p + 1
-- ms more. So the time left is reported as (p + 1) ms, never p ms (a retry
-- sent after p ms could find the old window still there), and a window's key
-- is set to expire after ceil(window) - 1 ms, so that a fresh window reports
-- exactly its length and is gone by then (a window lasts between its length
-- less 1 ms and its length).
--
-- A counter that is not one of ours (no expiry, or not a whole number >= 0)
-- is deleted and counts as a fresh window, instead of failing every call.
-- Writes: only on an allowed hit (and the delete of such a foreign value), so
-- under a full Redis (OOM) a refused write applies nothing.

local st = {}
local all = true
for i = 1, n do
    local limit, window = rate(i)
    local px = math.max(1, math.ceil(window / 1000) - 1)
    local raw = redis.call('GET', KEYS[i])
    local count, left = 0, (px + 1) * 1000
    if raw then
        local pttl = redis.call('PTTL', KEYS[i])
        local value = tonumber(raw)
        if pttl < 0 or value == nil or value < 0 or value ~= math.floor(value)
            or value >= 9007199254740992 then
            redis.call('DEL', KEYS[i])
        else
            count, left = value, (pttl + 1) * 1000
        end
    end
    local ok = count + cost <= limit
    all = all and ok
    st[i] = {limit = limit, window = window, px = px, count = count, left = left, ok = ok}
end

local commit = all and mode == 'hit'
local best, best_remaining, retry = 1, nil, 0
for i = 1, n do
    local s = st[i]
    local used = s.count
    if commit then used = used + cost end
    local remaining = math.max(0, s.limit - used)
    if binds(st, best, best_remaining, i, remaining) then
        best, best_remaining = i, remaining
    end
    if not s.ok then retry = math.max(retry, s.left) end
    if commit then
        if s.count == 0 then
            redis.call('SET', KEYS[i], cost, 'PX', s.px)
        else
            redis.call('INCRBY', KEYS[i], cost)
        end
    end
end
local b = st[best]
local reset = b.left
if b.count == 0 and not commit then reset = 0 end
return decision(all, best, best_remaining, reset, retry)
