-- cache/recompute_extend: renew the recompute lock while its loader runs
-- (compare-and-pexpire).
--
-- KEYS[1]  the recompute lock
-- ARGV[1]  token of the loader
-- ARGV[2]  new lease in ms, from now
--
-- Returns 1 if the loader still holds the lock (its lease now ends ARGV[2] ms
-- from now), 0 if not (nothing is changed).
--
-- Resend: safe (a repeat sets the same lease end again)

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
