"""Leaderboard: order and ties (by time, in either direction), exact scores, member names."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiocache_patterns import (
    Leaderboard,
    LeaderboardEntry,
)
from aiocache_patterns._redis.executor import executor_for
from tests.leaderboard._common import SEED, table

# -- order, ties, exact scores ---------------------------------------------------


async def test_the_seed_players_come_back_in_order_with_one_based_ranks(redis: Any) -> None:
    board = Leaderboard(redis, "scores")
    for member, score in SEED:
        assert await board.submit(member, score) is True

    # alice reached 300 before carol: she ranks first, although "carol" > "alice"
    # (a plain ZREVRANGE lists equal scores in reverse byte order: carol first).
    assert table(await board.top(10)) == [("alice", 300, 1), ("carol", 300, 2), ("bob", 150, 3)]
    assert await board.rank("carol") == LeaderboardEntry("carol", 300, 2)
    assert await board.rank("bob") == LeaderboardEntry("bob", 150, 3)
    assert await board.rank("nobody") is None
    assert await board.size() == 3
    assert await board.score("alice") == 300
    assert type(await board.score("alice")) is int


async def test_ties_rank_by_time_not_by_name_in_either_direction(redis: Any) -> None:
    board = Leaderboard(redis, "ties")
    for member in ("zed", "amy", "mia"):  # neither byte order nor its reverse
        await board.submit(member, 50)
    assert [e.member for e in await board.top()] == ["zed", "amy", "mia"]

    low = Leaderboard(redis, "ties", ascending=True)  # a separate board (":asc")
    for member in ("mia", "zed", "amy"):
        await low.submit(member, 7)
    await low.submit("best", 1)
    assert table(await low.top()) == [("best", 1, 1), ("mia", 7, 2), ("zed", 7, 3), ("amy", 7, 4)]
    assert [e.member for e in await board.top()] == ["zed", "amy", "mia"]  # untouched


async def test_ties_rank_by_time_also_after_increment(redis: Any) -> None:
    board = Leaderboard(redis, "inc-ties")
    for member in ("a", "b", "c"):
        await board.submit(member, 100)
    assert await board.increment("a", 10) == 110
    assert await board.increment("a", -10) == 100  # back to 100, but last to get there
    assert [e.member for e in await board.top()] == ["b", "c", "a"]

    # Changing nothing keeps a member's place: resubmitting, adding 0.
    assert await board.submit("b", 100) is False
    assert await board.increment("b", 0) == 100
    assert await board.increment("b", 0.0) == 100
    assert [e.member for e in await board.top()] == ["b", "c", "a"]

    # A newcomer reaching 100 by increments queues behind those already there.
    await board.increment("d", 60)
    await board.increment("d", 40)
    assert table(await board.top()) == [
        ("b", 100, 1),
        ("c", 100, 2),
        ("a", 100, 3),
        ("d", 100, 4),
    ]


async def test_scores_stay_exact(redis: Any) -> None:
    board = Leaderboard(redis, "exact")
    values: dict[str, int | float] = {
        "max": 2**53,
        "min": -(2**53),
        "odd": 2**53 - 1,
        "tenth": 0.1,
        "third": 1 / 3,
        "huge": 1e300,
        "tiny": 5e-324,
        "neg": -2.5,
        "zero": 0,
    }
    await board.submit_many(values)
    for member, value in values.items():
        got = await board.score(member)
        assert got == value, member
        assert type(got) is type(value), member
    # An integral float comes back as an int (same value); beyond 2**53 it stays a float.
    await board.submit("whole", 2.0)
    assert await board.score("whole") == 2
    assert type(await board.score("whole")) is int
    await board.submit("big", 2.0**60)
    assert await board.score("big") == 2.0**60
    assert type(await board.score("big")) is float
    assert [e.member for e in await board.top(3)] == ["huge", "big", "max"]


async def test_increment_returns_the_exact_new_score(redis: Any) -> None:
    board = Leaderboard(redis, "incr")
    assert await board.increment("new") == 1  # from 0 if absent
    assert await board.increment("new", 41) == 42

    await board.submit("edge", 2**53 - 1)
    assert await board.increment("edge", 1) == 2**53
    # 2**53 + 1 is not a double: refused, not rounded back to 2**53.
    with pytest.raises(ValueError, match=r"^amount 1 would take .*2\*\*53"):
        await board.increment("edge", 1)
    assert await board.score("edge") == 2**53
    assert await board.increment("edge", -(2**53)) == 0
    with pytest.raises(ValueError, match=r"^amount"):
        await board.increment("edge", -(2**53) - 1)  # refused before sending

    assert await board.increment("f", 0.1) == 0.1
    assert await board.increment("f", 0.2) == 0.1 + 0.2  # float arithmetic, exactly Python's
    await board.submit("vast", 1.5e308)
    with pytest.raises(ValueError, match=r"^amount .* infinite"):
        await board.increment("vast", 1.5e308)
    assert await board.score("vast") == 1.5e308


async def test_a_remembered_member_is_checked_not_trusted(redis: Any) -> None:
    reader = Leaderboard(redis, "hints")
    writer = Leaderboard(redis, "hints")  # another process, as far as reader knows
    await writer.submit_many({"a": 10, "b": 20, "c": 30})
    executor = executor_for(redis)
    assert await reader.rank("a") == LeaderboardEntry("a", 10, 3)  # a script
    before = executor.round_trips
    assert await reader.rank("a") == LeaderboardEntry("a", 10, 3)  # remembered: one ZREVRANK
    assert await reader.score("a") == 10
    assert executor.round_trips - before == 2

    await writer.submit("d", 40)  # others move: the rank is read live
    assert await reader.rank("a") == LeaderboardEntry("a", 10, 4)
    await writer.submit("a", 50)  # a new score: the remembered entry is gone
    assert await reader.rank("a") == LeaderboardEntry("a", 50, 1)
    assert await reader.score("a") == 50
    await writer.increment("a", -45)
    assert await reader.score("a") == 5
    assert await reader.rank("a") == LeaderboardEntry("a", 5, 4)
    await writer.remove("a")
    assert await reader.rank("a") is None
    assert await reader.score("a") is None
    await writer.submit("a", 5)  # back with the same score, as a new arrival
    await writer.submit("e", 5)
    assert await reader.rank("e") == LeaderboardEntry("e", 5, 5)
    assert await reader.rank("a") == LeaderboardEntry("a", 5, 4)
    await writer.clear()
    assert await reader.rank("a") is None


async def test_many_concurrent_increments_add_up(redis: Any) -> None:
    board = Leaderboard(redis, "concurrent")
    await asyncio.gather(*(board.increment(f"p{i % 5}", 1) for i in range(500)))
    assert {e.member: e.score for e in await board.top()} == {f"p{i}": 100 for i in range(5)}


async def test_str_and_bytes_name_the_same_member(redis: Any) -> None:
    board = Leaderboard(redis, "kinds")
    await board.submit("alice", 1)
    await board.submit(b"alice", 2)
    await board.submit("ünïcode", 3)
    await board.submit(b"\xff\x00raw", 4)  # not UTF-8
    assert await board.size() == 3
    top = await board.top()
    assert [e.member for e in top] == ["\udcff\x00raw", "ünïcode", "alice"]
    assert await board.rank(top[0].member) == LeaderboardEntry("\udcff\x00raw", 4, 1)
    raw = Leaderboard(redis, "kinds", member_type=bytes)
    assert [e.member for e in await raw.top()] == [b"\xff\x00raw", "ünïcode".encode(), b"alice"]


async def test_a_decode_responses_client_reads_the_same(redis_decoded: Any) -> None:
    board = Leaderboard(redis_decoded, "decoded")
    for member, score in SEED:
        await board.submit(member, score)
    assert table(await board.top()) == [("alice", 300, 1), ("carol", 300, 2), ("bob", 150, 3)]
    assert await board.around("bob", 1) == await board.top()  # shifted: all three
    assert await board.increment("bob", 0.5) == 150.5
    assert (await board.ranks(["bob"]))["bob"].rank == 3
