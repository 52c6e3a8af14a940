"""get_or_load_many: one read for the hits, one loader call for the misses."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from aiocache_patterns import Cache
from aiocache_patterns._redis.executor import executor_for
from tests._backends import Backend, all_keys
from tests._helpers import ttls_ms


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Run this test's cyclic garbage finalizers now (see tests/cache/test_faults.py)."""
    yield
    gc.collect()


class Posts:
    """A source that records every call of its bulk and single loaders."""

    def __init__(self, known: set[int] | None = None, delay: float = 0.0) -> None:
        self.known = set(range(100)) if known is None else known
        self.delay = delay
        self.calls: list[list[str]] = []

    async def many(self, keys: list[str]) -> dict[str, dict[str, int]]:
        self.calls.append(list(keys))
        await asyncio.sleep(self.delay)
        return {k: {"id": int(k)} for k in keys if int(k) in self.known}


async def test_hits_in_one_read_misses_in_one_call(redis: Any) -> None:
    cache = Cache(redis, namespace="bulk", ttl=60)
    posts = Posts()
    await cache.set_many({"1": {"id": 1}, "2": {"id": 2}})
    got = await cache.get_or_load_many(["1", "2", "3", "4", "3"], posts.many)
    assert got == {str(i): {"id": i} for i in (1, 2, 3, 4)}
    assert len(posts.calls) == 1
    assert sorted(posts.calls[0]) == ["3", "4"]
    executor = executor_for(redis)
    before = executor.round_trips
    again = await cache.get_or_load_many([str(i) for i in (1, 2, 3, 4)], posts.many)
    assert again == got
    assert len(posts.calls) == 1
    assert executor.round_trips - before <= (3 if executor.is_cluster else 1)
    assert await cache.get("3") == {"id": 3}  # stored where get_or_load looks
    assert await cache.get_or_load_many([], posts.many) == {}


async def test_missing_keys_are_not_cached_unless_asked(redis: Any) -> None:
    cache = Cache(redis, namespace="bulk", ttl=60)
    posts = Posts(known={1})
    assert await cache.get_or_load_many(["1", "2"], posts.many) == {"1": {"id": 1}}
    assert await cache.get("2", "MISS") == "MISS"
    assert await cache.get_or_load_many(["1", "2"], posts.many) == {"1": {"id": 1}}
    assert posts.calls == [["1", "2"], ["2"]]
    got = await cache.get_or_load_many(["2"], posts.many, cache_missing=True)
    assert got == {"2": None}
    assert await cache.get_or_load_many(["2"], posts.many, cache_missing=True) == {"2": None}
    assert len(posts.calls) == 3
    assert all(ttl > 0 for ttl in (await ttls_ms(redis)).values())


async def test_a_concurrent_get_or_load_shares_the_bulk_load(redis: Any) -> None:
    cache = Cache(redis, namespace="bulk", ttl=60)
    posts = Posts(known={1, 2}, delay=0.1)
    singles = 0

    async def one() -> dict[str, int]:
        nonlocal singles
        singles += 1
        return {"id": -1}

    bulk = asyncio.ensure_future(cache.get_or_load_many(["1", "2", "3"], posts.many))
    await asyncio.sleep(0.03)  # the bulk load is running
    results: list[Any] = list(
        await asyncio.gather(cache.get_or_load("1", one), cache.get_or_load("3", one))
    )
    single, missing = results
    assert single == {"id": 1}
    assert missing is None  # shared a load that did not find it
    assert singles == 0
    assert await bulk == {"1": {"id": 1}, "2": {"id": 2}}
    assert len(posts.calls) == 1


async def test_a_bulk_load_shares_a_running_get_or_load(redis: Any) -> None:
    cache = Cache(redis, namespace="bulk", ttl=60)
    posts = Posts()

    async def slow() -> dict[str, int]:
        await asyncio.sleep(0.1)
        return {"id": 1, "single": 1}

    single = asyncio.ensure_future(cache.get_or_load("1", slow))
    await asyncio.sleep(0.03)
    got = await cache.get_or_load_many(["1", "2"], posts.many)
    assert got == {"1": {"id": 1, "single": 1}, "2": {"id": 2}}
    assert posts.calls == [["2"]]
    assert await single == {"id": 1, "single": 1}


async def test_other_processes_wait_for_the_keys_being_loaded(backend: Backend) -> None:
    one = Cache(await backend.client(), namespace="bulk", ttl=60)
    two = Cache(await backend.client(), namespace="bulk", ttl=60)
    posts = Posts(delay=0.1)
    first, second = await asyncio.gather(
        one.get_or_load_many(["1", "2", "3"], posts.many),
        two.get_or_load_many(["2", "3", "4"], posts.many),
    )
    assert first == {str(i): {"id": i} for i in (1, 2, 3)}
    assert second == {str(i): {"id": i} for i in (2, 3, 4)}
    loaded = [key for call in posts.calls for key in call]
    assert sorted(loaded) == ["1", "2", "3", "4"]  # each key loaded once, in all


async def test_loader_errors_reach_every_caller_and_nothing_is_cached(redis: Any) -> None:
    cache = Cache(redis, namespace="bulk", ttl=60, lock_timeout=0.5)

    async def failing(keys: list[str]) -> dict[str, int]:
        await asyncio.sleep(0.05)
        raise RuntimeError("db down")

    async def single() -> int:
        return 0

    bulk = asyncio.ensure_future(cache.get_or_load_many(["1", "2"], failing))
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="db down"):
        await cache.get_or_load("1", single)
    with pytest.raises(RuntimeError, match="db down"):
        await bulk
    assert await all_keys(redis) == []  # no entries, no recompute locks left

    async def wrong(keys: list[str]) -> list[int]:
        return [1]

    with pytest.raises(TypeError, match="mapping"):
        await cache.get_or_load_many(["1"], wrong)  # type: ignore[arg-type]


async def test_ttl_tags_and_cache_if(redis: Any) -> None:
    cache = Cache(redis, namespace="bulk", ttl=60)
    posts = Posts()
    got = await cache.get_or_load_many(
        ["1", "2", "3"],
        posts.many,
        ttl=lambda post: 10 if post["id"] == 1 else 100,
        tags=("posts",),
        cache_if=lambda post: post["id"] != 3,
    )
    assert len(got) == 3
    assert 9_000 < await redis.pttl(b"bulk:{1}") <= 10_000
    assert 99_000 < await redis.pttl(b"bulk:{2}") <= 100_000
    assert await redis.exists(b"bulk:{3}") == 0
    await cache.get_or_load_many(["1", "2"], posts.many, tags=("posts",))
    assert len(posts.calls) == 1
    await cache.invalidate_tags("posts")
    assert await cache.get_many(["1", "2"]) == {}
    await cache.get_or_load_many(["1", "2"], posts.many, tags=("posts",))
    assert len(posts.calls) == 2


async def test_cancelling_the_caller_leaves_nothing_behind(redis: Any) -> None:
    cache = Cache(redis, namespace="bulk", ttl=60)
    started = asyncio.Event()

    async def hanging(keys: list[str]) -> Mapping[str, int]:
        started.set()
        await asyncio.sleep(30)
        return {}

    task = asyncio.ensure_future(cache.get_or_load_many(["1", "2"], hanging))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    assert await all_keys(redis) == []  # the recompute locks were given back
    posts = Posts()
    assert await cache.get_or_load_many(["1"], posts.many) == {"1": {"id": 1}}


async def test_bad_arguments(redis: Any) -> None:
    cache = Cache(redis, namespace="bulk")
    posts = Posts()
    with pytest.raises(TypeError, match="keys"):
        await cache.get_or_load_many("12", posts.many)
    with pytest.raises(TypeError, match="loader"):
        await cache.get_or_load_many(["1"], None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keys"):
        await cache.get_or_load_many([1], posts.many)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="cache_missing"):
        await cache.get_or_load_many(["1"], posts.many, cache_missing=1)  # type: ignore[arg-type]
    assert posts.calls == []
