-- leaderboard/remove: take one member off the board.
-- (leaderboard/lib and leaderboard/lib_write are inserted after this header.)
--
-- KEYS[1..4]  the board, member -> prefix, distinct scores, sequence counter
--             (as in leaderboard_submit)
-- ARGV[1]  member
--
-- Returns 1 if the member was on the board, else 0; -1 (nothing changed)
-- when the member is not in the member index and the index disagrees with the
-- board (see leaderboard_submit): the caller runs leaderboard_heal and tries
-- again. A board left empty leaves no key behind (its sequence counter and
-- distinct scores go too).

local z, m, ds = KEYS[1], KEYS[2], KEYS[3]
local member = ARGV[1]
local prefix = redis.call('HGET', m, member)
if not prefix then
    if damaged(z, m) then
        return -1
    end
    return 0
end
redis.call('HDEL', m, member)
local old = redis.call('ZSCORE', z, prefix .. member)
local removed = 0
if old then
    redis.call('ZREM', z, prefix .. member)
    removed = 1
    if redis.call('EXISTS', ds) == 1 then
        ds_drop(z, ds, {tonumber(old)})
    end
end
if redis.call('EXISTS', z) == 0 then
    redis.call('DEL', m, ds, KEYS[4])
end
return removed
