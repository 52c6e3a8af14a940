"""The cache for a Redis 7 ACL user without channel permissions (issue 14.7).

New ACL users get no pub/sub channels by default (``resetchannels``). The
store script's final PUBLISH then fails after the entry was written and the
lock given back; the operation took effect, so it reports success. Waiters
cannot be woken: they find the entry by looking on their own (their lease
wait or the poll), and never raise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Cache
from aiocache_patterns.cache._recompute import RecomputeLock
from aiocache_patterns.keys import KeyBuilder
from tests._helpers import until
from tests._servers import RedisProcess


@pytest.fixture
async def no_channels(private_server: RedisProcess) -> AsyncIterator[list[aioredis.Redis]]:
    """An admin client, then two clients of a user with every key and command, no channel."""
    admin = aioredis.Redis(port=private_server.port)
    # ACL SETUSER app on >pw ~* +@all resetchannels
    await admin.acl_setuser(
        "app",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        categories=["+@all"],
        reset_channels=True,
    )
    made = [admin] + [
        aioredis.Redis(port=private_server.port, username="app", password="pw") for _ in range(2)
    ]
    yield made
    for client in made:
        await client.aclose()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_load_that_was_stored_reports_success_and_waiters_find_it(
    no_channels: list[aioredis.Redis], fail_open: bool
) -> None:
    admin, first, second = no_channels
    options: dict[str, Any] = {"lock_ttl": 5, "lock_timeout": 10, "fail_open": fail_open}
    leader = Cache(first, namespace="acl", **options)
    other = Cache(second, namespace="acl", **options)
    lock_key = RecomputeLock.lock_key(KeyBuilder("acl").key("k"))
    gate = asyncio.Event()

    async def slow_load() -> str:
        await gate.wait()
        return "stored"

    async def never() -> str:
        raise AssertionError("the waiter must find the leader's value")

    leading = asyncio.create_task(leader.get_or_load("k", slow_load))
    await until(lambda: admin.exists(lock_key))
    leaders_token = await admin.get(lock_key)
    waiting = asyncio.create_task(other.get_or_load("k", never))
    await until(lambda: other.stats.waited)

    gate.set()
    assert await leading == "stored"  # took effect, so no error
    assert await admin.get(lock_key) != leaders_token  # (the waiter may hold it a moment)
    started = time.monotonic()
    assert await waiting == "stored"  # found by looking, not woken
    assert time.monotonic() - started < 2.0  # its poll, not the 5 s lease
    assert await other.get("k") == "stored"
    assert leader.stats.errors == other.stats.errors == 0
    assert not await admin.exists(lock_key)
