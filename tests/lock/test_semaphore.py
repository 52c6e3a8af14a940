"""Distributed Semaphore: at most `limit` holders, leases expire, fair wake-ups, fencing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aiocache_patterns import LockNotAcquired, LockNotOwned, Semaphore
from tests._helpers import ttls_ms


async def test_never_more_than_limit_holders(redis: Any) -> None:
    inside = 0
    peak = 0
    tokens: list[int] = []

    async def worker() -> None:
        nonlocal inside, peak
        for _ in range(3):
            async with Semaphore(redis, "pool", limit=3, ttl=5, blocking_timeout=20) as lease:
                inside += 1
                peak = max(peak, inside)
                tokens.append(lease.fencing_token)
                await asyncio.sleep(0.005)
                inside -= 1

    await asyncio.gather(*(worker() for _ in range(12)))
    assert peak == 3
    assert len(tokens) == 36
    assert len(set(tokens)) == 36
    assert all(ttl > 0 for ttl in (await ttls_ms(redis)).values())


async def test_a_crashed_holder_frees_its_place_when_its_lease_ends(redis: Any) -> None:
    crashed = Semaphore(redis, "s", limit=1, ttl=0.3)
    assert await crashed.acquire()
    assert await crashed.holders() == 1
    started = time.monotonic()
    waiter = Semaphore(redis, "s", limit=1, ttl=5, blocking_timeout=5, poll_interval=30)
    assert await waiter.acquire()
    assert time.monotonic() - started < 1.5  # woken by the lease's end, not the 30 s poll
    with pytest.raises(LockNotOwned):
        await crashed.release()
    assert await waiter.holders() == 1
    await waiter.release()
    assert await waiter.holders() == 0


async def test_release_wakes_the_first_waiter(redis: Any) -> None:
    a = Semaphore(redis, "w", limit=1)
    assert await a.acquire()
    b = Semaphore(redis, "w", limit=1, blocking_timeout=5, poll_interval=30)
    task = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await a.release()
    assert await task
    assert time.monotonic() - started < 1.0
    await b.release()


async def test_try_once_timeout_and_extend(redis: Any) -> None:
    holders = [Semaphore(redis, "t", limit=2, ttl=0.5) for _ in range(2)]
    for h in holders:
        assert await h.acquire()
    assert not await Semaphore(redis, "t", limit=2, blocking_timeout=0).acquire()
    with pytest.raises(LockNotAcquired):
        async with Semaphore(redis, "t", limit=2, blocking_timeout=0.1):
            pytest.fail("must not get here")
    await holders[0].extend(5)
    await asyncio.sleep(0.6)  # holders[1] expired; holders[0] was extended
    await holders[0].extend()
    with pytest.raises(LockNotOwned):
        await holders[1].extend()
    assert await Semaphore(redis, "t", limit=2, blocking_timeout=0).acquire()


async def test_cancelled_waiter_does_not_hold_a_place(redis: Any) -> None:
    a = Semaphore(redis, "c", limit=1)
    assert await a.acquire()
    waiter = Semaphore(redis, "c", limit=1, blocking_timeout=10)
    task = asyncio.create_task(waiter.acquire())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await a.release()
    await asyncio.sleep(0.05)
    assert await Semaphore(redis, "c", limit=1, blocking_timeout=1).acquire()


@pytest.mark.parametrize(
    ("limit", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_limit(redis: Any, limit: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="limit"):
        Semaphore(redis, "x", limit=limit)


def test_bad_ttl_and_name(redis: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        Semaphore(redis, "x", limit=1, ttl=0)
    with pytest.raises(ValueError, match="name"):
        Semaphore(redis, "", limit=1)
