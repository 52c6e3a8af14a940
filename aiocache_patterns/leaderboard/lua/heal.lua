-- leaderboard/heal: rebuild a board's member index (member -> prefix) from the
-- board itself, a bounded step a call, after the index (or part of it) was
-- evicted or deleted. (leaderboard/lib and leaderboard/lib_write are inserted after this header.)
--
-- KEYS[1..4]  the board, member -> prefix, distinct scores, sequence counter
--             (as in leaderboard_submit)
-- KEYS[5]     the index being rebuilt (hash), a key of this script's own
-- ARGV[1]     '1' descending board, '0' ascending
-- ARGV[2]     entries of the board to scan per call (a ZSCAN COUNT)
--
-- Returns 1 when the index is whole again (or was: another caller finished
-- it), 0 when more steps are needed: call again.
--
-- While it runs, the sequence counter holds "heal <last> <scan cursor>", so
-- writers that would add entries write nothing (take_seqs returns nil) and
-- come here instead; the marker and KEYS[5] expire after a minute without a
-- step, so a caller that dies leaves nothing stuck. Removals may still run; a
-- member removed meanwhile may come back as a stale index entry, which the
-- next mismatch heals. A member found twice on the board (two prefixes) keeps
-- its latest entry (the higher sequence number); the other is removed. The
-- distinct scores are dropped at the end (rebuilt on demand), since they may
-- hold the scores of removed duplicates.
--
-- Resend: safe (each step converges on the same index; a finished heal answers 1 again)

local z, m, ds, seq, work = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local desc = ARGV[1] == '1'
local HEAL_TTL = 60000

local marker = redis.call('GET', seq)
local last, cursor = nil, nil
if marker and string.sub(marker, 1, 5) == 'heal ' then
    last, cursor = string.match(marker, '^heal (%d+) (%d+)$')
end
if cursor == nil then
    if not damaged(z, m) then
        redis.call('DEL', work)
        return 1
    end
    -- start: keep the last sequence number, to put it back at the end
    last = '0'
    if marker and tonumber(marker) then
        last = int_text(tonumber(marker))
    end
    cursor = '0'
    redis.call('DEL', work)
end

local got = redis.call('ZSCAN', z, cursor, 'COUNT', ARGV[2])
local items = got[2]
for j = 1, #items, 2 do
    local encoded = items[j]
    local member, prefix = string.sub(encoded, 8), string.sub(encoded, 1, 7)
    local known = redis.call('HGET', work, member)
    if known and known ~= prefix then
        if seq_of(known, desc) > seq_of(prefix, desc) then
            redis.call('ZREM', z, encoded)
            prefix = nil
        else
            redis.call('ZREM', z, known .. member)
        end
    end
    if prefix then
        redis.call('HSET', work, member, prefix)
    end
end

if got[1] ~= '0' then
    redis.call('SET', seq, 'heal ' .. last .. ' ' .. got[1], 'PX', HEAL_TTL)
    redis.call('PEXPIRE', work, HEAL_TTL)
    return 0
end

-- done: the rebuilt index replaces the old one, with the board's time to live
if redis.call('EXISTS', work) == 1 then
    redis.call('RENAME', work, m)
else
    redis.call('DEL', m)
end
redis.call('DEL', ds)
local ttl = redis.call('PTTL', z)
if last ~= '0' then
    redis.call('SET', seq, last)
else
    redis.call('DEL', seq)
end
if ttl > 0 then
    redis.call('PEXPIRE', m, ttl)
    redis.call('PEXPIRE', seq, ttl)
else
    redis.call('PERSIST', m)
end
return 1
