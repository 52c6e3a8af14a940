-- leaderboard/submit: set the scores of up to 1,000 members at once, in order.
-- (leaderboard/lib and leaderboard/lib_write are inserted after this header.)
--
-- KEYS[1]  the board (zset: encoded member -> score)
-- KEYS[2]  member -> prefix (hash)
-- KEYS[3]  distinct scores (zset), for dense ranks
-- KEYS[4]  tie-break sequence counter
-- ARGV[1]  '1' keep only the best score (higher on descending boards, lower on
--          ascending ones, like ZADD GT / LT), '0' keep the latest
-- ARGV[2]  '1' descending board (highest first), '0' ascending
-- ARGV[3]  '1' if the caller ranks densely (then KEYS[3] is built if missing)
-- ARGV[4]  Unix time (s) at which every key of the board expires, '0' = never
-- ARGV[5]  the scores, as text, separated by single spaces
-- ARGV[6]  the members' lengths in bytes, 4 bytes each, big-endian
-- ARGV[7]  the members (distinct), concatenated
--
-- (Three arguments rather than two per member: redis-py's asyncio client
-- packs each argument in Python, which cost more than the whole script.)
--
-- Returns the number of members whose score changed (new, or a new score);
-- -1, having written nothing, when a member is not in the member index and
-- the index disagrees with the board (it was evicted or deleted: the member
-- may be on the board under its old prefix), or while the index is being
-- rebuilt: the caller runs leaderboard_heal and tries again.
-- A member resubmitting its current score keeps its place among equal scores;
-- each changed member gets a new sequence number, in argument order.

local z, m, ds = KEYS[1], KEYS[2], KEYS[3]
local best = ARGV[1] == '1'
local desc = ARGV[2] == '1'

local lengths, blob = ARGV[6], ARGV[7]
local n = #lengths / 4
local members, texts = {}, {}
local pos, byte, sub = 1, string.byte, string.sub
for i = 1, n do
    local b1, b2, b3, b4 = byte(lengths, 4 * i - 3, 4 * i)
    local stop = pos + ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    members[i] = sub(blob, pos, stop - 1)
    pos = stop
end
local count = 0
for text in string.gmatch(ARGV[5], '%S+') do
    count = count + 1
    texts[count] = text
end
if count ~= n or pos ~= #blob + 1 or n ~= math.floor(n) then
    return redis.error_reply('ERR leaderboard_submit: scores and members do not match')
end
if n < 1 then
    return 0
end

local prefixes = redis.call('HMGET', m, unpack(members))
local known, known_at = {}, {}
for i = 1, n do
    if prefixes[i] then
        known[#known + 1] = prefixes[i] .. members[i]
        known_at[#known_at + 1] = i
    end
end
if #known < n and damaged(z, m) then
    return -1
end

-- Which members change: all of them when none is on the board yet (a bulk
-- load), else those that are new or get a different (better) score.
local changed, olds = nil, {}
if #known > 0 then
    local got = redis.call('ZMSCORE', z, unpack(known))
    for j = 1, #known do
        olds[known_at[j]] = tonumber(got[j])
    end
    changed = {}
    for i = 1, n do
        local old = olds[i]
        local change = old == nil
        if not change then
            local new = tonumber(texts[i])
            if best then
                if desc then change = new > old else change = new < old end
            else
                change = new ~= old
            end
        end
        if change then
            changed[#changed + 1] = i
        end
    end
    if #changed == 0 then
        return 0
    end
end
local total = n
if changed then
    total = #changed
end

local first = take_seqs(KEYS[4], total)
if first == nil then
    return -1
end
local keep_ds, cursor = ds_state(z, ds, ARGV[3] == '1', desc)
local next_prefix = prefix_stream(first, desc)
local zadd, hset, zrem, gone, news = {}, {}, {}, {}, {}
for j = 1, total do
    local i = j
    if changed then
        i = changed[j]
    end
    local member = members[i]
    local prefix = next_prefix()
    if olds[i] ~= nil then
        zrem[#zrem + 1] = prefixes[i] .. member
        gone[#gone + 1] = olds[i]
    end
    zadd[2 * j - 1] = texts[i]
    zadd[2 * j] = prefix .. member
    hset[2 * j - 1] = member
    hset[2 * j] = prefix
    if keep_ds then
        news[j] = texts[i]
    end
end
if #zrem > 0 then
    redis.call('ZREM', z, unpack(zrem))
end
redis.call('ZADD', z, unpack(zadd))
redis.call('HSET', m, unpack(hset))
if keep_ds then
    ds_add(ds, news, cursor, desc)
    ds_drop(z, ds, gone)
end
expire_at(ARGV[4], {z, m, ds, KEYS[4]})
return total
