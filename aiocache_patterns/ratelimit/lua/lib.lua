-- ratelimit/lib: the prologue the five rate-limit scripts share. Not a script
-- of its own: load_script inserts it after each script's header, so KEYS and
-- ARGV below are those of the script it is inserted into.
--
-- ARGV[1]    'hit' (consume if allowed) or 'peek' (consume nothing)
-- ARGV[2]    cost
-- ARGV[3]    n, the number of rates
-- ARGV[4..]  for each rate: limit, window in microseconds
--
-- mode, cost, n                   the request
-- server_us()                     -> now in microseconds, from Redis TIME
-- rate(i)                         -> limit, window (µs) of rate i
-- binds(st, b, b_rem, i, rem)    -> whether rate i binds rather than rate b
-- decision(all, b, remaining, reset, retry) -> the script's reply
--
-- Every script answers {allowed (0/1), binding rate index (1-based),
-- remaining, reset_after_us, retry_after_us}, all-or-nothing over the rates;
-- the binding rate is the one with the least remaining (the longer window on
-- a tie).

local mode, cost, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local function server_us()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function rate(i)
    return tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
end

-- st[i].window is each rate's window; `remaining` is rate i's, `b_remaining`
-- (nil before the first rate) the binding one's so far.
local function binds(st, b, b_remaining, i, remaining)
    return b_remaining == nil or remaining < b_remaining
        or (remaining == b_remaining and st[i].window > st[b].window)
end

local function decision(all, b, remaining, reset, retry)
    return {all and 1 or 0, b, remaining, reset, retry}
end
