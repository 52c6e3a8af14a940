"""Leaderboard: a damaged member index is healed, never a silent duplicate; per-call
work is bounded by the library (reads, the distinct-score index, the heal itself).

Under ``allkeys-lru`` the member -> prefix hash is never read by ``top``, so Redis
evicts it first while the sorted set stays; the next submit of a member used to
add a second entry for it (size 201 of 200, for good). These tests delete the
hash, or part of it, by hand, as an eviction would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiocache_patterns import Leaderboard, LeaderboardEntry, RedisCommandError
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns.leaderboard._scripts import SCRIPTS, Keys
from tests._helpers import ttls_ms

HEAL: Any = SCRIPTS["heal"]
RANK: Any = SCRIPTS["rank"]


def keys(board: Leaderboard[Any]) -> Keys:
    return board._keys()


async def whole(board: Leaderboard[Any]) -> list[LeaderboardEntry[Any]]:
    """Every entry, a page of 1,000 (the most one read returns) at a time."""
    found: list[LeaderboardEntry[Any]] = []
    page = 1
    while len(found) == 1000 * (page - 1):
        found += await board.page(page, size=1000)
        page += 1
    return found


async def seeded(redis: Any, name: str, n: int = 200, **options: Any) -> Leaderboard[str]:
    board: Leaderboard[str] = Leaderboard(redis, name, **options)
    await board.submit_many({f"p{i:04d}": i for i in range(n)})
    return board


# -- the member index lost, whole or in part ---------------------------------------------


async def test_a_submit_after_the_index_was_evicted_heals_it_instead_of_a_duplicate(
    redis: Any,
) -> None:
    board = await seeded(redis, "evicted")
    await redis.delete(keys(board).m)  # allkeys-lru's first victim
    assert await board.submit("p0100", 1_000) is True  # an existing member
    assert await board.size() == 200  # not 201
    assert await board.rank("p0100") == LeaderboardEntry("p0100", 1_000, 1)
    assert [e.member for e in await board.top(3)] == ["p0100", "p0199", "p0198"]
    assert await redis.hlen(keys(board).m) == 200
    assert await board.submit("new", 5) is True  # and new members still come in
    assert await board.size() == 201


async def test_part_of_the_index_lost_is_healed_by_every_kind_of_write(redis: Any) -> None:
    board = await seeded(redis, "part")
    index = keys(board).m
    await redis.hdel(index, "p0001", "p0002", "p0003")
    assert await board.increment("p0001", 1_000) == 1_001
    await redis.hdel(index, "p0004")
    assert await board.submit_many({"p0004": 7_000, "p0005": 7}) == 2
    await redis.hdel(index, "p0006")
    assert await board.remove("p0006") is True
    assert await board.size() == 199
    assert sorted(e.member for e in await whole(board)) == sorted(
        {f"p{i:04d}" for i in range(200)} - {"p0006"}
    )
    assert (await board.top(2))[1] == LeaderboardEntry("p0001", 1_001, 2)
    assert await redis.hlen(index) == await redis.zcard(keys(board).z) == 199


async def test_reads_of_a_member_whose_index_entry_is_gone_are_healed(redis: Any) -> None:
    board = await seeded(redis, "reads", rank_style="competition")
    index = keys(board).m
    await redis.hdel(index, "p0150")
    assert await board.rank("p0150") == LeaderboardEntry("p0150", 150, 50)
    await redis.hdel(index, "p0199")
    around = await board.around("p0199", radius=1)
    assert [e.member for e in around] == ["p0199", "p0198", "p0197"]
    await redis.delete(index)
    ranks = await board.ranks(["p0000", "stranger"])
    assert list(ranks) == ["p0000"]
    assert ranks["p0000"].rank == 200
    assert await board.score("p0042") == 42


async def test_a_big_board_heals_in_bounded_steps_while_others_write(redis: Any) -> None:
    board = await seeded(redis, "big", n=3_000)
    k = keys(board)
    await redis.delete(k.m)
    executor = executor_for(redis)
    # One heal step scans a bounded part of the board and says "more to do".
    assert await executor.script(HEAL, (*k.board, k.heal), (b"1", 1000), 1.0) == 0
    assert 0 < await redis.hlen(k.heal) < 3_000
    # Meanwhile, writers of members both found and not found in the old index wait
    # for the heal (they help it along), and nothing is duplicated.
    others = [Leaderboard(redis, "big") for _ in range(4)]
    results = await asyncio.gather(
        *(o.submit(f"p{i:04d}", 10_000 + i) for i, o in enumerate(others)),
        others[0].increment("p2000", 1),
        board.submit("p2999", 5),
    )
    assert results[:4] == [True] * 4
    assert results[4] == 2001
    assert await board.size() == 3_000
    assert await redis.hlen(k.m) == 3_000
    assert not await redis.exists(k.heal)
    assert int(await redis.get(k.seq)) > 1  # the sequence went on where it was
    assert [e.member for e in await board.top(4)] == ["p0003", "p0002", "p0001", "p0000"]


async def test_a_duplicate_already_on_the_board_is_dropped_keeping_the_latest(
    redis: Any,
) -> None:
    board = await seeded(redis, "dup", n=10)
    k = keys(board)
    await redis.hdel(k.m, "p0003")
    # the old bug's damage: a second entry for p0003, written later (a smaller
    # prefix on a descending board is a later sequence number)
    stale = (await redis.zrangebyscore(k.z, 3, 3))[0]
    later = bytes([stale[0] - 1]) + stale[1:]
    await redis.zadd(k.z, {later: 99})
    # looking p0003 up finds the index short of the board, and heals it
    assert await board.rank("p0003") == LeaderboardEntry("p0003", 99, 1)  # the latest won
    assert await board.size() == 10
    assert await redis.zcount(k.z, 3, 3) == 0
    assert await board.submit("p0003", 50) is True
    assert await board.size() == 10


async def test_a_periodic_board_heals_with_its_time_to_live(redis: Any) -> None:
    board = await seeded(redis, "daily", n=20, period="daily")
    k = keys(board)
    await redis.delete(k.m)
    assert await board.submit("p0007", 70) is True
    assert await board.size() == 20
    ttls = await ttls_ms(redis)
    assert all(ttl > 0 for ttl in ttls.values()), ttls


async def test_a_rolling_view_whose_index_was_evicted_is_rebuilt(redis: Any) -> None:
    daily: Leaderboard[str] = Leaderboard(redis, "rolling", period="daily")
    await daily.submit_many({"a": 1, "b": 2})
    view = daily.last_days(2, max_age=3600)
    assert (await view.rank("a")) == LeaderboardEntry("a", 1, 2)
    await redis.delete(view._keys().m)
    assert (await view.rank("a")) == LeaderboardEntry("a", 1, 2)  # rebuilt, not "absent"


async def test_an_index_that_keeps_breaking_is_a_clear_error(
    redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = await seeded(redis, "broken", n=5)
    k = keys(board)
    await redis.hdel(k.m, "p0001")

    original = board._rebuild_index

    async def evicted_again(index_keys: Keys) -> None:
        await original(index_keys)
        await redis.hdel(k.m, "p0001")  # something keeps evicting it

    monkeypatch.setattr(board, "_rebuild_index", evicted_again)
    with pytest.raises(RedisCommandError, match="evict"):
        await board.submit("p0001", 10)
    assert await board.size() == 5  # and nothing was duplicated meanwhile


# -- bounded reads ----------------------------------------------------------------------------


async def test_reads_return_at_most_1000_entries(redis: Any) -> None:
    board = await seeded(redis, "bounded", n=1_500)
    assert len(await board.top(1_000)) == 1_000
    assert len(await board.page(2, size=1_000)) == 500
    assert len(await board.around("p0700", radius=500)) == 1_001
    for call, argname in (
        (board.top(1_001), "n"),
        (board.top(10**9), "n"),
        (board.page(1, size=1_001), "size"),
        (board.around("p0001", radius=501), "radius"),
        (board.page(2**60, size=1_000), "page"),
    ):
        with pytest.raises(ValueError, match=argname):
            await call


# -- the distinct-score index, built in bounded steps -------------------------------------


async def test_dense_ranks_on_a_big_board_are_built_a_bounded_step_a_call(redis: Any) -> None:
    board = await seeded(redis, "dense", n=5_000)  # not dense: no distinct scores kept
    k = keys(board)
    executor = executor_for(redis)
    # one read script builds one step (2,000 entries) and says so
    reply = await executor.script(RANK, k.reads, (b"1", b"dense", b"p0000"), 1.0)
    assert reply == [b"building"]
    assert await redis.zcard(k.ds) == 2_000 + 1  # the step and its marker
    # Writers meanwhile keep the built part right (scores inside it are added, the
    # others are left to the build), whatever their own rank style.
    await board.submit_many({"top": 4_999, "bottom": -1, "new": 4_000})
    await board.remove("p4998")
    dense: Leaderboard[str] = Leaderboard(redis, "dense", rank_style="dense")
    # the dense read goes on building until it can answer, then answers exactly
    assert await dense.rank("p0000") == LeaderboardEntry("p0000", 0, 4_999)
    assert await dense.rank("bottom") == LeaderboardEntry("bottom", -1, 5_000)
    assert await dense.rank("top") == LeaderboardEntry("top", 4_999, 1)
    assert await dense.rank("p4997") == LeaderboardEntry("p4997", 4_997, 2)
    assert await dense.rank("p4000") == LeaderboardEntry("p4000", 4_000, 999)
    assert await redis.zcard(k.ds) == 5_000  # complete: every distinct score, no marker
