-- cache/tag_version: the current version of a tag, made if there is none, kept
-- alive at least as long as the entry about to be written under it.
--
-- KEYS[1]  the tag's version key
-- ARGV[1]  a new random version to set if the key is absent, or '' to make none
-- ARGV[2]  milliseconds the key must live at least (the entry's time to live)
--
-- Returns the version (bulk string), or nil if the key is absent and ARGV[1] is ''.
--
-- A version is 16 random bytes, never reused: a version key that expired,
-- was evicted or was deleted (invalidate_tags) comes back with a new version,
-- so no entry written under an old one can ever become valid again. The TTL
-- is only ever raised, never lowered; every version key has one.
--
-- Resend: safe (a second run finds the version the first set and returns it; the TTL only grows)

local version = redis.call('GET', KEYS[1])
local px = tonumber(ARGV[2])
if not version then
    if ARGV[1] == '' then
        return false
    end
    redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
    return ARGV[1]
end
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and left < px then
    redis.call('PEXPIRE', KEYS[1], px)
elseif left == -1 then
    -- A key without a TTL was not written by us; give it one all the same.
    redis.call('PEXPIRE', KEYS[1], px)
end
return version
