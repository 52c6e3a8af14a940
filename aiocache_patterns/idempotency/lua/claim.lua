-- idempotency/claim: start an operation under an idempotency key, or learn what
-- became of the one already started: claim-or-replay in one round trip.
--
-- KEYS[1]  the record (hash: s state run|done|free, t token, f fencing token,
--          e lease deadline in ms, p fingerprint digest, v stored result)
-- ARGV[1]  token of the caller (random, one per attempt)
-- ARGV[2]  fingerprint digest of the caller's request
-- ARGV[3]  lease in ms: how long the claim outlives a caller that stops renewing it
-- ARGV[4]  time to live of the record in ms
--
-- Returns one of
--   {0, fence}           claimed: the caller runs the operation under this fencing token
--   {1, result or false} done: the stored result (false: done, but its result was
--                        too large to store, so it cannot be replayed)
--   {2}                  the key was used with another fingerprint (done or running)
--   {3, ms}              another caller runs it now; its lease ends in ms
--
-- A running record whose lease has passed (its caller died or stalled) and a
-- freed one (the operation failed) are claimed again, with a higher fencing
-- token: max(previous + 1, server time in µs), so a late writer holding the
-- old token can be told apart downstream. The fence survives in the record;
-- a record that expired resumes from the server clock, above every token issued.
--
-- Resend: safe (a claim already held under the caller's token answers {0, fence} again)

local now_ms, now_us = server_time()
local state, token, fence, deadline, fp = read_record(KEYS[1])

if state == 'run' and token == ARGV[1] then
    return {0, fence}
end
if state == 'done' then
    if fp ~= ARGV[2] then
        return {2}
    end
    return {1, redis.call('HGET', KEYS[1], 'v')}
end
if state == 'run' then
    local ends = stored_int(deadline) or 0
    if ends > now_ms then
        if fp ~= ARGV[2] then
            return {2}
        end
        return {3, ends - now_ms}
    end
end

local next_fence = math.max((stored_int(fence) or 0) + 1, now_us)
if next_fence >= 9007199254740992 then
    next_fence = now_us
end
next_fence = string.format('%.0f', next_fence)
-- The HSET is the first write: on a full Redis (noeviction) it is refused, and the
-- claim with it, before anything changed (a DEL first would let it through).
redis.call('HSET', KEYS[1], 's', 'run', 't', ARGV[1], 'f', next_fence,
    'e', now_ms + tonumber(ARGV[3]), 'p', ARGV[2])
redis.call('HDEL', KEYS[1], 'v')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {0, next_fence}
