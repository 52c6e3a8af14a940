"""A forged wake-up costs a waiter a look, never a wrong value or a skipped load (15.1).

Pub/sub ignores the database number and needs no key permission, so any
client may PUBLISH on a recompute channel. The cache's waiters treat a message
as a hint to look: they return only the loader's value or a value read from
Redis, and when the leader gives up they load themselves.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiocache_patterns import Cache
from aiocache_patterns.cache._recompute import RecomputeLock
from aiocache_patterns.keys import KeyBuilder
from tests._backends import Backend
from tests._helpers import until

RKEY = KeyBuilder("fg").key("k")
FORGED = [
    b"",
    b":",
    b"anyone",
    b":9223372036854775807",
    b':{"value": "forged"}',
    bytes(range(256)),
    b"\xac\x01" + b"\x7f" * 24 + b'"forged"',  # an envelope, as a message
    b"x" * 100_000,
]


@pytest.mark.parametrize("leader_fails", [False, True], ids=["leader-stores", "leader-fails"])
async def test_forged_messages_never_make_a_waiter_return_early(
    backend: Backend, leader_fails: bool
) -> None:
    options: dict[str, Any] = {"lock_ttl": 5, "lock_timeout": 10}
    leader = Cache(await backend.client(), namespace="fg", **options)
    others = [Cache(await backend.client(), namespace="fg", **options) for _ in range(2)]
    attacker = await backend.client()
    gate = asyncio.Event()
    loaded: list[str] = []

    async def leader_load() -> str:
        await gate.wait()
        if leader_fails:
            raise RuntimeError("the database is down")
        return "leader's"

    def own_load(name: str) -> Any:
        async def load() -> str:
            loaded.append(name)
            return f"{name}'s"

        return load

    leading = asyncio.create_task(leader.get_or_load("k", leader_load))
    await until(lambda: attacker.exists(RecomputeLock.lock_key(RKEY)))
    waiting = [
        asyncio.create_task(cache.get_or_load("k", own_load(f"other {i}")))
        for i, cache in enumerate(others)
        for _ in range(2)  # two callers per process, sharing its wait
    ]
    await until(lambda: all(cache.stats.waited for cache in others))

    for _ in range(3):
        for message in FORGED:
            await attacker.publish(RecomputeLock.channel(RKEY), message)
        await asyncio.sleep(0.05)  # let them look, and find nothing
    assert not any(task.done() for task in waiting), "a forged message let a waiter out"
    assert loaded == []  # nor made one load while the leader still loads

    gate.set()
    if leader_fails:
        with pytest.raises(RuntimeError):
            await leading
        # Woken by the real release: one process takes the lock and loads, the other
        # gets its value from Redis. Nothing a message carried.
        results = await asyncio.gather(*waiting)
        assert len(loaded) == 1
        assert set(results) == {f"{loaded[0]}'s"}
    else:
        assert await leading == "leader's"
        assert await asyncio.gather(*waiting) == ["leader's"] * 4
        assert loaded == []
