"""Idempotency against faults on a private server: a lost reply (the claim and the
completion are resent and applied once), a full Redis (the key is freed, not left
claimed), a cancelled caller (nothing left claimed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Idempotency, RedisOutOfMemory
from aiocache_patterns._redis import eviction
from aiocache_patterns.idempotency import IdempotencyClaim
from tests._proxy import FaultProxy
from tests._servers import RedisProcess, private_redis, redis_full, redis_server_binary


@pytest.fixture
async def through(private_server: RedisProcess) -> AsyncIterator[tuple[Any, FaultProxy]]:
    """A default client whose traffic passes through a fault proxy."""
    async with FaultProxy("127.0.0.1", private_server.port) as proxy:
        client = aioredis.Redis(port=proxy.port)
        try:
            yield client, proxy
        finally:
            await client.aclose()


async def test_a_claim_whose_reply_was_lost_is_resent_and_applied_once(
    through: tuple[Any, FaultProxy],
) -> None:
    client, proxy = through
    idem = Idempotency(client, ttl=60, timeout=2)
    await idem.run("warm", "fp", _op([]))  # connected, scripts loaded
    calls: list[int] = []
    proxy.cut_replies()  # the claim runs; its reply is lost; resent (safe)
    result = await idem.run("k", "fp", _op(calls))
    assert proxy.cuts == 1
    assert calls == [result]  # ran once, under the fence the first send issued
    assert await idem.run("k", "fp", _op(calls)) == result


async def test_a_completion_whose_reply_was_lost_is_resent(
    through: tuple[Any, FaultProxy],
) -> None:
    client, proxy = through
    idem = Idempotency(client, ttl=60, timeout=2)
    await idem.run("warm", "fp", _op([]))
    claim = await idem.start("k", "fp")
    assert isinstance(claim, IdempotencyClaim)
    proxy.cut_replies()
    assert await idem.complete(claim, b'"done"') is True  # the repeat answers the same
    assert proxy.cuts == 1
    calls: list[int] = []
    assert await idem.run("k", "fp", _op(calls)) == "done"
    assert calls == []


async def test_a_full_redis_at_completion_frees_the_key(
    private_server: RedisProcess,
) -> None:
    client = aioredis.Redis(port=private_server.port)
    admin = aioredis.Redis(port=private_server.port)
    try:
        idem = Idempotency(client, ttl=60, lease=30)
        claim = await idem.start("k", "fp")
        assert isinstance(claim, IdempotencyClaim)
        async with redis_full(admin):
            with pytest.raises(RedisOutOfMemory):
                await idem.complete(claim, b"x" * 10_000)
            assert await admin.exists(claim.redis_key) == 0  # not left claimed for 30 s

            ran: list[int] = []
            with pytest.raises(RedisOutOfMemory):  # the claim is refused: nothing runs
                await idem.run("k2", "fp", _op(ran))
            assert ran == []
        calls: list[int] = []
        await idem.run("k", "fp", _op(calls))  # free again: runs
        assert len(calls) == 1
    finally:
        await client.aclose()
        await admin.aclose()


async def test_a_cancelled_waiter_leaves_nothing_behind(redis: Any) -> None:
    idem = Idempotency(redis, ttl=60, concurrent="wait", wait_timeout=30)
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(fence: int) -> int:
        started.set()
        await release.wait()
        return fence

    first = asyncio.create_task(idem.run("k", "fp", slow))
    await started.wait()
    waiter = asyncio.create_task(idem.run("k", "fp", slow))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    fence = await first
    assert await idem.run("k", "fp", slow) == fence  # the waiter's leaving changed nothing


def _op(calls: list[int]) -> Any:
    async def op(fence: int) -> int:
        calls.append(fence)
        return fence

    return op


@pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server")
async def test_an_evicting_redis_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    async with private_redis("--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru") as p:
        client = aioredis.Redis(port=p.port)
        try:
            for key in ("a", "b", "c"):
                await Idempotency(client, ttl=60).run(key, "fp", _op([]))
            deadline = time.monotonic() + 5
            while eviction._tasks:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        finally:
            await client.aclose()
    found = [r.getMessage() for r in caplog.records if r.name == "aiocache_patterns.eviction"]
    (line,) = found
    assert "idempotency store" in line
    assert "volatile-lru" in line


async def test_a_caller_cancelled_while_its_claim_is_in_flight_holds_nothing(
    through: tuple[Any, FaultProxy],
) -> None:
    client, proxy = through
    idem = Idempotency(client, ttl=60, lease=30, timeout=5)
    await idem.run("warm", "fp", _op([]))
    calls: list[int] = []
    proxy.stall()  # the claim is sent, and waits in the proxy
    task = asyncio.create_task(idem.run("k", "fp", _op(calls)))
    await asyncio.sleep(0.1)
    task.cancel()
    proxy.resume()  # the claim is applied in Redis after its caller left
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == []
    for _ in range(100):  # the key is given back (in the background), not held for 30 s
        claim = await client.hget(b"idempotency:{k}", b"s")
        if claim != b"run":
            break
        await asyncio.sleep(0.02)
    assert claim == b"free"
    await idem.run("k", "fp", _op(calls))
    assert len(calls) == 1
