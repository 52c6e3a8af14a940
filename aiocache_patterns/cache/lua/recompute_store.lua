-- cache/recompute_store: write a freshly loaded entry, give up the recompute lock,
-- and wake every process waiting for the entry. Also the plain give-back of
-- a lock (an empty entry) after a failed, cancelled or needless load.
--
-- KEYS[1]  the cache entry
-- KEYS[2]  its recompute lock
-- ARGV[1]  token of the loader
-- ARGV[2]  the entry (envelope bytes), or '' to store nothing (the load lost
--          a race with an invalidation, failed, or was not needed)
-- ARGV[3]  the entry's time to live in ms
-- ARGV[4]  wake-up channel (SPUBLISH on a cluster node, else PUBLISH)
--
-- Returns 1 if the loader still held the lock, 0 if not (an entry is stored
-- either way: it is the freshest there is). If the entry could not be stored
-- (a full Redis: OOM), the lock is still given back and the waiters woken,
-- and then the SET's error is returned as the script's error.
--
-- Order matters. The SET comes first and through pcall: on a full Redis it is
-- refused only as a script's first write (Redis lets every later write through,
-- over maxmemory), and its refusal must not stop the give-back. The DEL is
-- allowed on a full Redis. The PUBLISH goes through pcall too: without channel
-- permissions (a Redis 7 ACL user's default) it fails after everything else
-- took effect, and waiters fall back to looking on their own.

local failed = nil
local written = false
if ARGV[2] ~= '' then
    local reply = redis.pcall('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    if type(reply) == 'table' and reply.err then
        failed = reply.err
    else
        written = true
    end
end
local held = 0
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[2])
    held = 1
end
if written or held == 1 then
    -- Sharded on a cluster node (the channel shares the keys' hash tag), as the
    -- waiters subscribe there (SSUBSCRIBE); PUBLISH elsewhere or before Redis 7.
    local reply = nil
    if type(redis.pcall('CLUSTER', 'MYID')) == 'string' then
        reply = redis.pcall('SPUBLISH', ARGV[4], '')
    end
    if reply == nil or (type(reply) == 'table' and reply.err
            and not string.find(reply.err, 'NOPERM')) then
        redis.pcall('PUBLISH', ARGV[4], '')
    end
end
if failed then
    return redis.error_reply(failed)
end
return held
