"""Redis behind Sentinel: a ``master_for()`` client, and a forced failover under load.

Runs on a private master + replica + Sentinel (``tests/_sentinel.py``). What
docs/operations.md promises for Sentinel:

* every pattern works on a ``Sentinel(...).master_for(name)`` client, pub/sub
  wake-ups included;
* during a failover the cache fails open (no call raises), a limiter follows
  its ``fail_open``, locks raise library errors, and nothing hangs past its
  timeout;
* afterwards everything works again on the new master without user action;
* a lock is granted twice only through the asynchronous-replication window
  (at most one overlap per failover here), and fencing tokens keep increasing
  in the order the grants were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from aiocache_patterns import Cache, CachePatternsError, Lock, RateLimiter
from tests._backends import in_ci
from tests._sentinel import SentinelSetup, private_sentinel
from tests._servers import redis_server_binary

pytestmark = [pytest.mark.timeout(120), pytest.mark.real_only]

TIMEOUT = 0.5


@pytest.fixture
async def sentinel_setup() -> Any:
    if redis_server_binary() is None:
        if in_ci():
            pytest.fail("redis-server is required in CI", False)
        pytest.skip("redis-server is not on PATH")
    async with private_sentinel() as setup:
        yield setup


def _client(setup: SentinelSetup) -> aioredis.Redis:
    sentinel = Sentinel([("127.0.0.1", setup.sentinel_port)], socket_timeout=1.0)
    client: aioredis.Redis = sentinel.master_for(setup.name, socket_timeout=1.0)
    return client


async def test_every_pattern_works_on_a_master_for_client(sentinel_setup: SentinelSetup) -> None:
    client = _client(sentinel_setup)
    try:
        cache = Cache(client, namespace="s", ttl=60, timeout=TIMEOUT)
        await cache.set("a", {"v": 1})
        assert await cache.get("a") == {"v": 1}
        got = await asyncio.gather(*(cache.get_or_load(f"k{i}", lambda: _v(1)) for i in range(30)))
        assert got == [1] * 30
        limiter = RateLimiter(client, limit=2, window=60, timeout=TIMEOUT)
        assert [(await limiter.hit("u")).allowed for _ in range(3)] == [True, True, False]
        # A waiter is woken by pub/sub: its poll is far longer than the wait it sees.
        holder = Lock(client, "res", ttl=10, timeout=TIMEOUT)
        assert await holder.acquire()
        waiter = Lock(client, "res", ttl=10, blocking_timeout=8, poll_interval=5, timeout=TIMEOUT)
        waiting = asyncio.create_task(waiter.acquire())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        start = time.monotonic()
        await holder.release()
        assert await waiting
        assert time.monotonic() - start < 2.0
        await waiter.release()
    finally:
        await client.aclose()


async def _v(value: int) -> int:
    return value


@pytest.mark.parametrize("how", ["forced", "master_killed"])
async def test_failover_under_load(sentinel_setup: SentinelSetup, how: str) -> None:
    client = _client(sentinel_setup)
    stop = asyncio.Event()
    errors: list[BaseException] = []
    cache_results: list[Any] = []
    limiter_degraded = {"open": 0, "closed": 0, "closed_allowed": 0, "open_denied": 0}
    grants: list[tuple[float, int]] = []  # (when, fencing token) in grant order
    holders = 0
    overlaps = 0
    try:
        cache = Cache(client, namespace="s", ttl=60, timeout=TIMEOUT)
        opened = RateLimiter(client, limit=10**6, window=60, timeout=TIMEOUT, fail_open=True)
        closed = RateLimiter(client, limit=10**6, window=60, timeout=TIMEOUT, fail_open=False)

        async def cache_load() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    cache_results.append(await cache.get_or_load(f"k{i % 10}", lambda: _v(7)))
                    await cache.set(f"w{i % 10}", i)
                except BaseException as exc:  # the cache never raises on Redis trouble
                    errors.append(exc)
                    return
                await asyncio.sleep(0.005)

        async def limiter_load() -> None:
            while not stop.is_set():
                a = await opened.hit("u")
                b = await closed.hit("u")
                if a.degraded:
                    limiter_degraded["open"] += 1
                    limiter_degraded["open_denied"] += not a.allowed
                if b.degraded:
                    limiter_degraded["closed"] += 1
                    limiter_degraded["closed_allowed"] += b.allowed
                await asyncio.sleep(0.005)

        async def lock_load() -> None:
            nonlocal holders, overlaps
            lock = Lock(client, "job", ttl=3, blocking_timeout=1, timeout=TIMEOUT)
            while not stop.is_set():
                try:
                    if not await asyncio.wait_for(lock.acquire(), 5):
                        continue
                except CachePatternsError:
                    await asyncio.sleep(0.05)
                    continue
                assert lock.lease is not None
                grants.append((time.monotonic(), lock.lease.fencing_token))
                holders += 1
                overlaps += holders > 1
                await asyncio.sleep(0.01)
                holders -= 1
                # The lease may be lost with the failover, or Redis may be switching.
                with contextlib.suppress(CachePatternsError):
                    await lock.release()

        tasks = [asyncio.create_task(cache_load()) for _ in range(4)]
        tasks += [asyncio.create_task(limiter_load()) for _ in range(2)]
        tasks += [asyncio.create_task(lock_load()) for _ in range(3)]
        await asyncio.sleep(1.0)
        old_port = await sentinel_setup.master_port()
        new_port = await sentinel_setup.failover(kill=how == "master_killed")
        assert new_port != old_port
        # Recovery: writes reach the new master, with no user action.
        deadline = time.monotonic() + 20
        probe = aioredis.Redis(port=new_port)
        try:
            while True:
                await cache.set("after", "failover")
                if await probe.exists(b"s:{after}"):
                    break
                assert time.monotonic() < deadline, "writes never reached the new master"
                await asyncio.sleep(0.1)
        finally:
            await probe.aclose()
        await asyncio.sleep(1.0)  # load goes on after the switch
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)

        assert errors == []
        if how == "master_killed":
            assert limiter_degraded["closed"] > 0  # there was an outage, and it was seen
        assert cache_results
        assert set(cache_results) == {7}
        assert limiter_degraded["open_denied"] == 0  # fail_open=True: degraded hits allowed
        assert limiter_degraded["closed_allowed"] == 0  # fail_open=False: denied
        assert await cache.get("after") == "failover"
        assert not (await closed.hit("u")).degraded
        # Only the switch can grant twice (a grant the replica had not received is
        # lost with it, and its holder may overlap the next one): a handful, not the
        # hundreds of grants of the run. Fencing tokens (above) are the guarantee.
        assert overlaps <= 3
        tokens = [token for _, token in grants]
        assert len(tokens) > 10
        assert tokens == sorted(tokens)
        assert len(set(tokens)) == len(tokens)
        lock = Lock(client, "job", ttl=3, blocking_timeout=5, timeout=TIMEOUT)
        assert await lock.acquire()
        await lock.release()
    finally:
        stop.set()
        await client.aclose()
