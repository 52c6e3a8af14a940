-- lock/lock_extend: compare-and-pexpire.
--
-- KEYS[1]  the lock
-- ARGV[1]  token of the caller
-- ARGV[2]  new lease in ms, from now
--
-- Returns 1 if the caller holds the lock (its lease now ends ARGV[2] ms from
-- now), 0 if it does not (nothing is changed).
--
-- Resend: safe (a repeat sets the same lease end again and answers the same)

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
