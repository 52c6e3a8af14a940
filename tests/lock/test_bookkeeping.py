"""Bookkeeping keys that hold garbage do not break a lock or a semaphore for good.

Every number the scripts read from a key (the fencing counter, a waiter's
deadline, the arrival counter) may have been overwritten by someone with write
access, without a TTL. None of them may give a Lua arithmetic error forever: an
unreadable fencing counter restarts from the server clock (tokens stay above
every token issued), an unreadable deadline is a dead waiter, an unreadable
arrival counter resumes after the last arrival. Every key is left with a TTL.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aiocache_patterns import Lock, Semaphore
from aiocache_patterns.lock._leases import LeaseHolder
from tests._helpers import ttls_ms

GARBAGE = [b"garbage", b"", b"1e300", b"nan", b"inf", b"-5", b"1.5", b"99999999999999999999"]


def _make(kind: str, redis: Any, **kwargs: Any) -> LeaseHolder:
    if kind == "lock":
        return Lock(redis, "g", ttl=30, **kwargs)
    return Semaphore(redis, "g", limit=1, ttl=30, **kwargs)


def _key(kind: str, suffix: str) -> bytes:
    return f"{kind}:{{g}}{suffix}".encode()


async def _no_immortal_keys(redis: Any) -> None:
    ttls = await ttls_ms(redis)
    assert all(ttl != -1 for ttl in ttls.values()), ttls


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_an_unreadable_fencing_counter_restarts_from_the_server_clock(
    redis: Any, kind: str
) -> None:
    first = _make(kind, redis)
    assert await first.acquire()
    assert first.lease is not None
    tokens = [first.lease.fencing_token]
    await first.release()
    for garbage in GARBAGE:
        await redis.set(_key(kind, ":fence"), garbage)  # and no TTL
        holder = _make(kind, redis, blocking_timeout=0)
        assert await holder.acquire(), garbage
        assert holder.lease is not None
        tokens.append(holder.lease.fencing_token)
        assert await redis.pttl(_key(kind, ":fence")) > 0
        await holder.release()
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)
    assert tokens[-1] < 2**53
    assert tokens[-1] >= int(time.time() - 3600) * 1_000_000  # the server clock, in µs
    await _no_immortal_keys(redis)


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_a_waiter_handed_the_lease_confirms_with_an_unreadable_counter(
    redis: Any, kind: str
) -> None:
    holder = _make(kind, redis)
    assert await holder.acquire()
    waiter = _make(kind, redis, blocking_timeout=5)
    task = asyncio.create_task(waiter.acquire())
    for _ in range(500):
        if await redis.zcard(_key(kind, ":q")):
            break
        await asyncio.sleep(0.01)
    await redis.set(_key(kind, ":fence"), b"not a number")
    await holder.release()
    assert await asyncio.wait_for(task, 5)
    assert waiter.lease is not None
    assert holder.lease is None
    await waiter.release()
    await _no_immortal_keys(redis)


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_an_unreadable_waiter_deadline_is_a_dead_waiter(redis: Any, kind: str) -> None:
    holder = _make(kind, redis)
    assert await holder.acquire()
    waiter = _make(kind, redis, blocking_timeout=5)
    task = asyncio.create_task(waiter.acquire())
    for _ in range(500):
        queued = await redis.zrange(_key(kind, ":q"), 0, -1)
        if queued:
            break
        await asyncio.sleep(0.01)
    await redis.hset(_key(kind, ":qd"), queued[0], b"soon")
    await holder.release()  # reads the waiter's deadline: no Lua error
    newcomer = _make(kind, redis, blocking_timeout=0)
    if await newcomer.acquire():  # reads it too (the waiter is ahead of it)
        await newcomer.release()
    assert await asyncio.wait_for(task, 5)  # the waiter, alive, still gets in
    await waiter.release()
    await _no_immortal_keys(redis)


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_an_unreadable_arrival_counter_resumes_after_the_last_arrival(
    redis: Any, kind: str
) -> None:
    holder = _make(kind, redis)
    assert await holder.acquire()
    first = _make(kind, redis, blocking_timeout=5)
    first_task = asyncio.create_task(first.acquire())
    for _ in range(500):
        if await redis.zcard(_key(kind, ":q")):
            break
        await asyncio.sleep(0.01)
    await redis.hset(_key(kind, ":qd"), b"#seq", b"x")
    await redis.persist(_key(kind, ":qd"))
    second = _make(kind, redis, blocking_timeout=5)
    second_task = asyncio.create_task(second.acquire())
    for _ in range(500):
        if await redis.zcard(_key(kind, ":q")) == 2:
            break
        await asyncio.sleep(0.01)
    order: list[bytes] = await redis.zrange(_key(kind, ":q"), 0, -1)
    assert len(order) == 2
    assert await redis.pttl(_key(kind, ":qd")) > 0
    await holder.release()
    assert await asyncio.wait_for(first_task, 5)  # arrival order kept
    assert not second_task.done()
    await first.release()
    assert await asyncio.wait_for(second_task, 5)
    await second.release()
    await _no_immortal_keys(redis)
