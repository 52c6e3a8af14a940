"""Leaderboard periods: periodic boards and the rolling view of the last days."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from aiocache_patterns import (
    BoardPeriod,
    Leaderboard,
    LeaderboardEntry,
    LeaderboardView,
)
from tests._backends import all_keys
from tests._helpers import ttls_ms
from tests.leaderboard._common import SEED, Clock, at, table

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
