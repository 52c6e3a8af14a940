-- recompute_store: write a freshly loaded entry, give up the recompute lock,
-- and wake every process waiting for the entry.
--
-- KEYS[1]  the cache entry
-- KEYS[2]  its recompute lock
-- ARGV[1]  token of the loader
-- ARGV[2]  the entry (envelope bytes), or '' to store nothing (the load lost
--          a race with an invalidation, or failed)
-- ARGV[3]  the entry's time to live in ms
-- ARGV[4]  wake-up channel
--
-- Returns 1 if the loader still held the lock, 0 if its lease had run out
-- (the entry is stored either way: it is the freshest there is).

if ARGV[2] ~= '' then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
local held = 0
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[2])
    held = 1
end
redis.call('PUBLISH', ARGV[4], '')
return held
