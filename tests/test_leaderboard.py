"""Leaderboard: order and ties, rank styles, around-me, pages, periods, bulk, bad input, faults."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from aiocache_patterns import (
    BoardPeriod,
    Leaderboard,
    LeaderboardEntry,
    LeaderboardView,
    RankStyle,
    RedisUnavailable,
)
from aiocache_patterns._redis.executor import executor_for
from tests._backends import all_keys
from tests._helpers import ttls_ms
from tests._servers import free_port


async def whole(board: Leaderboard[Any]) -> list[LeaderboardEntry[Any]]:
    """Every entry of ``board``, a page of 1,000 (the most one read returns) at a time."""
    found: list[LeaderboardEntry[Any]] = []
    page = 1
    while True:
        entries = await board.page(page, size=1000)
        found += entries
        if len(entries) < 1000:
            return found
        page += 1


SEED = (("alice", 300), ("bob", 150), ("carol", 300))


def table(board_entries: list[LeaderboardEntry[Any]]) -> list[tuple[Any, Any, int]]:
    """Entries as (member, score, rank) rows, easy to compare with a hand-made table."""
    return [(e.member, e.score, e.rank) for e in board_entries]


def at(day: str, hour: int = 12) -> float:
    """Unix time of ``day`` (YYYY-MM-DD) at ``hour``:00 UTC."""
    moment = datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc)
    return moment.timestamp()


class Clock:
    """A settable wall clock for periodic boards."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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


# -- around-me and pages ---------------------------------------------------------


async def ten_players(redis: Any, **kwargs: Any) -> Leaderboard[str]:
    board = Leaderboard(redis, "ten", **kwargs)
    await board.submit_many({f"p{i}": 100 - 10 * i for i in range(10)})
    return board


async def test_around_is_exact_at_both_edges(redis: Any) -> None:
    board = await ten_players(redis)

    async def members(member: str, radius: int) -> list[str]:
        return [e.member for e in await board.around(member, radius)]

    assert await members("p5", 2) == ["p3", "p4", "p5", "p6", "p7"]
    assert await members("p0", 2) == ["p0", "p1", "p2", "p3", "p4"]  # shifted, not cut
    assert await members("p1", 2) == ["p0", "p1", "p2", "p3", "p4"]
    assert await members("p9", 2) == ["p5", "p6", "p7", "p8", "p9"]
    assert await members("p8", 3) == ["p3", "p4", "p5", "p6", "p7", "p8", "p9"]
    assert await members("p4", 0) == ["p4"]
    assert await members("p4", 5) == [f"p{i}" for i in range(10)]  # 11 wanted, 10 there
    assert await members("p4", 100) == [f"p{i}" for i in range(10)]
    assert await board.around("nobody", 2) == []
    assert table(await board.around("p9", 1)) == [("p7", 30, 8), ("p8", 20, 9), ("p9", 10, 10)]

    small = Leaderboard(redis, "three")
    await small.submit_many({"x": 3, "y": 2, "z": 1})
    assert table(await small.around("z", 2)) == [("x", 3, 1), ("y", 2, 2), ("z", 1, 3)]


async def test_pages_are_exact_at_the_edges(redis: Any) -> None:
    board = await ten_players(redis)
    assert table(await board.page(1, 4)) == [
        ("p0", 100, 1),
        ("p1", 90, 2),
        ("p2", 80, 3),
        ("p3", 70, 4),
    ]
    assert [e.rank for e in await board.page(2, 4)] == [5, 6, 7, 8]
    assert table(await board.page(3, 4)) == [("p8", 20, 9), ("p9", 10, 10)]  # last, partial
    assert await board.page(4, 4) == []  # past the end
    assert await board.page(1000, 4) == []
    assert [e.member for e in await board.page(10, 1)] == ["p9"]
    assert len(await board.page(1, 100)) == 10
    assert len(await board.top(100)) == 10


# -- rank styles -----------------------------------------------------------------

#: Scores 100, 90, 90, 80, 80, 80, 70 (a..g, submitted in that order), by hand.
STYLE_TABLE: dict[str, list[int]] = {
    "position": [1, 2, 3, 4, 5, 6, 7],
    "competition": [1, 2, 2, 4, 4, 4, 7],
    "dense": [1, 2, 2, 3, 3, 3, 4],
}
STYLE_SCORES = dict(zip("abcdefg", [100, 90, 90, 80, 80, 80, 70], strict=True))


@pytest.mark.parametrize("style", ["position", "competition", "dense"])
async def test_rank_styles_match_the_hand_computed_table(redis: Any, style: RankStyle) -> None:
    board = Leaderboard(redis, "styles", rank_style=style)
    await board.submit_many(STYLE_SCORES)
    expected = STYLE_TABLE[style]
    by_member = dict(zip("abcdefg", expected, strict=True))

    assert [e.rank for e in await board.top(7)] == expected
    for member, rank in by_member.items():
        entry = await board.rank(member)
        assert entry is not None
        assert entry.rank == rank, member
    ranks = await board.ranks(list("gfedcba"))
    assert {m: e.rank for m, e in ranks.items()} == by_member
    # Pages and windows that start on a tie, mid-board (computed on the server).
    for size in (1, 2, 3):
        got = [e.rank for p in range(1, 8) for e in await board.page(p, size)]
        assert got == expected, size
    assert [e.rank for e in await board.around("e", 1)] == expected[3:6]
    assert [e.rank for e in await board.around("g", 1)] == expected[4:]


async def test_small_example_100_90_90_80(redis: Any) -> None:
    scores = {"a": 100, "b": 90, "c": 90, "d": 80}
    expected = {"position": [1, 2, 3, 4], "competition": [1, 2, 2, 4], "dense": [1, 2, 2, 3]}
    for style, ranks in expected.items():
        board = Leaderboard(redis, f"small-{style}", rank_style=style)  # type: ignore[call-overload]
        await board.submit_many(scores)
        assert [e.rank for e in await board.top()] == ranks, style
        assert [e.rank for e in await board.page(2, 2)] == ranks[2:], style


async def test_dense_ranks_follow_updates_and_removals(redis: Any) -> None:
    board = Leaderboard(redis, "dense", rank_style="dense")
    await board.submit_many({"a": 100, "b": 90, "c": 90, "d": 80})

    async def dense() -> dict[str, int]:
        return {e.member: e.rank for e in await board.top()}

    await board.submit("d", 90)
    assert await dense() == {"a": 1, "b": 2, "c": 2, "d": 2}  # 80 is nobody's any more
    await board.increment("d", -20)
    assert await dense() == {"a": 1, "b": 2, "c": 2, "d": 3}
    await board.remove("b")
    await board.remove("c")  # 90 is gone
    assert await dense() == {"a": 1, "d": 2}
    assert (await board.rank("d")) == LeaderboardEntry("d", 70, 2)


async def test_a_board_ranked_densely_later_builds_its_distinct_scores(redis: Any) -> None:
    plain = Leaderboard(redis, "later")
    await plain.submit_many({"a": 5, "b": 5, "c": 3, "d": 1})
    dense = Leaderboard(redis, "later", rank_style="dense")  # same data, another style
    assert [e.rank for e in await dense.top()] == [1, 1, 2, 3]
    # Writers that do not rank densely keep the distinct scores up to date from now on.
    await plain.submit("e", 4)
    await plain.remove("c")
    await plain.increment("d", 1)  # 1 -> 2
    assert {e.member: e.rank for e in await dense.top()} == {"a": 1, "b": 1, "e": 2, "d": 3}
    assert [e.rank for e in await plain.top()] == [1, 2, 3, 4]
    assert [e.rank for e in await Leaderboard(redis, "later", rank_style="competition").top()] == [
        1,
        1,
        3,
        4,
    ]


# -- keep="best" -----------------------------------------------------------------


async def test_keep_best_keeps_only_a_better_score(redis: Any) -> None:
    board = Leaderboard(redis, "best")
    assert await board.submit("a", 100, keep="best")
    assert await board.submit("a", 90, keep="best") is False
    assert await board.score("a") == 100
    assert await board.submit("a", 120, keep="best") is True
    assert await board.score("a") == 120
    assert await board.submit("a", 80) is True  # the default keeps the latest
    assert await board.score("a") == 80

    # A board whose default is "best"; ties keep the first to reach the score.
    best = Leaderboard(redis, "best2", keep="best")
    await best.submit("x", 10)
    await best.submit("y", 10)
    assert await best.submit("x", 10) is False
    assert await best.submit_many({"x": 5, "y": 11, "z": 1}) == 2  # y improves, z is new
    assert table(await best.top()) == [("y", 11, 1), ("x", 10, 2), ("z", 1, 3)]
    assert await best.submit("y", 3, keep="latest") is True
    assert await best.score("y") == 3

    # On an ascending board (lap times), the best score is the lowest.
    laps = Leaderboard(redis, "laps", ascending=True, keep="best")
    await laps.submit("ann", 61.2)
    assert await laps.submit("ann", 62.0) is False
    assert await laps.submit("ann", 60.9) is True
    await laps.submit("ben", 60.95)
    assert table(await laps.top()) == [("ann", 60.9, 1), ("ben", 60.95, 2)]


# -- bulk, batch lookups, remove/size/score -----------------------------------------


async def test_submit_many_is_one_round_trip_for_thousands(redis: Any) -> None:
    board = Leaderboard(redis, "bulk")
    executor = executor_for(redis)
    scores = {f"m{i:05d}": i % 1000 for i in range(12_000)}
    before = executor.round_trips
    assert await board.submit_many(scores) == 12_000
    assert executor.round_trips - before == 1
    assert await board.size() == 12_000
    # Ties rank in the order given, also across the 1,000-member batches.
    top = await board.top(12)
    assert [e.member for e in top] == [f"m{i:05d}" for i in range(999, 12_000, 1000)]
    assert await board.submit_many(scores) == 0  # nothing changed
    assert await board.submit_many([("m00001", 5), ("m00001", 7)]) == 1  # later one counts
    assert await board.score("m00001") == 7
    assert await board.submit_many({}) == 0


@pytest.mark.parametrize("ascending", [False, True])
async def test_a_shuffled_bulk_ranks_ties_in_the_order_given(redis: Any, ascending: bool) -> None:
    """A bulk is sent lowest score first; ties still rank in the order given: equal
    scores interleaved with others, runs of one score longer than a batch, members
    already on the board (ahead on ties, unless they move to a new score), an int
    and a float score that are equal, and non-ASCII members beside ASCII ones."""
    board = Leaderboard(redis, "shuffled", ascending=ascending)
    rng = random.Random(7)
    old = {f"old{i}": 2 + i % 2 for i in range(60)}
    await board.submit_many(old)
    members = [f"n{i}" for i in range(2_600)] + [f"old{i}" for i in range(0, 60, 3)] + ["é", "ü"]
    rng.shuffle(members)
    given = {m: rng.choice([1, 2, 2.0, 3, 3, 3, 4.5]) for m in members}  # 3: ~1,100 members
    kept = {m: v for m, v in old.items() if given.get(m, v) == v}  # same score: keeps its place
    assert await board.submit_many(given) == len(given) - len(kept.keys() & given.keys())
    place = {m: i - len(old) for i, m in enumerate(old)} | {
        m: i for i, m in enumerate(given) if m not in kept
    }
    everyone = old | given
    sign = 1 if ascending else -1
    expected = sorted(everyone, key=lambda m: (sign * everyone[m], place[m]))
    assert [e.member for e in await whole(board)] == expected
    assert (await board.rank("é")).rank == expected.index("é") + 1  # type: ignore[union-attr]


async def test_bulk_members_of_every_kind_are_stored_as_their_bytes(redis: Any) -> None:
    """The bulk fast paths (all-ASCII str encoded per batch, bytes as they are,
    other str one by one) store the same bytes a single submit does."""
    ascii_board = Leaderboard(redis, "kinds")
    await ascii_board.submit_many({f"a{i}": i for i in range(1_500)})
    assert await ascii_board.score("a1499") == 1499
    assert (await ascii_board.rank(b"a0")).rank == 1_500  # type: ignore[union-attr]
    raw = Leaderboard(redis, "kinds-bytes", member_type=bytes)
    await raw.submit_many({bytes([i % 256, i // 256 + 1]): i for i in range(1_500)})
    assert await raw.top(1) == [LeaderboardEntry(bytes([1499 % 256, 6]), 1499, 1)]
    text = Leaderboard(redis, "kinds-text")
    escaped = "bad\udcff"  # bytes b"bad\xff", not UTF-8: kept by surrogateescape
    await text.submit_many({escaped: 5.5, "ok": 1, **{f"é{i}": 2 for i in range(1_200)}})
    assert await text.score(b"bad\xff") == 5.5
    assert (await text.top(1))[0].member == escaped
    assert await text.score("é1199") == 2
    with pytest.raises(ValueError, match="lone surrogate"):
        await text.submit_many({"fine": 1, "\ud800": 2})
    assert await text.score("fine") is None  # checked before anything was sent


async def test_submit_many_takes_pairs_and_mixed_member_types(redis: Any) -> None:
    board = Leaderboard(redis, "pairs")
    pairs: list[tuple[str | bytes, float]] = [("a", 1), (b"b", 2.5), ("a", 3)]
    assert await board.submit_many(iter(pairs)) == 2
    assert table(await board.top()) == [("a", 3, 1), ("b", 2.5, 2)]
    mixed: dict[str | bytes, int] = {"c": 9, b"c": 4}
    assert await board.submit_many(mixed) == 1  # one member, the later score
    assert await board.score("c") == 4
    best = Leaderboard(redis, "pairs", keep="best")
    assert await best.submit_many([("d", 1), ("d", 8), ("d", 2)]) == 1
    assert await best.score("d") == 8


async def test_batch_ranks_for_a_friends_list_in_one_round_trip(redis: Any) -> None:
    board = Leaderboard(redis, "friends")
    await board.submit_many({f"u{i}": 3000 - i for i in range(3000)})
    executor = executor_for(redis)
    friends = [f"u{i}" for i in range(0, 3000, 2)] + ["stranger", "u7"]
    before = executor.round_trips
    ranks = await board.ranks(friends)
    assert executor.round_trips - before == 1
    assert list(ranks) == [*friends[:-2], "u7"]  # order given; absent left out
    assert ranks["u2998"] == LeaderboardEntry("u2998", 2, 2999)
    assert all(e.rank == int(m[1:]) + 1 for m, e in ranks.items())
    assert await board.ranks([]) == {}


async def test_remove_size_score_and_clear(redis: Any) -> None:
    board = Leaderboard(redis, "rm", rank_style="dense")
    await board.submit_many(dict(SEED))
    assert await board.remove("alice") is True
    assert await board.remove("alice") is False
    assert await board.size() == 2
    assert await board.score("alice") is None
    assert table(await board.top()) == [("carol", 300, 1), ("bob", 150, 2)]
    assert await all_keys(redis)  # the board's keys are there, and immortal: user data
    assert all(ttl == -1 for ttl in (await ttls_ms(redis)).values())
    await board.remove("carol")
    await board.remove("bob")
    assert await all_keys(redis) == []  # an empty board leaves nothing behind
    await board.submit("x", 1)
    await board.clear()
    assert await board.size() == 0
    assert await all_keys(redis) == []


async def test_every_key_of_a_board_is_in_one_cluster_slot(redis: Any) -> None:
    clock = Clock(at("2096-05-31"))
    board = Leaderboard(redis, "slot", rank_style="dense", period="daily", clock=clock)
    await board.submit_many({"a": 1, "b": 2})
    clock.now += 86400
    await board.submit_many({"a": 3, "c": 2})
    assert len(await board.last_days(2).top()) == 3
    await Leaderboard(redis, "slot").submit("z", 1)
    await Leaderboard(redis, "slot", ascending=True).submit("z", 1)
    keys = await all_keys(redis)
    assert len(keys) >= 12
    assert len({key_slot(k) for k in keys}) == 1, keys
    assert all(b"{slot}" in k for k in keys)


# -- periodic boards and the rolling view --------------------------------------------


@pytest.mark.parametrize(
    ("period", "key", "end"),
    [
        ("daily", b"leaderboard:{p}:day:2096-02-28", "2096-02-29"),
        ("weekly", b"leaderboard:{p}:week:2096-W09", "2096-03-05"),  # a Tuesday
        ("monthly", b"leaderboard:{p}:month:2096-02", "2096-03-01"),  # leap year
    ],
)
async def test_periodic_keys_expire_at_the_period_end_plus_retention(
    redis: Any, period: BoardPeriod, key: bytes, end: str
) -> None:
    clock = Clock(at("2096-02-28", hour=23) + 3599.5)  # the last second of Feb 28
    retention = timedelta(days=3)
    board = Leaderboard(
        redis,
        "p",
        period=period,
        retention=retention,
        clock=clock,
        rank_style="dense",
    )
    await board.submit_many(dict(SEED))
    await board.increment("bob", 1)
    expires = int(datetime.fromisoformat(end).replace(tzinfo=timezone.utc).timestamp())
    expires += int(retention.total_seconds())
    keys = await all_keys(redis)
    assert sorted(keys) == sorted([key, key + b":ds", key + b":m", key + b":seq"])
    for k in keys:
        assert await redis.expiretime(k) == expires, k
    assert board.period_id == key.rsplit(b":", 1)[1].decode()
    assert table(await board.top()) == [("alice", 300, 1), ("carol", 300, 1), ("bob", 151, 2)]


async def test_periods_roll_over_in_utc_and_past_ones_stay_readable(redis: Any) -> None:
    clock = Clock(at("2099-12-31", hour=23))
    monthly = Leaderboard(redis, "roll", period="monthly", clock=clock)
    await monthly.submit("a", 1)
    clock.now += 3600  # 2100-01-01 00:00 UTC: a new month, a new board
    assert monthly.period_id == "2100-01"
    assert await monthly.size() == 0
    await monthly.submit("b", 2)
    december = monthly.at(date(2099, 12, 15))
    assert [e.member for e in await december.top()] == ["a"]
    assert [e.member for e in await monthly.at(datetime(2100, 1, 31, 23, 59)).top()] == ["b"]
    tokyo = timezone(timedelta(hours=9))
    # 2100-01-01 08:00 in Tokyo is still December 31 in UTC.
    assert monthly.at(datetime(2100, 1, 1, 8, tzinfo=tokyo)).period_id == "2099-12"
    with pytest.raises(ValueError, match="at"):
        Leaderboard(redis, "plain").at(date.today())


async def test_periodic_boards_expire_on_their_own(redis: Any) -> None:
    now = time.time()
    yesterday = now - 86400
    midnight = datetime.fromtimestamp(now, timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    # Yesterday's board, kept until about one second from now.
    keep = now + 1.0 - midnight.timestamp()
    board = Leaderboard(redis, "expiring", period="daily", retention=keep, clock=lambda: yesterday)
    await board.submit_many({"a": 1, "b": 2})
    assert await board.size() == 2
    assert all(0 < ttl <= 2000 for ttl in (await ttls_ms(redis)).values())
    await asyncio.sleep(math.ceil(now + 1.0) - time.time() + 0.25)  # EXPIREAT is in seconds
    assert await board.size() == 0
    assert await all_keys(redis) == []

    # A period whose retention is over is gone at once.
    old = Leaderboard(redis, "old", period="weekly", retention=0).at(date(2020, 1, 1))
    await old.submit("a", 1)
    assert await old.size() == 0
    assert await all_keys(redis) == []


async def test_rolling_view_sums_or_takes_the_best_of_the_last_days(redis: Any) -> None:
    clock = Clock(at("2096-06-01"))
    board = Leaderboard(redis, "roll", period="daily", clock=clock)
    await board.submit_many({"a": 10, "b": 5})  # June 1 (in the future: boards
    # expire 30 days after their day by default, so a past day would be gone at once)
    clock.now += 86400
    await board.submit_many({"a": 1, "c": 20})  # June 2
    clock.now += 86400
    await board.submit("b", 7)  # June 3 (today)

    week = board.last_days(3)
    assert isinstance(week, LeaderboardView)
    assert table(await week.top()) == [("c", 20, 1), ("b", 12, 2), ("a", 11, 3)]
    best = board.last_days(3, aggregate="best")
    assert table(await best.top()) == [("c", 20, 1), ("a", 10, 2), ("b", 7, 3)]
    two = board.last_days(2)
    assert table(await two.top()) == [("c", 20, 1), ("b", 7, 2), ("a", 1, 3)]
    assert await week.rank("a") == LeaderboardEntry("a", 11, 3)
    assert await week.score("b") == 12
    assert await week.size() == 3
    assert [e.member for e in await week.around("c", 1)] == ["c", "b", "a"]
    assert [e.member for e in await week.page(2, 2)] == ["a"]
    assert set(await week.ranks(["a", "zz", "c"])) == {"a", "c"}
    assert await board.last_days(1).size() == 1

    # Every key the view wrote expires; the daily boards keep their own expiry.
    ttls = await ttls_ms(redis)
    view_keys = [k for k in ttls if b":last:" in k]
    assert view_keys
    assert all(0 < ttls[k] <= 15_000 for k in view_keys), ttls
    assert all(ttl > 0 for ttl in ttls.values())


async def test_rolling_view_ties_and_freshness(redis: Any) -> None:
    clock = Clock(at("2096-06-01"))
    board = Leaderboard(redis, "fresh", period="daily", clock=clock, rank_style="competition")
    await board.submit_many({"a": 3, "b": 5})
    clock.now += 86400
    await board.submit("a", 2)  # a reaches 5 now, after b did
    view = board.last_days(2, max_age=60)
    assert table(await view.top()) == [("b", 5, 1), ("a", 5, 1)]

    await board.submit("c", 9)
    assert await view.size() == 2  # still fresh: not rebuilt yet
    await view.refresh()
    assert table(await view.top()) == [("c", 9, 1), ("b", 5, 2), ("a", 5, 2)]
    live = board.last_days(2, max_age=0)
    await board.submit("d", 1)
    assert await live.size() == 4  # rebuilt on every read

    dense = Leaderboard(redis, "fresh", period="daily", clock=clock, rank_style="dense")
    assert [e.rank for e in await dense.last_days(2, max_age=0).top()] == [1, 2, 2, 3]
    # The next day, the same view object covers the new window.
    clock.now += 86400
    assert table(await live.top()) == [("c", 9, 1), ("a", 2, 2), ("d", 1, 3)]


async def test_rolling_view_of_an_ascending_board(redis: Any) -> None:
    clock = Clock(at("2096-06-01"))
    laps = Leaderboard(redis, "laps", period="daily", ascending=True, clock=clock)
    await laps.submit_many({"ann": 61.5, "ben": 60.25})
    clock.now += 86400
    await laps.submit_many({"ann": 59.75, "cid": 60.25})
    best = laps.last_days(2, aggregate="best")
    # Lowest first; ben reached 60.25 a day before cid did.
    assert table(await best.top()) == [("ann", 59.75, 1), ("ben", 60.25, 2), ("cid", 60.25, 3)]
    total = laps.last_days(2)
    assert table(await total.top()) == [("ben", 60.25, 1), ("cid", 60.25, 2), ("ann", 121.25, 3)]


async def test_rolling_view_argument_checks(redis: Any) -> None:
    daily = Leaderboard(redis, "v", period="daily", retention=timedelta(days=6))
    assert daily.last_days(7).days == 7
    with pytest.raises(ValueError, match=r"^n must be at most 7"):
        daily.last_days(8)
    with pytest.raises(ValueError, match=r"^n"):
        daily.last_days(0)
    with pytest.raises(ValueError, match=r"^aggregate"):
        daily.last_days(2, aggregate="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^max_age"):
        daily.last_days(2, max_age=-1)
    with pytest.raises(ValueError, match="daily"):
        Leaderboard(redis, "v", period="weekly").last_days(2)


# -- bad arguments and faults -----------------------------------------------------------


async def test_bad_arguments_raise_clear_errors_naming_the_argument(redis: Any) -> None:
    board = Leaderboard(redis, "args")
    calls: list[tuple[Callable[[], Awaitable[Any]], type[Exception], str]] = [
        (lambda: board.submit("a", float("nan")), ValueError, "score must be finite"),
        (lambda: board.submit("a", float("inf")), ValueError, "score must be finite"),
        (lambda: board.submit("a", True), TypeError, "score must be an int or a float"),
        (lambda: board.submit("a", "10"), TypeError, "score must be an int or a float"),  # type: ignore[arg-type]
        (lambda: board.submit("a", None), TypeError, "score"),  # type: ignore[arg-type]
        (lambda: board.submit("a", 2**53 + 1), ValueError, "score must be within"),
        (lambda: board.submit("", 1), ValueError, "member must not be empty"),
        (lambda: board.submit(b"", 1), ValueError, "member must not be empty"),
        (lambda: board.submit(7, 1), TypeError, "member must be str or bytes"),  # type: ignore[arg-type]
        (lambda: board.submit("a", 1, keep="worst"), ValueError, "keep must be one of"),  # type: ignore[arg-type]
        (lambda: board.increment("a", float("nan")), ValueError, "amount must be finite"),
        (lambda: board.increment("a", False), TypeError, "amount"),
        (lambda: board.around("a", -1), ValueError, "radius must be >= 0"),
        (lambda: board.around("a", 1.5), TypeError, "radius must be an int"),  # type: ignore[arg-type]
        (lambda: board.around("", 1), ValueError, "member"),
        (lambda: board.page(0, 10), ValueError, "page must be > 0"),
        (lambda: board.page(-1, 10), ValueError, "page must be > 0"),
        (lambda: board.page(1, 0), ValueError, "size must be > 0"),
        (lambda: board.top(0), ValueError, "n must be > 0"),
        (lambda: board.rank(None), TypeError, "member"),  # type: ignore[arg-type]
        (lambda: board.ranks("abc"), TypeError, "members must be an iterable"),
        (lambda: board.ranks(["a", ""]), ValueError, "members must not be empty"),
        (lambda: board.submit_many({"a": 1, "b": float("nan")}), ValueError, "scores['b']"),
        (lambda: board.submit_many({"a": 1, "": 2}), ValueError, "scores member"),
        (lambda: board.submit_many([("a", 1), ("b",)]), TypeError, "scores must hold"),  # type: ignore[list-item]
        (lambda: board.submit_many("ab"), TypeError, "scores must be a mapping"),  # type: ignore[arg-type]
        (lambda: board.submit_many({"a": 2**60}), ValueError, "scores['a'] must be within"),
    ]
    for call, error, message in calls:
        with pytest.raises(error) as info:
            await call()
        assert str(info.value).startswith(message), (message, info.value)
    assert await all_keys(redis) == []  # nothing was written by any of that

    constructors: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"rank_style": "olympic"}, ValueError, "rank_style must be one of"),
        ({"rank_style": None}, TypeError, "rank_style"),
        ({"keep": "first"}, ValueError, "keep must be one of"),
        ({"period": "hourly"}, ValueError, "period must be one of"),
        ({"period": 1}, TypeError, "period"),
        ({"ascending": 1}, TypeError, "ascending must be a bool"),
        ({"member_type": int}, TypeError, "member_type must be str or bytes"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"retention": -1}, ValueError, "retention"),
        ({"namespace": "a{b"}, ValueError, "namespace"),
        ({"clock": 5}, TypeError, "clock"),
    ]
    for kwargs, error, message in constructors:
        with pytest.raises(error) as info:
            Leaderboard(redis, "x", **kwargs)
        assert str(info.value).startswith(message), (message, info.value)
    names: list[tuple[Any, type[Exception]]] = [
        ("", ValueError),
        (b"", ValueError),
        (5, TypeError),
    ]
    for name, error in names:
        with pytest.raises(error, match=r"^name"):
            Leaderboard(redis, name)
    with pytest.raises(TypeError, match=r"^redis must be"):
        Leaderboard(object(), "x")
    with pytest.raises(TypeError, match=r"^when"):
        Leaderboard(redis, "x", period="daily").at("2024-01-01")  # type: ignore[arg-type]


@pytest.fixture(params=["redis-refused", "cluster-refused", "fakeredis-down"])
async def dead(request: pytest.FixtureRequest) -> Any:
    """A client whose Redis does not answer."""
    client: Any
    if request.param == "redis-refused":
        client = aioredis.Redis(host="127.0.0.1", port=free_port())
    elif request.param == "cluster-refused":
        client = aioredis.RedisCluster(host="127.0.0.1", port=free_port())
    else:
        server = fakeredis.FakeServer(version=(7,))
        client = fakeredis.FakeAsyncRedis(server=server)
        server.connected = False
    yield client
    await client.aclose()


async def test_redis_down_raises_redis_unavailable_quickly(dead: Any) -> None:
    board = Leaderboard(dead, "down", timeout=0.3)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: board.submit("a", 1),
        lambda: board.submit_many({"a": 1, "b": 2}),
        lambda: board.top(),
        lambda: board.rank("a"),
        lambda: board.around("a"),
    ]
    for call in calls:
        started = time.perf_counter()
        with pytest.raises(RedisUnavailable):
            await call()
        assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("ascending", [False, True])
async def test_a_long_bulk_of_equal_scores_keeps_the_order_given(
    redis: Any, ascending: bool
) -> None:
    """3,000 members in one call: tie-break prefixes from the long-stream path, across
    a 65,536 boundary of the sequence (the prefix's two low bytes wrap)."""
    board = Leaderboard(redis, "ties", ascending=ascending)
    now_us = int(time.time() * 1_000_000)
    boundary = (now_us // 65536 + 200) * 65536  # well ahead of the server clock (~13 s)
    seq_key = f"leaderboard:{{ties}}{':asc' if ascending else ''}:seq"
    await redis.set(seq_key, boundary - 1500)
    members = [f"m{i:04d}" for i in range(3000)]
    assert await board.submit_many(dict.fromkeys(reversed(members), 7)) == 3000
    expected = list(reversed(members))  # the order given wins ties
    assert [e.member for e in await whole(board)] == expected
    assert (await board.rank("m0000")).rank == 3000  # type: ignore[union-attr]
    assert await board.submit("late", 7) is True
    assert [e.member for e in await board.page(301, size=10)][-1] == "late"
    # the sequence went on from where it was set: the boundary was crossed
    assert int(await redis.get(seq_key)) == boundary - 1500 + 3001
    # each member's 7-byte prefix is exactly its sequence number (2**53 - seq on a
    # descending board), big-endian, in the order given: what the stream computes
    # byte by byte agrees with the plain encoding the other scripts decode
    first = boundary - 1500 + 1
    given = list(reversed(members))
    expected_prefix = {
        member.encode(): (first + i if ascending else 2**53 - (first + i)).to_bytes(7, "big")
        for i, member in enumerate(given)
    }
    encoded = await redis.zrange(seq_key.removesuffix(":seq"), 0, -1)
    stored = {bytes(e[7:]): bytes(e[:7]) for e in encoded if bytes(e[7:]) != b"late"}
    assert stored == expected_prefix
