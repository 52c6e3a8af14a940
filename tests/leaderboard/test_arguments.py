"""Leaderboard: bad arguments raise clear errors; Redis down raises RedisUnavailable."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from aiocache_patterns import (
    Leaderboard,
    RedisUnavailable,
)
from tests._backends import all_keys
from tests._servers import free_port

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
