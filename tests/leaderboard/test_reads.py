"""Leaderboard reads: around-me and pages exact at the edges; the three rank styles."""

from __future__ import annotations

from typing import Any

import pytest

from aiocache_patterns import (
    Leaderboard,
    LeaderboardEntry,
    RankStyle,
)
from tests.leaderboard._common import table

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
