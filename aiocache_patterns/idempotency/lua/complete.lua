-- idempotency/complete: record how a claimed operation ended (compare-and-set on
-- the caller's token) and wake every caller waiting for it.
--
-- KEYS[1]  the record (see claim.lua)
-- ARGV[1]  token of the caller that claimed it
-- ARGV[2]  'done' (the operation finished: keep its result) or 'free' (it failed
--          or was cancelled: the key may be claimed again at once)
-- ARGV[3]  the result to store ('' with ARGV[5] = '0': finished, but not storable)
-- ARGV[4]  time to live of the record in ms (from now)
-- ARGV[5]  '1' if ARGV[3] is a stored result, '0' if there is none
-- ARGV[6]  wake-up channel
--
-- Returns 1 if the record was the caller's (now done or freed), 0 if not: its
-- lease passed and another caller claimed the key (nothing is changed then).
-- The record keeps the caller's token, so a repeat answers 1 again.
--
-- Order: the write of the result goes first and through pcall: on a full Redis
-- (noeviction) only a script's first write is refused, and that refusal must
-- not keep the key claimed until its lease ends; the record is deleted instead,
-- the waiters woken, and the error returned. The PUBLISH goes through pcall
-- (an ACL user without channel permissions: waiters then poll).
--
-- Resend: safe (the record keeps the caller's token: a repeat finds it done or freed and answers 1)

local state, token = read_record(KEYS[1])
if token ~= ARGV[1] then
    return 0
end
if state ~= 'run' then
    return 1
end
local failed = nil
if ARGV[2] == 'done' then
    local reply
    if ARGV[5] == '1' then
        reply = redis.pcall('HSET', KEYS[1], 's', 'done', 'v', ARGV[3])
    else
        reply = redis.pcall('HSET', KEYS[1], 's', 'done')
    end
    if type(reply) == 'table' and reply.err then
        -- Full: DEL is allowed where HSET is not. The fence resumes from the clock.
        failed = reply.err
        redis.call('DEL', KEYS[1])
    end
else
    redis.call('HSET', KEYS[1], 's', 'free')
end
if not failed then
    redis.call('HDEL', KEYS[1], 'e')
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
redis.pcall('PUBLISH', ARGV[6], '')
if failed then
    return redis.error_reply(failed)
end
return 1
