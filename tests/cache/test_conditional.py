"""cache_if and a ttl that depends on the result, on fakeredis, Redis and Cluster."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from aiocache_patterns import Cache
from tests._backends import Backend, all_keys


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Run this test's cyclic garbage finalizers now (see tests/cache/test_faults.py)."""
    yield
    gc.collect()


class Source:
    def __init__(self, *values: Any) -> None:
        self.values = list(values)
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await asyncio.sleep(0)
        return self.values[min(self.calls, len(self.values)) - 1]


async def test_cache_if_rejects_a_result_without_storing_it(redis: Any) -> None:
    cache = Cache(redis, namespace="cond", ttl=60)
    source = Source({"ok": False}, {"ok": True})

    def ok(result: dict[str, bool]) -> bool:
        return result["ok"]

    assert await cache.get_or_load("k", source, cache_if=ok) == {"ok": False}
    assert await cache.get("k", "MISS") == "MISS"
    assert await all_keys(redis) == []  # nothing stored, the recompute lock given back
    assert await cache.get_or_load("k", source, cache_if=ok) == {"ok": True}
    assert await cache.get_or_load("k", source, cache_if=ok) == {"ok": True}
    assert source.calls == 2


async def test_cache_if_without_the_recompute_lock(redis: Any) -> None:
    cache = Cache(redis, namespace="cond", ttl=60, recompute_lock=False)
    source = Source(None, 1)
    assert await cache.get_or_load("k", source, cache_if=lambda r: r is not None) is None
    assert await cache.get_or_load("k", source, cache_if=lambda r: r is not None) == 1
    assert await cache.get("k") == 1


async def test_a_rejected_result_does_not_keep_other_processes_waiting(
    backend: Backend,
) -> None:
    one = Cache(await backend.client(), namespace="cond", ttl=60, lock_timeout=5)
    two = Cache(await backend.client(), namespace="cond", ttl=60, lock_timeout=5)
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return "draft"

    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        one.get_or_load("k", slow, cache_if=lambda r: r != "draft"),
        two.get_or_load("k", slow, cache_if=lambda r: r != "draft"),
    )
    assert list(results) == ["draft", "draft"]
    assert calls == 2  # the waiter was woken, found nothing, and loaded itself
    assert loop.time() - started < 3  # not the lock timeout


async def test_ttl_callable_of_the_result(redis: Any) -> None:
    cache = Cache(redis, namespace="cond", ttl=60)

    def ttl(post: dict[str, Any]) -> float | timedelta | None:
        if post["draft"] is None:
            return None  # not stored
        return 5 if post["draft"] else timedelta(hours=1)

    await cache.get_or_load("draft", Source({"draft": True}), ttl=ttl)
    await cache.get_or_load("final", Source({"draft": False}), ttl=ttl)
    await cache.get_or_load("none", Source({"draft": None}), ttl=ttl)
    assert 4000 < await redis.pttl(b"cond:{draft}") <= 5000
    assert 3_500_000 < await redis.pttl(b"cond:{final}") <= 3_600_000
    assert await redis.exists(b"cond:{none}") == 0


async def test_decorator_cache_if_and_ttl_callable(redis: Any) -> None:
    cache = Cache(redis, namespace="cond", ttl=60)
    calls: list[int] = []

    @cache.cached(
        key="post:{post_id}",
        ttl=lambda post: 10 if post["draft"] else 100,
        cache_if=lambda post: post["id"] != 0,
    )
    async def get_post(post_id: int) -> dict[str, Any]:
        calls.append(post_id)
        return {"id": post_id, "draft": post_id % 2 == 1}

    for post_id in (0, 0, 1, 1, 2, 2):
        assert (await get_post(post_id))["id"] == post_id
    assert calls == [0, 0, 1, 2]
    assert 9000 < await redis.pttl(f"cond:{{{get_post.key_for(1)}}}".encode()) <= 10_000
    assert 99_000 < await redis.pttl(f"cond:{{{get_post.key_for(2)}}}".encode()) <= 100_000


async def test_errors_of_the_callables_reach_the_caller_and_release_the_lock(
    redis: Any,
) -> None:
    cache = Cache(redis, namespace="cond", ttl=60, lock_timeout=0.2)

    def boom(result: Any) -> bool:
        raise RuntimeError("cache_if failed")

    with pytest.raises(RuntimeError, match="cache_if failed"):
        await cache.get_or_load("k", Source(1), cache_if=boom)
    with pytest.raises(TypeError, match="ttl"):
        await cache.get_or_load("k", Source(1), ttl=lambda r: "soon")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="ttl"):
        await cache.get_or_load("k", Source(1), ttl=lambda r: -1)
    assert await all_keys(redis) == []  # the recompute lock was given back each time
    assert await cache.get_or_load("k", Source(2)) == 2


async def test_bad_callables_are_refused_up_front(redis: Any) -> None:
    cache = Cache(redis, namespace="cond")
    with pytest.raises(TypeError, match="cache_if"):
        await cache.get_or_load("k", Source(1), cache_if=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache_if"):
        cache.cached(cache_if="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        cache.cached(ttl=0)
