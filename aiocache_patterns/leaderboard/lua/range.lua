-- leaderboard/range: a slice of the board in rank order, with the rank of its
-- first entry, read together: the entries around a member, or a page.
-- (leaderboard/lib is inserted after this header.)
--
-- KEYS[1]  the board (zset: encoded member -> score)
-- KEYS[2]  member -> prefix (hash)
-- KEYS[3]  distinct scores (zset), for dense ranks (built here if missing);
--          only passed with 'dense'
-- ARGV[1]  '1' descending board, '0' ascending
-- ARGV[2]  'position', 'competition' or 'dense'
-- ARGV[3]  'around': ARGV[4] member, ARGV[5] radius. The window has
--          2 * radius + 1 entries, centred on the member and shifted (not
--          cut) at either end of the board, so it is only shorter when the
--          whole board is.
--          'page': ARGV[4] offset (0-based), ARGV[5] count.
--
-- Returns {offset, rank of the first entry, encoded 1, score 1, encoded 2,
-- score 2, ...}; {offset, 0} past the end; {} when 'around' names a member
-- that is not on the board; {'damaged'} when it is not in the member index
-- and the index disagrees with the board (the client heals it and asks
-- again); {'building'} when a dense rank needs a part of the distinct scores
-- not built yet (this call built one more step: the client asks again).
--
-- Resend: safe (a read; its only write, a step of the distinct-score index, is one any call may take)

local z, m, ds = KEYS[1], KEYS[2], KEYS[3]
local desc = ARGV[1] == '1'
local style = ARGV[2]

local start, count
if ARGV[3] == 'around' then
    local prefix = redis.call('HGET', m, ARGV[4])
    if not prefix then
        if damaged(z, m) then
            return {'damaged'}
        end
        return {}
    end
    local rank
    if desc then
        rank = redis.call('ZREVRANK', z, prefix .. ARGV[4])
    else
        rank = redis.call('ZRANK', z, prefix .. ARGV[4])
    end
    if not rank then
        return {}
    end
    local radius = tonumber(ARGV[5])
    count = 2 * radius + 1
    local size = redis.call('ZCARD', z)
    start = rank - radius
    if start + count > size then
        start = size - count
    end
    if start < 0 then
        start = 0
    end
else
    start = tonumber(ARGV[4])
    count = tonumber(ARGV[5])
end

local range = 'ZRANGE'
if desc then
    range = 'ZREVRANGE'
end
local entries = redis.call(range, z, int_text(start), int_text(start + count - 1), 'WITHSCORES')
if #entries == 0 then
    return {start, 0}
end

local first
if style == 'position' then
    first = start + 1
elseif style == 'competition' then
    first = count_better(z, tonumber(entries[2]), desc) + 1
else
    local score = tonumber(entries[2])
    if not ds_covers(ensure_ds(z, ds, desc), score, desc) then
        return {'building'}
    end
    first = count_better(ds, score, desc) + 1
end
local out = {start, first}
for i = 1, #entries do
    out[2 + i] = entries[i]
end
return out
