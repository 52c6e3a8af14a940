"""Stampede control across processes: recompute lock, XFetch, background refresh, stale grace.

A "process" here is a Cache on its own client (its own connections, executor,
pub/sub subscription and single-flight), which is all a second process would
have; test_stampede_processes.py runs real processes too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aiocache_patterns import Cache
from aiocache_patterns._redis.executor import executor_for
from tests._backends import Backend
from tests._helpers import ttls_ms


class Loader:
    """A loader that counts its calls and can be slow, gated or failing."""

    def __init__(self, value: Any = "fresh", delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.error: Exception | None = None

    async def __call__(self) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.value


async def _processes(backend: Backend, n: int, **options: Any) -> list[Cache]:
    return [Cache(await backend.client(), namespace="st", **options) for _ in range(n)]


async def test_cold_key_across_processes_loads_once(backend: Backend) -> None:
    caches = await _processes(backend, 4, ttl=60)
    loader = Loader({"v": 1}, delay=0.05)
    latencies: list[float] = []

    async def call(cache: Cache) -> Any:
        started = time.monotonic()
        value = await cache.get_or_load("cold", loader)
        latencies.append(time.monotonic() - started)
        return value

    results = await asyncio.gather(
        *(call(cache) for cache in caches for _ in range(250)), return_exceptions=True
    )
    assert results == [{"v": 1}] * 1000
    assert loader.calls == 1
    assert sum(c.stats.loads for c in caches) == 1
    assert sum(c.stats.waited for c in caches) == 3  # one waiter per other process
    assert sum(c.stats.errors for c in caches) == 0
    latencies.sort()
    assert latencies[int(len(latencies) * 0.99)] < 0.05 + 1.0  # generous: loader + slack
    ttls = await ttls_ms(await backend.client())
    assert all(ttl > 0 for ttl in ttls.values())


async def test_hits_never_touch_the_lock(redis: Any) -> None:
    cache = Cache(redis, namespace="hit", ttl=60, beta=0)
    loader = Loader()
    await cache.get_or_load("k", loader)
    ex = executor_for(redis)
    scripts = 0
    original = ex.script

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal scripts
        scripts += 1
        return await original(*args, **kwargs)

    ex.script = counting  # type: ignore[method-assign]
    try:
        for _ in range(20):
            assert await cache.get_or_load("k", loader) == "fresh"
    finally:
        del ex.script
    assert scripts == 0
    assert loader.calls == 1


async def test_a_slow_loader_keeps_its_lock(backend: Backend) -> None:
    """A lock TTL shorter than the loader must not let a second loader in: it is renewed."""
    caches = await _processes(backend, 2, ttl=60, lock_ttl=0.15, lock_timeout=5)
    loader = Loader("slow", delay=0.6)
    first = asyncio.create_task(caches[0].get_or_load("k", loader))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(caches[1].get_or_load("k", loader))
    assert await first == "slow"
    assert await second == "slow"
    assert loader.calls == 1


async def test_a_dead_leader_is_replaced_within_its_lease(redis: Any) -> None:
    # A "process" took the recompute lock and died: the lock outlives it by its lease.
    await redis.set(b"dl:{k}:lock", b"dead-process", px=400)
    cache = Cache(redis, namespace="dl", ttl=60, lock_timeout=10)
    loader = Loader("mine")
    started = time.monotonic()
    assert await cache.get_or_load("k", loader) == "mine"
    elapsed = time.monotonic() - started
    assert loader.calls == 1
    assert 0.3 < elapsed < 2.0  # when the lease ran out, not the 10 s wait limit
    assert cache.stats.waited == 1


async def test_waiters_give_up_after_lock_timeout(redis: Any) -> None:
    await redis.set(b"to:{k}:lock", b"stuck", px=30_000)
    cache = Cache(redis, namespace="to", ttl=60, lock_timeout=0.3)
    loader = Loader("own")
    started = time.monotonic()
    assert await cache.get_or_load("k", loader) == "own"
    assert 0.25 < time.monotonic() - started < 2.0
    assert loader.calls == 1


async def test_loader_failure_reaches_every_waiter_and_caches_nothing(backend: Backend) -> None:
    caches = await _processes(backend, 2, ttl=60)
    loader = Loader(delay=0.05)
    loader.error = LookupError("db down")
    results = await asyncio.gather(
        *(c.get_or_load("k", loader) for c in caches for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results), results
    # each process may try once (nginx semantics), never more
    assert 1 <= loader.calls <= 2
    assert await caches[0].get("k") is None
    loader.error = None
    assert await caches[0].get_or_load("k", loader) == "fresh"


async def test_xfetch_recomputes_early_once(redis: Any) -> None:
    now = [1_000_000.0]
    draw = [0.0]
    cache = Cache(redis, namespace="xf", ttl=10, clock=lambda: now[0], random=lambda: draw[0])
    loader = Loader("v1", delay=0.01)
    assert await cache.get_or_load("k", loader) == "v1"
    assert loader.calls == 1
    # Just before expiry, a draw of u=1 never recomputes early...
    now[0] += 9.9
    loader.value = "v2"
    assert await cache.get_or_load("k", loader) == "v1"
    assert loader.calls == 1
    # ...and a draw near 0 (-log(u) large) does: this caller recomputes.
    draw[0] = 0.999999
    assert await cache.get_or_load("k", loader) == "v2"
    assert loader.calls == 2
    assert cache.stats.early_recomputes == 1
    # Right after a recompute, nobody recomputes again.
    draw[0] = 0.0
    assert await cache.get_or_load("k", loader) == "v2"
    assert loader.calls == 2


async def test_only_one_early_recompute_at_a_time_others_get_the_value(redis: Any) -> None:
    now = [1_000_000.0]
    cache = Cache(redis, namespace="xf1", ttl=10, clock=lambda: now[0], random=lambda: 0.999999)
    loader = Loader("old", delay=0.05)  # delta = 0.05 s: -log(1e-6) * 0.05 > 0.5 s early
    await cache.get_or_load("k", loader)
    now[0] += 9.5
    loader.value = "new"
    loader.gate = asyncio.Event()
    refresher = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.sleep(0.02)
    # Everyone else is served the current value at once, nobody waits for the loader.
    others = await asyncio.wait_for(
        asyncio.gather(*(cache.get_or_load("k", loader) for _ in range(50))), 1
    )
    assert others == ["old"] * 50
    loader.gate.set()
    assert await refresher == "new"
    assert loader.calls == 2


async def test_background_refresh_serves_at_once_and_refreshes_once(redis: Any) -> None:
    now = [1_000_000.0]
    async with Cache(
        redis, namespace="bg", ttl=10, refresh_after=5, beta=0, clock=lambda: now[0]
    ) as cache:
        loader = Loader("v1")
        await cache.get_or_load("k", loader)
        now[0] += 6
        loader.value = "v2"
        loader.gate = asyncio.Event()
        values = await asyncio.wait_for(
            asyncio.gather(*(cache.get_or_load("k", loader) for _ in range(20))), 1
        )
        assert values == ["v1"] * 20  # nobody waited
        await asyncio.sleep(0.01)
        assert loader.calls == 2  # one refresh, however many hits
        assert cache.stats.refreshes == 1
        loader.gate.set()
        for _ in range(100):
            if await cache.get("k") == "v2":
                break
            await asyncio.sleep(0.01)
        assert await cache.get("k") == "v2"


async def test_closing_the_cache_cancels_background_refreshes(redis: Any) -> None:
    now = [1_000_000.0]
    cache = Cache(redis, namespace="bgc", ttl=10, refresh_after=1, beta=0, clock=lambda: now[0])
    loader = Loader("v1")
    await cache.get_or_load("k", loader)
    now[0] += 2
    loader.gate = asyncio.Event()  # the refresh will hang
    assert await cache.get_or_load("k", loader) == "v1"
    await asyncio.sleep(0.01)
    assert len(cache._loader.tasks) == 1
    await asyncio.wait_for(cache.aclose(), 2)
    assert not cache._loader.tasks
    assert not cache._loader.cleanups
    assert not await redis.exists(b"bgc:{k}:lock")  # its recompute lock was given back
    # closed: no new refreshes are started
    assert await cache.get_or_load("k", loader) == "v1"
    assert cache.stats.refreshes == 1


async def test_stale_grace_one_refreshes_others_get_stale(redis: Any) -> None:
    now = [1_000_000.0]
    cache = Cache(redis, namespace="sg", ttl=5, stale_ttl=60, beta=0, clock=lambda: now[0])
    loader = Loader("old")
    await cache.get_or_load("k", loader)
    now[0] += 6  # stale, within the grace
    assert await cache.get("k") is None  # plain reads do not serve stale values
    loader.value = "new"
    loader.gate = asyncio.Event()
    refresher = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.sleep(0.02)
    others = await asyncio.wait_for(
        asyncio.gather(*(cache.get_or_load("k", loader) for _ in range(10))), 1
    )
    assert others == ["old"] * 10
    assert cache.stats.stale_served == 10
    loader.gate.set()
    assert await refresher == "new"
    assert loader.calls == 2


async def test_stale_if_error(redis: Any) -> None:
    now = [1_000_000.0]
    cache = Cache(redis, namespace="se", ttl=5, stale_ttl=60, beta=0, clock=lambda: now[0])
    loader = Loader("old")
    await cache.get_or_load("k", loader)
    now[0] += 6
    loader.error = RuntimeError("db down")
    assert await cache.get_or_load("k", loader) == "old"
    assert cache.stats.stale_served == 1
    assert cache.stats.errors == 1
    # with the grace over, the error reaches the caller
    now[0] += 100
    await redis.delete(b"se:{k}")
    with pytest.raises(RuntimeError, match="db down"):
        await cache.get_or_load("k", loader)


async def test_stale_grace_across_processes(backend: Backend) -> None:
    now = [1_000_000.0]
    caches = await _processes(backend, 2, ttl=5, stale_ttl=60, beta=0, clock=lambda: now[0])
    loader = Loader("old")
    await caches[0].get_or_load("k", loader)
    now[0] += 6
    loader.value = "new"
    loader.gate = asyncio.Event()
    refresher = asyncio.create_task(caches[0].get_or_load("k", loader))
    await asyncio.sleep(0.05)
    # The other process finds the recompute lock taken and serves the stale value.
    assert await asyncio.wait_for(caches[1].get_or_load("k", loader), 1) == "old"
    assert caches[1].stats.stale_served == 1
    loader.gate.set()
    assert await refresher == "new"
    assert loader.calls == 2


async def test_cancelling_the_leader_wakes_the_other_processes(backend: Backend) -> None:
    caches = await _processes(backend, 2, ttl=60, lock_timeout=10)
    loader = Loader("v")
    loader.gate = asyncio.Event()
    leader = asyncio.create_task(caches[0].get_or_load("k", loader))
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(caches[1].get_or_load("k", loader))
    await asyncio.sleep(0.05)
    leader.cancel()  # the only caller in process 0 gives up: its load is cancelled
    await asyncio.gather(leader, return_exceptions=True)
    loader.gate.set()
    started = time.monotonic()
    assert await waiter == "v"
    assert time.monotonic() - started < 2.0  # woken by the release, not the 10 s limit
    assert loader.calls == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"beta": -1}, ValueError, "beta"),
        ({"beta": float("nan")}, ValueError, "beta"),
        ({"beta": "1"}, TypeError, "beta"),
        ({"lock_ttl": 0}, ValueError, "lock_ttl"),
        ({"lock_timeout": -1}, ValueError, "lock_timeout"),
        ({"refresh_after": 0}, ValueError, "refresh_after"),
        ({"stale_ttl": -1}, ValueError, "stale_ttl"),
        ({"recompute_lock": "yes"}, TypeError, "recompute_lock"),
        ({"random": 3}, TypeError, "random"),
    ],
)
def test_bad_stampede_options(
    redis: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Cache(redis, **kwargs)


async def test_without_the_recompute_lock_each_process_loads(backend: Backend) -> None:
    caches = await _processes(backend, 3, ttl=60, recompute_lock=False)
    loader = Loader(delay=0.05)
    await asyncio.gather(*(c.get_or_load("k", loader) for c in caches for _ in range(10)))
    assert loader.calls == 3  # single-flight still holds within each process


async def test_a_late_process_does_not_load_what_was_just_stored(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its GET missed, but by the time it takes the free lock the entry is there: no load."""
    from aiocache_patterns.cache._recompute import RecomputeLock

    caches = await _processes(backend, 2, ttl=60)
    late_lock = caches[1]._loader._lock
    real = RecomputeLock.try_acquire

    async def slow_for_the_late_one(
        self: RecomputeLock, rkey: bytes, token: bytes
    ) -> tuple[bool, bytes | None, int]:
        if self is late_lock:
            await asyncio.sleep(0.1)  # the leader loads and stores meanwhile
        return await real(self, rkey, token)

    monkeypatch.setattr(RecomputeLock, "try_acquire", slow_for_the_late_one)
    loader = Loader("v", delay=0.02)
    results = await asyncio.gather(*(c.get_or_load("k", loader) for c in caches))
    assert results == ["v", "v"]
    assert loader.calls == 1
    assert not await (await backend.client()).exists(b"st:{k}:lock")  # lock given back


async def test_xfetch_waits_for_the_second_half_of_a_values_life(redis: Any) -> None:
    now = [1_000_000.0]
    cache = Cache(redis, namespace="xh", ttl=10, clock=lambda: now[0], random=lambda: 0.999999)
    loader = Loader("v", delay=0.5)  # expensive: XFetch's lead would be ~7 s
    await cache.get_or_load("k", loader)
    now[0] += 4  # first half: never early, however expensive
    await cache.get_or_load("k", loader)
    assert loader.calls == 1
    now[0] += 2  # second half, within the lead: recompute early
    await cache.get_or_load("k", loader)
    assert loader.calls == 2
