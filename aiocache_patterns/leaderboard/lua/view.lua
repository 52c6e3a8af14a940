-- leaderboard/view: (re)build a rolling view, e.g. the last 7 daily boards,
-- as a board of its own, unless a fresh one is already there.
-- (leaderboard/lib and leaderboard/lib_write are inserted after this header.)
--
-- KEYS[1]  the view's board (zset), KEYS[2] its member -> prefix hash,
-- KEYS[3]  its distinct scores, KEYS[4] its freshness marker
-- KEYS[5], ...  the zsets of the period boards it is built from
-- ARGV[1]  '1' descending boards, '0' ascending
-- ARGV[2]  'sum': a member's scores are added up; 'best': its best one counts
-- ARGV[3]  how long (ms) a rebuilt view stays fresh; '0': rebuild on every read
-- ARGV[4]  time to live (ms) of the view's keys (longer than ARGV[3], so a
--          read sent right after this script still finds them)
-- ARGV[5]  '1' to rebuild even if the view is fresh
--
-- Returns 1 if the view was rebuilt, 0 if it was fresh. A view whose member
-- index disagrees with its board (evicted) is rebuilt, fresh or not.
--
-- Ties in the view: with 'sum', a member reached its total at its latest
-- contributing update; with 'best', when it first reached its best score.
-- Sequence numbers follow the server clock, so they compare across boards.

local vz, vm, vds, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local desc = ARGV[1] == '1'
local sum = ARGV[2] == 'sum'
if ARGV[5] ~= '1' and ARGV[3] ~= '0' and redis.call('EXISTS', marker) == 1
    and not damaged(vz, vm) then
    return 0
end
redis.call('DEL', vz, vm, vds)

local total, seq, order = {}, {}, {}
for k = 5, #KEYS do
    local size = redis.call('ZCARD', KEYS[k])
    for start = 0, size - 1, 1000 do
        local page = redis.call('ZRANGE', KEYS[k], int_text(start), int_text(start + 999), 'WITHSCORES')
        for j = 1, #page, 2 do
            local encoded = page[j]
            local member = string.sub(encoded, 8)
            local s = tonumber(page[j + 1])
            local q = seq_of(encoded, desc)
            local current = total[member]
            if current == nil then
                order[#order + 1] = member
                total[member] = s
                seq[member] = q
            elseif sum then
                total[member] = current + s
                if q > seq[member] then
                    seq[member] = q
                end
            else
                local better
                if desc then better = s > current else better = s < current end
                if better then
                    total[member] = s
                    seq[member] = q
                elseif s == current and q < seq[member] then
                    seq[member] = q
                end
            end
        end
    end
end

local zadd, hset, nb = {}, {}, 0
for i = 1, #order do
    local member = order[i]
    local prefix = prefix_of(seq[member], desc)
    zadd[nb + 1] = canon(total[member])
    zadd[nb + 2] = prefix .. member
    hset[nb + 1] = member
    hset[nb + 2] = prefix
    nb = nb + 2
    if nb >= 1000 or i == #order then
        redis.call('ZADD', vz, unpack(zadd, 1, nb))
        redis.call('HSET', vm, unpack(hset, 1, nb))
        nb = 0
    end
end
redis.call('PEXPIRE', vz, ARGV[4])
redis.call('PEXPIRE', vm, ARGV[4])
local fresh = tonumber(ARGV[3])
if fresh < 1 then
    fresh = 1
end
redis.call('SET', marker, '1', 'PX', int_text(fresh))
return 1
