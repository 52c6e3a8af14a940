-- ratelimit_fixed_window: a counter per rate that starts at the first hit and
-- expires after the window (atomic INCRBY + PEXPIRE).
--
-- KEYS[i]        counter of rate i
-- ARGV[1]        'hit' (consume if allowed) or 'peek' (consume nothing)
-- ARGV[2]        cost
-- ARGV[3]        n, the number of rates
-- ARGV[4..]      for each rate: limit, window in microseconds
--
-- Returns {allowed (0/1), binding rate index (1-based), remaining,
--          reset_after_us, retry_after_us}: all-or-nothing over the rates;
-- the binding rate is the one with the least remaining (the longer window
-- on a tie). Time is the server's.

local t = redis.call('TIME')
local mode, cost, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local st = {}
local all = true
for i = 1, n do
    local limit, window = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
    local count = tonumber(redis.call('GET', KEYS[i]) or '0')
    local pttl = redis.call('PTTL', KEYS[i])
    local left = window
    if pttl < 0 then count = 0 else left = pttl * 1000 end
    local ok = count + cost <= limit
    all = all and ok
    st[i] = {limit = limit, window = window, count = count, left = left, ok = ok}
end

local best, best_remaining, retry = 1, nil, 0
for i = 1, n do
    local s = st[i]
    local used = s.count
    if all and mode == 'hit' then used = used + cost end
    local remaining = math.max(0, s.limit - used)
    if best_remaining == nil or remaining < best_remaining
        or (remaining == best_remaining and s.window > st[best].window) then
        best, best_remaining = i, remaining
    end
    if not s.ok then retry = math.max(retry, s.left) end
    if all and mode == 'hit' then
        if s.count == 0 then
            redis.call('SET', KEYS[i], cost, 'PX', math.ceil(s.window / 1000))
        else
            redis.call('INCRBY', KEYS[i], cost)
        end
    end
end
local b = st[best]
local reset = b.left
if b.count == 0 and not (all and mode == 'hit') then reset = 0 end
return {all and 1 or 0, best, best_remaining, math.floor(reset), math.floor(retry)}
