"""Leaderboard writes: keep="best", bulk submits, batch lookups, remove, size, score, one slot."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from redis.crc import key_slot

from aiocache_patterns import (
    Leaderboard,
    LeaderboardEntry,
)
from aiocache_patterns._redis.executor import executor_for
from tests._backends import all_keys
from tests._helpers import ttls_ms
from tests.leaderboard._common import SEED, Clock, at, table, whole

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


# -- a long bulk of equal scores --------------------------------------------------


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
