"""Locks and semaphores under production faults, on private servers.

* A full Redis (maxmemory reached, ``noeviction``): a release still frees the
  lease (the delete comes before anything written for bookkeeping), a lease
  handed over is still confirmed, and a queued waiter keeps its place.
* A release Redis cannot be asked to do (stalled): the object keeps the lease,
  and ``release()`` can be called again.
* A Redis 7 ACL user without channel permissions: releases that took effect
  report success, waiters fall back to polling, and one warning names the
  permission to grant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from aiocache_patterns import Lock, RedisOutOfMemory, RedisTimeout, Semaphore
from aiocache_patterns.lock._leases import LeaseHolder
from tests._proxy import FaultProxy
from tests._servers import RedisProcess, redis_full


def _make(kind: str, redis: Any, **kwargs: Any) -> LeaseHolder:
    if kind == "lock":
        return Lock(redis, "job", ttl=30, **kwargs)
    return Semaphore(redis, "job", limit=1, ttl=30, **kwargs)


async def _queued(redis: Any, kind: str) -> None:
    for _ in range(500):
        if await redis.zcard(f"{kind}:{{job}}:q".encode()):
            return
        await asyncio.sleep(0.01)
    pytest.fail("the waiter never queued")


@pytest.fixture
async def client(private_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis(port=private_server.port)
    yield redis
    await redis.aclose()


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_a_full_redis_does_not_keep_a_lease_from_being_released(
    client: aioredis.Redis, kind: str
) -> None:
    holder = _make(kind, client)
    assert await holder.acquire()
    async with redis_full(client):
        with pytest.raises(OutOfMemoryError):  # it is full: writes that add data are refused
            await client.set(b"probe", b"x")
        await holder.release()
        assert holder.lease is None
        assert await client.exists(b"lock:{job}", b"semaphore:{job}") == 0
        # A new acquire is free to be refused while Redis is full, and only so.
        newcomer = _make(kind, client, blocking_timeout=0)
        try:
            taken = await newcomer.acquire()
        except RedisOutOfMemory:
            taken = False
        if taken:
            await newcomer.release()
    assert await _make(kind, client, blocking_timeout=0).acquire()


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_a_full_redis_still_hands_the_lease_to_the_next_waiter(
    client: aioredis.Redis, kind: str
) -> None:
    holder = _make(kind, client)
    assert await holder.acquire()
    waiter = _make(kind, client, blocking_timeout=5)
    task = asyncio.create_task(waiter.acquire())
    await _queued(client, kind)
    async with redis_full(client):
        released = time.monotonic()
        await holder.release()
        assert await asyncio.wait_for(task, 5)
        assert time.monotonic() - released < 1.0  # woken, not left to a timer
        assert waiter.lease is not None
        await waiter.extend()
        await waiter.release()
    assert await client.exists(b"lock:{job}") == 0
    assert await client.zcard(b"semaphore:{job}") == 0


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_a_queued_waiter_keeps_its_place_while_redis_is_full(
    client: aioredis.Redis, kind: str
) -> None:
    """A waiter that tries again (every poll) while Redis is full keeps waiting:
    refreshing its place adds no data. It used to fail with RedisOutOfMemory."""
    holder = _make(kind, client)
    assert await holder.acquire()
    waiter = _make(kind, client, blocking_timeout=5, poll_interval=0.02)
    task = asyncio.create_task(waiter.acquire())
    await _queued(client, kind)
    async with redis_full(client):
        await asyncio.sleep(0.3)  # about 15 tries, each refreshing the waiter's place
        assert not task.done()
        await holder.release()
        assert await asyncio.wait_for(task, 5)
    assert waiter.lease is not None
    await waiter.release()


async def test_a_release_that_could_not_reach_redis_keeps_the_lease(
    private_server: RedisProcess,
) -> None:
    async with FaultProxy("127.0.0.1", private_server.port) as proxy:
        client = aioredis.Redis(port=proxy.port)
        try:
            lock = Lock(client, "job", ttl=30, timeout=0.3)
            assert await lock.acquire()
            lease = lock.lease
            proxy.stall()
            with pytest.raises(RedisTimeout):
                await lock.release()
            assert lock.lease is lease  # not forgotten: it may well still be held
            proxy.resume()
            await asyncio.sleep(0.2)
            await lock.release()  # again; now it goes through
            assert lock.lease is None
            assert not await lock.locked()
        finally:
            proxy.resume()
            await client.aclose()


@pytest.fixture
async def no_channels(private_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    """A client logged in as an ACL user with every command and key, and no channels."""
    admin = aioredis.Redis(port=private_server.port)
    # ACL SETUSER u on >pw ~* +@all resetchannels
    await admin.acl_setuser(
        "u", enabled=True, passwords=["+pw"], keys=["*"], categories=["+@all"], reset_channels=True
    )
    await admin.aclose()
    user = aioredis.Redis(port=private_server.port, username="u", password="pw")
    yield user
    await user.aclose()


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_without_channel_permissions_releases_succeed_and_waiters_poll(
    no_channels: aioredis.Redis, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiocache_patterns")
    for _ in range(3):
        holder = _make(kind, no_channels)
        assert await holder.acquire()
        waiters = [_make(kind, no_channels, blocking_timeout=5, poll_interval=0.05)]
        waiters.append(_make(kind, no_channels, blocking_timeout=5, poll_interval=0.05))
        tasks = [asyncio.create_task(w.acquire()) for w in waiters]
        await _queued(no_channels, kind)
        await holder.release()  # took effect: no error, although no wake-up could be sent
        assert holder.lease is None
        for waiter, task in zip(waiters, tasks, strict=True):
            assert await asyncio.wait_for(task, 5)  # the poll got it
            await waiter.release()  # handed over or not: reports success
    assert await no_channels.exists(b"lock:{job}") == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert f"&{kind}:*" in message
    assert "allchannels" in message
