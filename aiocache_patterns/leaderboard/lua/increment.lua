-- leaderboard/increment: add to one member's score (from 0 if absent).
-- (leaderboard/lib and leaderboard/lib_write are inserted after this header.)
--
-- KEYS[1..4]  the board, member -> prefix, distinct scores, sequence counter
--             (as in leaderboard_submit)
-- ARGV[1]  '1' descending board, '0' ascending
-- ARGV[2]  '1' if the caller ranks densely (then KEYS[3] is built if missing)
-- ARGV[3]  Unix time (s) at which every key of the board expires, '0' = never
-- ARGV[4]  member
-- ARGV[5]  amount (text)
-- ARGV[6]  '1' if amount is an integer: the result must then be exact (an
--          integer within +-2^53), '0' for float arithmetic
--
-- Returns {'ok', new score as text}; {'inexact'} or {'nonfinite'} (nothing
-- changed) when the result would leave the exact integers or be infinite;
-- {'damaged'} (nothing changed) when the member is not in the member index
-- and the index disagrees with the board, or while the index is being rebuilt
-- (see leaderboard_submit): the caller runs leaderboard_heal and tries again.
-- A member whose score does not change (amount 0) keeps its place.

local z, m, ds = KEYS[1], KEYS[2], KEYS[3]
local desc = ARGV[1] == '1'
local member = ARGV[4]
local amount = tonumber(ARGV[5])

local prefix = redis.call('HGET', m, member)
local old = nil
if prefix then
    old = tonumber(redis.call('ZSCORE', z, prefix .. member))
elseif damaged(z, m) then
    return {'damaged'}
end
local base = old or 0
local new = base + amount
if new ~= new or new == math.huge or new == -math.huge then
    return {'nonfinite'}
end
if ARGV[6] == '1' and (new > SEQ_SPAN or new < -SEQ_SPAN or new - amount ~= base) then
    return {'inexact'}
end
if old ~= nil and new == old then
    return {'ok', canon(new)}
end

local seq = take_seqs(KEYS[4], 1)
if seq == nil then
    return {'damaged'}
end
local keep_ds, cursor = ds_state(z, ds, ARGV[2] == '1', desc)
local fresh = prefix_of(seq, desc)
if old ~= nil then
    redis.call('ZREM', z, prefix .. member)
end
redis.call('ZADD', z, canon(new), fresh .. member)
redis.call('HSET', m, member, fresh)
if keep_ds then
    ds_add(ds, {canon(new)}, cursor, desc)
    if old ~= nil then
        ds_drop(z, ds, {old})
    end
end
expire_at(ARGV[3], {z, m, ds, KEYS[4]})
return {'ok', canon(new)}
