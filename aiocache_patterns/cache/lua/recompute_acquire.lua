-- cache/recompute_acquire: become the one process that loads a cache entry, or learn
-- who already is; either way, return the entry as it is now.
--
-- KEYS[1]  the cache entry
-- KEYS[2]  its recompute lock
-- ARGV[1]  token of the caller
-- ARGV[2]  lock lease in ms
--
-- Returns {1, entry or false} if the caller now holds the lock (it should
-- load, unless the entry turns out to be fresh already); {0, entry or false,
-- pttl} if another caller holds it (pttl: ms left on that lease).
--
-- Resend: safe (a lock already held under the caller's token answers {1, entry} again)
--
-- On a full Redis (noeviction) the SET is refused with an OOM error: it is
-- the script's only write, so nothing is half done.

local entry = redis.call('GET', KEYS[1])
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {1, entry}
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
    return {1, entry}
end
return {0, entry, redis.call('PTTL', KEYS[2])}
