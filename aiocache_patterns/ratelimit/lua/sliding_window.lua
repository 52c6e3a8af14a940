-- ratelimit/sliding_window: the weighted two-window counter. The estimate is
-- previous_window_count * (share of the sliding window still inside it) +
-- current_window_count; windows are aligned on the server clock.
--
-- KEYS[i]        hash of rate i: i = window index, c = current count, p = previous count
-- ARGV[1..3]     'hit' or 'peek', cost, n (see ratelimit/lib)
-- ARGV[4..]      for each rate: limit, window in microseconds
--
-- Returns {allowed (0/1), binding rate index, remaining, reset_after_us,
--          retry_after_us}: all-or-nothing over the rates; the binding rate is
-- the one with the least remaining (the longer window on a tie). The
-- estimate is never below the current window's count, so no aligned window
-- ever admits more than the limit. Durations are rounded up to the
-- microsecond: a retry at retry_after is admitted, a peek at reset_after sees
-- the full quota.
--
-- A hash whose fields are not finite counts >= 0 is deleted and counts as
-- empty (instead of failing, or refusing, for ever).
-- Writes: only on an allowed hit (and that delete).

local now = server_us()

-- A number as this script stores it: finite and >= 0.
local function count(x)
    return x ~= nil and x == x and x >= 0 and x ~= math.huge
end

local st = {}
local all = true
for i = 1, n do
    local limit, window = rate(i)
    local idx = math.floor(now / window)
    local elapsed = now - idx * window
    local h = redis.call('HMGET', KEYS[i], 'i', 'c', 'p')
    local stored, cur, prev = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
    if (h[1] and not count(stored)) or (h[2] and not count(cur)) or (h[3] and not count(prev)) then
        redis.call('DEL', KEYS[i])
        stored, cur, prev = nil, nil, nil
    end
    cur, prev = cur or 0, prev or 0
    if stored ~= idx then
        if stored == idx - 1 then prev = cur else prev = 0 end
        cur = 0
    end
    local weight = (window - elapsed) / window
    local estimate = prev * weight + cur
    local ok = estimate + cost <= limit + 1e-9
    all = all and ok
    st[i] = {limit = limit, window = window, idx = idx, elapsed = elapsed,
             cur = cur, prev = prev, estimate = estimate, ok = ok}
end

local function retry_after(s)
    local need = s.limit - cost
    if s.cur <= need and s.prev > 0 then
        -- inside this window, once enough of the previous one has slid out
        local at = s.window * (1 - (need - s.cur) / s.prev)
        if at <= s.window then return math.max(0, at - s.elapsed) end
    end
    -- next window: the current count becomes the previous one and slides out
    local at = 0
    if s.cur > need then at = s.window * (1 - need / s.cur) end
    return (s.window - s.elapsed) + at
end

local commit = all and mode == 'hit'
local best, best_remaining, retry = 1, nil, 0
for i = 1, n do
    local s = st[i]
    local used = s.estimate
    if commit then used = used + cost end
    local remaining = math.max(0, math.floor(s.limit - used + 1e-9))
    if binds(st, best, best_remaining, i, remaining) then
        best, best_remaining = i, remaining
    end
    if not s.ok then retry = math.max(retry, retry_after(s)) end
    if commit then
        redis.call('HSET', KEYS[i], 'i', s.idx, 'c', s.cur + cost, 'p', s.prev)
        redis.call('PEXPIRE', KEYS[i], math.ceil(2 * s.window / 1000))
    end
end
local b = st[best]
local cur = b.cur
if commit then cur = cur + cost end
local reset = 0
if cur > 0 then
    reset = (b.window - b.elapsed) + b.window
elseif b.prev > 0 then
    reset = b.window - b.elapsed
end
return decision(all, best, best_remaining, math.ceil(reset), math.ceil(retry))
