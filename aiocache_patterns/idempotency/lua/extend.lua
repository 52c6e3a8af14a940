-- idempotency/extend: renew the lease of a claim while its operation runs
-- (compare-and-set on the caller's token).
--
-- KEYS[1]  the record (see claim.lua)
-- ARGV[1]  token of the caller that claimed it
-- ARGV[2]  new lease in ms, from now
--
-- Returns 1 if the claim is still the caller's (its lease now ends ARGV[2] ms
-- from now, and the record lives at least as long), 0 if not (nothing is changed).
--
-- Resend: safe (a repeat sets the same lease end again)

local now_ms = server_time()
local state, token = read_record(KEYS[1])
if state ~= 'run' or token ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[1], 'e', now_ms + tonumber(ARGV[2]))
-- An operation that runs longer than the record's ttl keeps its record too.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
