-- leaderboard/rank: score and rank of up to 1,000 members, read together.
-- (leaderboard/lib is inserted after this header.)
--
-- KEYS[1]  the board (zset: encoded member -> score)
-- KEYS[2]  member -> prefix (hash)
-- KEYS[3]  distinct scores (zset), for dense ranks (built here if missing);
--          only passed with 'dense'
-- ARGV[1]  '1' descending board, '0' ascending
-- ARGV[2]  'position', 'competition', 'dense', or 'none' (scores only)
-- ARGV[3], ...  members
--
-- Returns {score 1, rank 1, prefix 1, score 2, rank 2, prefix 2, ...}: a score
-- is text, or false for a member not on the board; a rank is 1-based (0 for
-- 'none' or absent); the prefix is the member's current one (or false), which
-- the client may keep: while that encoded member exists, its score is this one.
-- {'damaged'} when a member is not in the member index and the index
-- disagrees with the board (the client heals it and asks again);
-- {'building'} when a dense rank needs a part of the distinct scores not
-- built yet (this call built one more step: the client asks again).
--
-- Resend: safe (a read; its only write, a step of the distinct-score index, is one any call may take)
--   position     1 + entries listed before it (ties: first to reach first)
--   competition  1 + entries with a strictly better score ("1224")
--   dense        1 + distinct strictly better scores ("1223")

local z, m, ds = KEYS[1], KEYS[2], KEYS[3]
local desc = ARGV[1] == '1'
local style = ARGV[2]
local n = #ARGV - 2
local members = {}
for i = 1, n do
    members[i] = ARGV[2 + i]
end
local prefixes = redis.call('HMGET', m, unpack(members))
for i = 1, n do
    if not prefixes[i] then
        if damaged(z, m) then
            return {'damaged'}
        end
        break
    end
end
local cursor = nil
if style == 'dense' then
    cursor = ensure_ds(z, ds, desc)
end

local out = {}
for i = 1, n do
    local score, rank = false, 0
    local prefix = prefixes[i] or false
    if prefix then
        local encoded = prefix .. members[i]
        score = redis.call('ZSCORE', z, encoded)
        if score then
            if style == 'position' then
                if desc then
                    rank = redis.call('ZREVRANK', z, encoded) + 1
                else
                    rank = redis.call('ZRANK', z, encoded) + 1
                end
            elseif style == 'competition' then
                rank = count_better(z, tonumber(score), desc) + 1
            elseif style == 'dense' then
                if not ds_covers(cursor, tonumber(score), desc) then
                    return {'building'}
                end
                rank = count_better(ds, tonumber(score), desc) + 1
            end
        end
    end
    out[3 * i - 2] = score
    out[3 * i - 1] = rank
    out[3 * i] = score and prefix
end
return out
