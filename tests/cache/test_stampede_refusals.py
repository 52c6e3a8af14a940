"""A value the cache refuses still gives the recompute lock back (issue 14.4).

A loader that returns what the serializer cannot hold (a ``set`` under JSON),
or a value over ``max_value_bytes``, fails the leader's callers with that
error; the lock must be given back and the other processes' waiters woken at
once, not after the lock's lease. A "process" is a Cache on its own client.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aiocache_patterns import Cache, SerializationError
from aiocache_patterns.cache._recompute import RecomputeLock
from aiocache_patterns.keys import KeyBuilder
from tests._backends import Backend
from tests._helpers import ttls_ms, until

LEASE = 5.0  # an orphaned lock would hold the waiter this long


@pytest.mark.parametrize(
    ("refused", "error"),
    [({1, 2}, SerializationError), ("x" * 2048, ValueError)],
    ids=["not-json", "too-big"],
)
async def test_a_refused_value_releases_the_lock_and_wakes_other_processes(
    backend: Backend, refused: Any, error: type[Exception]
) -> None:
    options: dict[str, Any] = {"lock_ttl": LEASE, "lock_timeout": 10, "max_value_bytes": 1024}
    leader = Cache(await backend.client(), namespace="rf", **options)
    other = Cache(await backend.client(), namespace="rf", **options)
    admin = await backend.client()
    lock_key = RecomputeLock.lock_key(KeyBuilder("rf").key("k"))
    gate = asyncio.Event()

    async def bad_load() -> Any:
        await gate.wait()
        return refused

    async def good_load() -> str:
        return "good"

    leading = [asyncio.create_task(leader.get_or_load("k", bad_load)) for _ in range(3)]
    await until(lambda: admin.exists(lock_key))
    leaders_token = await admin.get(lock_key)
    waiting = asyncio.create_task(other.get_or_load("k", good_load))
    await until(lambda: other.stats.waited)

    gate.set()
    for task in leading:  # every caller sharing the leader's load gets the error
        with pytest.raises(error):
            await task
    # Given back before the error reached them (the waiter may hold it by now).
    assert await admin.get(lock_key) != leaders_token
    started = time.monotonic()
    assert await waiting == "good"  # woken, took the lock, loaded its own value
    assert time.monotonic() - started < LEASE / 2
    assert await leader.get("k") == "good"
    assert not await admin.exists(lock_key)
    assert all(ttl > 0 for ttl in (await ttls_ms(admin)).values())
