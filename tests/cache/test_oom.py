"""The cache on a full Redis (maxmemory reached, noeviction): degraded, not broken.

Redis answers writes that add data with an OOM error, which the executor
raises as ``RedisOutOfMemory`` (a ``RedisUnavailable``); reads and deletes
still work. Wanted (issue 14.1): the cache serves from the loader and counts
the error; a write that cannot be stored never leaves the old value readable
(the old entry is deleted: DEL is allowed); ``write_through`` never raises
after its writer succeeded (unless ``fail_open=False``); and the recompute
lock is given back, and its waiters woken, even though the entry was refused.
With ``fail_open=False`` every one of these raises ``RedisOutOfMemory``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Cache, RedisOutOfMemory
from aiocache_patterns.cache._recompute import RecomputeLock
from aiocache_patterns.keys import KeyBuilder
from tests._helpers import until
from tests._servers import RedisProcess, redis_full

MISS: Any = object()


@pytest.fixture
async def clients(private_server: RedisProcess) -> AsyncIterator[list[aioredis.Redis]]:
    """Two clients (two "processes") and an admin one, on a private server."""
    made = [aioredis.Redis(port=private_server.port) for _ in range(3)]
    yield made
    for client in made:
        await client.aclose()


class Writer:
    def __init__(self) -> None:
        self.written: list[Any] = []

    async def __call__(self, value: Any) -> None:
        self.written.append(value)


async def load_new() -> str:
    return "new"


@pytest.mark.parametrize("fail_open", [True, False])
async def test_writes_on_a_full_redis_never_leave_the_old_value(
    clients: list[aioredis.Redis], fail_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client, _, admin = clients
    cache = Cache(client, namespace="oom", fail_open=fail_open)
    await cache.set_many({"a": "old", "b": "old", "c": "old", "d": "old"})
    writer = Writer()
    async with redis_full(admin):
        assert await cache.get("a") == "old"  # reads still work

        if fail_open:
            await cache.set_many({"b": "new", "c": "new"})  # logged (one line a second)
            await cache.set("a", "new")
            await cache.write_through("d", "new", writer)  # never raises after the writer
            assert await cache.get_or_load("e", load_new) == "new"  # served from the loader
        else:
            with pytest.raises(RedisOutOfMemory):
                await cache.set_many({"b": "new", "c": "new"})
            with pytest.raises(RedisOutOfMemory):
                await cache.set("a", "new")
            with pytest.raises(RedisOutOfMemory):
                await cache.write_through("d", "new", writer)
            with pytest.raises(RedisOutOfMemory):
                await cache.get_or_load("e", load_new)
        assert writer.written == ["new"]  # the source of truth was written, once

        # No old value is left readable: each refused write deleted it.
        for key in "abcde":
            assert await cache.get(key, MISS) is MISS, key
        assert await cache.delete("a", "x") == 0  # deletes still work
    assert cache.stats.errors == 5  # set, set_many's two values, write_through, get_or_load
    if fail_open:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("set_many, failing open" in w and "full" in w for w in warnings), warnings


async def test_without_the_recompute_lock_a_full_redis_serves_the_loader(
    clients: list[aioredis.Redis],
) -> None:
    client, _, admin = clients
    cache = Cache(client, namespace="oom", recompute_lock=False)
    strict = Cache(client, namespace="oom", recompute_lock=False, fail_open=False)
    async with redis_full(admin):
        assert await cache.get_or_load("k", load_new) == "new"
        assert cache.stats.errors == 1
        with pytest.raises(RedisOutOfMemory):
            await strict.get_or_load("k", load_new)


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_refused_entry_still_gives_the_recompute_lock_back(
    clients: list[aioredis.Redis], fail_open: bool
) -> None:
    leader_client, waiter_client, admin = clients
    options: dict[str, Any] = {"lock_ttl": 5, "lock_timeout": 10, "fail_open": fail_open}
    leader = Cache(leader_client, namespace="oom", **options)
    waiter = Cache(waiter_client, namespace="oom", **options)
    lock_key = RecomputeLock.lock_key(KeyBuilder("oom").key("k"))
    gate = asyncio.Event()

    async def slow_load() -> str:
        await gate.wait()
        return "leader's"

    async def own_load() -> str:
        return "waiter's"

    leading = asyncio.create_task(leader.get_or_load("k", slow_load))
    await until(lambda: admin.exists(lock_key))  # the leader holds the lock, loading
    waiting = asyncio.create_task(waiter.get_or_load("k", own_load))
    await until(lambda: waiter.stats.waited)  # the other process waits for the leader

    async with redis_full(admin):
        gate.set()  # the leader's entry is refused: Redis is full
        if fail_open:
            assert await leading == "leader's"
        else:
            with pytest.raises(RedisOutOfMemory):
                await leading
        assert not await admin.exists(lock_key)  # given back all the same
        started = time.monotonic()
        # Woken at once (not after the 5 s lease): the lock is free, but Redis cannot
        # take a new one, so the waiter loads on its own (fail-open) or raises.
        if fail_open:
            assert await waiting == "waiter's"
        else:
            with pytest.raises(RedisOutOfMemory):
                await waiting
        assert time.monotonic() - started < 2.0
    assert leader.stats.errors == 1
    assert await leader.get("k", MISS) is MISS


async def test_tags_on_a_full_redis(clients: list[aioredis.Redis]) -> None:
    """Invalidation still works (DEL), a tagged load is served without being stored,
    a tagged set that cannot make its versions deletes the old value."""
    client, other, admin = clients
    cache = Cache(client, namespace="oomt")
    await cache.set("a", "old", tags=("t",))
    await cache.set("b", "old", tags=("u",))
    async with redis_full(admin):
        assert await cache.get("a") == "old"
        assert await Cache(other, namespace="oomt").invalidate_tags("t") == 1
        assert await cache.get("a", MISS) is MISS
        assert await cache.get_or_load("a", load_new, tags=("t",)) == "new"  # not stored
        assert await cache.get("a", MISS) is MISS
        await cache.set("b", "new", tags=("fresh-tag",))  # no version can be made
        assert await cache.get("b", MISS) is MISS  # the old value is gone
    assert cache.stats.errors >= 2
