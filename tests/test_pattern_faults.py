"""Faults for the locks, semaphores and rate limiters (the cache has cache/test_faults.py).

Redis down, killed and restarted, stalled; cancellation storms across every
pattern at once, counting tasks, subscriptions and connections before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from aiocache_patterns import (
    Cache,
    CachePatternsError,
    Lock,
    LockNotOwned,
    RateLimiter,
    RedisTimeout,
    RedisUnavailable,
    Semaphore,
)
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns._redis.notify import notifier_for
from tests._backends import in_ci
from tests._proxy import FaultProxy
from tests._servers import RedisProcess, free_port, private_redis, redis_server_binary

TIMEOUT = 0.3
BOUND = 2.0  # generous: the operation timeout plus a noisy machine


@pytest.fixture
async def server() -> AsyncIterator[RedisProcess]:
    if redis_server_binary() is None:
        if in_ci():
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not on PATH")
    async with private_redis() as process:
        yield process


@pytest.fixture(params=["fakeredis", "redis-refused", "cluster-refused"])
async def down(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A client whose Redis is down."""
    client: Any
    if request.param == "fakeredis":
        fake_server = fakeredis.FakeServer(version=(7,))
        client = fakeredis.FakeAsyncRedis(server=fake_server)
        await client.ping()
        fake_server.connected = False
    elif request.param == "redis-refused":
        client = aioredis.Redis(host="127.0.0.1", port=free_port())
    else:
        client = aioredis.RedisCluster(host="127.0.0.1", port=free_port())
    yield client
    with contextlib.suppress(Exception):
        await client.aclose()


def _library_tasks() -> int:
    """Tasks alive now, less the proxy's own (one pair per proxied connection)."""
    names = [getattr(task.get_coro(), "__qualname__", "") for task in asyncio.all_tasks()]
    return sum(1 for name in names if "FaultProxy" not in name)


async def _bounded(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(coro, BOUND * 2)
    except CachePatternsError as exc:  # RedisTimeout is a TimeoutError too: check it first
        result = exc
    except asyncio.TimeoutError:
        pytest.fail("hung past its timeout")
    return result, time.monotonic() - started


async def test_lock_with_redis_down_raises_a_library_error(down: Any) -> None:
    result, elapsed = await _bounded(Lock(down, "x", timeout=TIMEOUT).acquire())
    assert isinstance(result, RedisUnavailable), result  # never "acquired"
    assert elapsed < BOUND
    result, _ = await _bounded(Lock(down, "x", timeout=TIMEOUT).locked())
    assert isinstance(result, RedisUnavailable)


async def test_semaphore_with_redis_down_raises_a_library_error(down: Any) -> None:
    result, elapsed = await _bounded(Semaphore(down, "x", limit=2, timeout=TIMEOUT).acquire())
    assert isinstance(result, RedisUnavailable), result
    assert elapsed < BOUND


@pytest.mark.parametrize("fail_open", [True, False])
async def test_limiter_with_redis_down_follows_its_policy(down: Any, fail_open: bool) -> None:
    limiter = RateLimiter(down, limit=3, window=60, fail_open=fail_open, timeout=TIMEOUT)
    results = [await _bounded(limiter.hit("k")) for _ in range(3)]
    for result, elapsed in results:
        assert result.degraded
        assert result.allowed is fail_open
        assert elapsed < BOUND
    assert limiter.stats.errors == 3


async def test_killed_and_restarted_server(server: RedisProcess) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=server.port)
    try:
        lock = Lock(client, "job", ttl=30, timeout=TIMEOUT)
        limiter = RateLimiter(client, limit=2, window=60, timeout=TIMEOUT, fail_open=False)
        assert await lock.acquire()
        assert (await limiter.hit("k")).allowed
        server.kill()
        result, elapsed = await _bounded(Lock(client, "job", blocking_timeout=0).acquire())
        assert isinstance(result, RedisUnavailable)
        assert elapsed < BOUND
        denied, _ = await _bounded(limiter.hit("k"))
        assert denied.degraded
        assert not denied.allowed  # fail_open=False
        await server.restart()  # an empty server: the lease is gone with the data

        async def recovered() -> bool:
            try:
                return not await lock.locked()
            except RedisUnavailable:
                return False

        deadline = time.monotonic() + 10
        while not await recovered():
            assert time.monotonic() < deadline, "no recovery within 10 s"
            await asyncio.sleep(0.1)
        # The lib never claims a lock it does not hold.
        assert not await lock.owned()
        with pytest.raises(LockNotOwned):
            await lock.release()
        assert await Lock(client, "job", blocking_timeout=0).acquire()
        assert (await limiter.hit("k")).remaining == 1
    finally:
        await client.aclose()


async def test_stalled_redis_honours_timeouts_then_recovers(server: RedisProcess) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        client = aioredis.Redis(host="127.0.0.1", port=proxy.port)
        try:
            limiter = RateLimiter(client, limit=100, window=60, timeout=TIMEOUT)
            assert (await limiter.hit("warm")).allowed
            proxy.stall()
            result, elapsed = await _bounded(Lock(client, "s", timeout=TIMEOUT).acquire())
            assert isinstance(result, RedisTimeout), result
            assert elapsed < BOUND
            hits = await asyncio.gather(*(_bounded(limiter.hit(f"k{i}")) for i in range(20)))
            assert all(r.degraded and r.allowed for r, _ in hits)
            assert max(e for _, e in hits) < BOUND
            proxy.resume()
            await asyncio.sleep(1.2)  # past the breaker's cool-down
            deadline = time.monotonic() + 10
            while True:
                result = await limiter.hit("after")
                if not result.degraded:
                    break
                assert time.monotonic() < deadline, "no recovery after the stall"
                await asyncio.sleep(0.2)
            assert result.allowed
            lock = Lock(client, "s", timeout=TIMEOUT, blocking_timeout=0)
            assert await lock.acquire()
            await lock.release()
        finally:
            await client.aclose()


async def test_cancellation_storm_leaks_nothing(server: RedisProcess) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.latency = 0.002
        client = aioredis.Redis(host="127.0.0.1", port=proxy.port)
        try:
            cache = Cache(client, namespace="storm", ttl=60)
            limiter = RateLimiter(client, limit=1_000_000, window=60)
            await cache.set_many({f"k{i}": i for i in range(50)})
            await asyncio.sleep(0.05)
            baseline = _library_tasks()
            rng = random.Random(7)

            async def lock_cycle(i: int) -> str:
                lock = Lock(client, f"l{i % 5}", ttl=5, blocking_timeout=1)
                if await lock.acquire():
                    try:
                        await asyncio.sleep(0.001)
                    finally:
                        await lock.release()
                return "lock"

            for _ in range(5):
                work: list[tuple[str, Any]] = []
                for i in range(150):
                    kind = i % 3
                    if kind == 0:
                        work.append((f"k{i % 50}", cache.get(f"k{i % 50}")))
                    elif kind == 1:
                        work.append(("hit", limiter.hit(f"u{i % 7}")))
                    else:
                        work.append(("lock", lock_cycle(i)))
                tasks = [asyncio.create_task(coro) for _, coro in work]
                for _ in range(rng.randrange(1, 6)):
                    await asyncio.sleep(rng.random() * 0.01)
                    for task in rng.sample(tasks, 15):
                        task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                for (what, _), result in zip(work, results, strict=True):
                    if isinstance(result, BaseException):
                        assert isinstance(result, asyncio.CancelledError), repr(result)
                    elif what.startswith("k"):
                        assert result == int(what[1:])  # never someone else's reply
                    elif what == "hit":
                        assert result.allowed
                    else:
                        assert result == "lock"

            # Let background clean-ups (queue leaves, lease give-backs) finish.
            deadline = time.monotonic() + 5
            executor, notifier = executor_for(client), notifier_for(client)
            while (
                executor.pending_tasks
                or executor.in_flight
                or notifier.channels
                or _library_tasks() > baseline
            ):
                assert time.monotonic() < deadline, (
                    executor.pending_tasks,
                    executor.in_flight,
                    notifier.channels,
                    _library_tasks() - baseline,
                )
                await asyncio.sleep(0.05)
            # every connection back, but the one the executor keeps for lone calls
            in_use = client.connection_pool._in_use_connections
            assert len(in_use) == executor.held_connections
            for i in range(5):  # and the locks are free, not wedged by a cancelled holder
                assert await Lock(client, f"l{i}", blocking_timeout=2).acquire()
        finally:
            await client.aclose()


async def test_waiting_for_a_round_trip_slot_counts_against_the_timeout(
    server: RedisProcess,
) -> None:
    """On a stalled server the in-flight slots fill up; a caller waiting for one
    still gets its answer (a timeout) within its own deadline."""
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        client = aioredis.Redis(host="127.0.0.1", port=proxy.port)
        try:
            await client.ping()
            proxy.stall()
            limiter = RateLimiter(client, limit=10, window=60, timeout=TIMEOUT)

            async def one(i: int) -> float:
                await asyncio.sleep(i * 0.002)  # spread out: lone calls, not one batch
                started = time.monotonic()
                result = await limiter.hit(f"k{i}")
                assert result.degraded
                return time.monotonic() - started

            elapsed = await asyncio.gather(*(one(i) for i in range(100)))
            assert max(elapsed) < TIMEOUT + 0.5, max(elapsed)
        finally:
            proxy.resume()
            await client.aclose()
