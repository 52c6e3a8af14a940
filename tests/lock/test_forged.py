"""A wake-up is a hint, never proof: forged messages cannot let a waiter in.

Anyone who can PUBLISH (any client of the server, on any database: pub/sub
ignores the database number) can send a message on a lock's wake-up channel.
A waiter that is woken asks Redis whether the lease is its own, and learns its
fencing token from Redis, before it returns; a forged or malformed message
costs it a round trip, nothing more.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Lock, Semaphore
from aiocache_patterns.lock._leases import LeaseHolder
from tests._backends import Backend

HUGE = b"9223372036854775807"  # 2**63 - 1: would block every honest writer of a fenced store


def _make(kind: str, redis: Any, **kwargs: Any) -> LeaseHolder:
    if kind == "lock":
        return Lock(redis, "invoice:42", ttl=30, **kwargs)
    return Semaphore(redis, "invoice:42", limit=1, ttl=30, **kwargs)


def _key(kind: str, suffix: str) -> bytes:
    return f"{kind}:{{invoice:42}}{suffix}".encode()


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_forged_wake_ups_never_let_a_waiter_in(redis: Any, kind: str) -> None:
    holder = _make(kind, redis)
    assert await holder.acquire()
    assert holder.lease is not None
    fence_before = await redis.get(_key(kind, ":fence"))
    waiters = [_make(kind, redis, blocking_timeout=20, poll_interval=5) for _ in range(3)]
    tasks = [asyncio.create_task(w.acquire()) for w in waiters]
    for _ in range(500):
        if await redis.zcard(_key(kind, ":q")) == 3:
            break
        await asyncio.sleep(0.01)
    queued: list[bytes] = await redis.zrange(_key(kind, ":q"), 0, -1)
    assert len(queued) == 3

    forged = [
        b"",  # "anyone"
        b":" + HUGE,  # anyone, with a fencing token
        b"anyone",
        queued[0],  # the head's own name
        queued[0] + b":" + HUGE,
        queued[1] + b":1",  # another waiter's name, a tiny token
        queued[2] + b":-5:x:y",
        b"\xff\xfe\x00:\x80garbage",
        b":" + b"9" * 5000,
    ]
    channel = _key(kind, ":wake")
    for message in forged:
        await redis.publish(channel, message)
    await asyncio.sleep(0.3)  # every waiter has been woken and has asked Redis

    assert not any(task.done() for task in tasks), "a forged message let a waiter in"
    assert all(w.lease is None for w in waiters)
    assert await redis.get(_key(kind, ":fence")) == fence_before  # no fence changed
    assert await redis.zcard(_key(kind, ":q")) == 3  # nobody lost their place either

    # The real release still hands over, in order, with honest fencing tokens.
    fences = [holder.lease.fencing_token]
    await holder.release()
    for waiter, task in zip(waiters, tasks, strict=True):
        assert await asyncio.wait_for(task, 5)
        assert waiter.lease is not None
        fences.append(waiter.lease.fencing_token)
        await waiter.release()
    assert fences == sorted(fences)
    assert len(set(fences)) == len(fences)
    assert max(fences) < 2**53  # server-clock microseconds, not a forged 2**63 - 1


async def test_a_forged_message_on_another_database_is_still_only_a_hint(
    redis: Any, backend: Backend
) -> None:
    """Pub/sub ignores the database number: a client of another app on another
    database reaches the channel too, and gets no further."""
    if backend.name != "redis" or backend.url is None:
        pytest.skip("database numbers: a standalone server only")
    other_db = backend.url.rsplit("/", 1)[0] + "/0"
    outsider = aioredis.Redis.from_url(other_db)
    try:
        holder = Lock(redis, "invoice:42", ttl=30)
        assert await holder.acquire()
        waiter = Lock(redis, "invoice:42", blocking_timeout=20, poll_interval=5)
        task = asyncio.create_task(waiter.acquire())
        for _ in range(500):
            if await redis.zcard(b"lock:{invoice:42}:q"):
                break
            await asyncio.sleep(0.01)
        assert await outsider.publish(b"lock:{invoice:42}:wake", b":" + HUGE) >= 1
        await asyncio.sleep(0.2)
        assert not task.done()
        await holder.release()
        assert await asyncio.wait_for(task, 5)
        assert waiter.lease is not None
        assert waiter.lease.fencing_token < 2**53
        await waiter.release()
    finally:
        await outsider.aclose()
