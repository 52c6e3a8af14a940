-- ratelimit/gcra: the generic cell rate algorithm. One number per rate, the
-- theoretical arrival time (TAT); a hit of cost c is allowed if the TAT pushed
-- c emission intervals (window / limit) ahead stays within one window of now.
-- Smooth like a token bucket of `limit` tokens, in a single string per rate.
--
-- KEYS[i]        TAT of rate i (microseconds, server clock)
-- ARGV[1..3]     'hit' or 'peek', cost, n (see ratelimit/lib)
-- ARGV[4..]      for each rate: limit, window in microseconds
--
-- Returns {allowed (0/1), binding rate index, remaining, reset_after_us,
--          retry_after_us}: all-or-nothing over the rates (the binding
-- rate: least remaining, longer window on a tie). Durations are rounded
-- up to the microsecond: a retry at retry_after is admitted, a peek at
-- reset_after sees the full quota.
--
-- A stored TAT that is not a number, or more than a window ahead of now (not
-- one of ours: someone else's value, or a server clock that stepped back) is
-- deleted and counts as a full quota, instead of failing every call or
-- refusing for ever. Writes: only on an allowed hit (and that delete).

local now = server_us()

local st = {}
local all = true
for i = 1, n do
    local limit, window = rate(i)
    local interval = window / limit
    local tat = now
    local raw = redis.call('GET', KEYS[i])
    if raw then
        local stored = tonumber(raw)
        if stored == nil or stored ~= stored or stored == -math.huge or stored > now + window + 1 then
            redis.call('DEL', KEYS[i])
        else
            tat = math.max(stored, now)
        end
    end
    local new_tat = tat + cost * interval
    local ok = new_tat - now <= window + 1e-6
    all = all and ok
    st[i] = {limit = limit, window = window, interval = interval, tat = tat,
             new_tat = new_tat, ok = ok}
end

local commit = all and mode == 'hit'
local best, best_remaining, retry = 1, nil, 0
for i = 1, n do
    local s = st[i]
    local tat = s.tat
    if commit then tat = s.new_tat end
    local remaining = math.max(0, math.floor((s.window - (tat - now)) / s.interval + 1e-9))
    if binds(st, best, best_remaining, i, remaining) then
        best, best_remaining = i, remaining
    end
    if not s.ok then retry = math.max(retry, s.new_tat - s.window - now) end
    s.after = tat
    if commit then
        redis.call('SET', KEYS[i], string.format('%.0f', s.new_tat),
                   'PX', math.ceil((s.new_tat - now) / 1000) + 1)
    end
end
local b = st[best]
return decision(all, best, best_remaining, math.ceil(b.after - now), math.ceil(retry))
