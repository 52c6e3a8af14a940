"""Leaving is free: a waiter that leaves costs the next waiter a round trip and a wake-up.

A waiter leaves when it is cancelled, its ``asyncio.wait_for`` times out or its
``blocking_timeout`` runs out. Leaving the queue and giving back a lease handed
to the leaver meanwhile is one atomic script that wakes the next waiter, and the
leaver has left before its ``CancelledError`` (or its ``False``) reaches the caller.

The leavers here have a long poll interval, so the lease a lock hands to a
waiter (four poll intervals: 20 s) and the fallback poll (5 s) are both far
longer than any bound below: only a wake-up can serve the next waiter in time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aiocache_patterns import Lock, Semaphore
from aiocache_patterns.lock._leases import LeaseHolder

BOUND = 1.5  # a round trip and a wake-up, on a noisy machine: far below 5 s


def _make(kind: str, redis: Any, **kwargs: Any) -> LeaseHolder:
    if kind == "lock":
        return Lock(redis, "res", ttl=30, **kwargs)
    return Semaphore(redis, "res", limit=1, ttl=30, **kwargs)


def _queue_key(kind: str) -> bytes:
    return b"lock:{res}:q" if kind == "lock" else b"semaphore:{res}:q"


async def _queued(redis: Any, kind: str, n: int) -> None:
    """Wait until ``n`` waiters are in the queue."""
    for _ in range(500):
        if await redis.zcard(_queue_key(kind)) >= n:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{n} waiters never queued")


async def _served(waiter: LeaseHolder, bound: float = BOUND) -> float:
    started = time.monotonic()
    assert await waiter.acquire(), "the next waiter was not served"
    elapsed = time.monotonic() - started
    assert elapsed < bound, elapsed
    await waiter.release()
    return elapsed


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_a_cancelled_waiter_has_left_when_its_cancel_returns(redis: Any, kind: str) -> None:
    """The scenario of issue 14.2: cancel a waiter, await it, release at once."""
    holder = _make(kind, redis)
    assert await holder.acquire()
    leaver = _make(kind, redis, blocking_timeout=10, poll_interval=5)
    task = asyncio.create_task(leaver.acquire())
    await _queued(redis, kind, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis.zcard(_queue_key(kind)) == 0  # gone from the queue already
    await holder.release()
    await _served(_make(kind, redis, blocking_timeout=BOUND, poll_interval=5))


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
@pytest.mark.parametrize("first", ["cancel", "release"])
async def test_a_head_waiter_cancelled_as_the_release_lands_wakes_the_next(
    redis: Any, kind: str, first: str
) -> None:
    """The head of the queue is cancelled in the same instant the holder releases, so
    the release may hand the lease to (or wake) the leaver: its leaving must give
    the lease back and wake the next waiter, who would otherwise sleep 5 s."""
    holder = _make(kind, redis)
    assert await holder.acquire()
    leaver = _make(kind, redis, blocking_timeout=10, poll_interval=5)
    head = asyncio.create_task(leaver.acquire())
    await _queued(redis, kind, 1)
    nxt = _make(kind, redis, blocking_timeout=10, poll_interval=5)
    waiting = asyncio.create_task(nxt.acquire())
    await _queued(redis, kind, 2)
    released = time.monotonic()
    if first == "cancel":
        head.cancel()
        await holder.release()
    else:
        release = asyncio.ensure_future(holder.release())
        head.cancel()
        await release
    with pytest.raises(asyncio.CancelledError):
        await head
    assert leaver.lease is None
    assert await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - released < BOUND
    await nxt.release()


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
@pytest.mark.parametrize("how", ["blocking_timeout", "wait_for"])
async def test_a_waiter_whose_time_ran_out_has_left(redis: Any, kind: str, how: str) -> None:
    holder = _make(kind, redis)
    assert await holder.acquire()
    leaver = _make(kind, redis, blocking_timeout=10, poll_interval=5)
    if how == "blocking_timeout":
        assert not await leaver.acquire(blocking_timeout=0.2)
    else:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(leaver.acquire(), 0.2)
    assert leaver.lease is None
    assert await redis.zcard(_queue_key(kind)) == 0  # gone from the queue already
    await holder.release()
    await _served(_make(kind, redis, blocking_timeout=BOUND, poll_interval=5))
