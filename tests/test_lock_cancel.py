"""Cancelling Lock/Semaphore acquire: a cancelled call raises ``CancelledError``.

Whatever redis-py does: a cancel that lands while the pub/sub SUBSCRIBE is
being written can be lost below the library (redis-py writes under
``asyncio.wait_for``, which on Python 3.11 may swallow a cancellation, CPython
gh-86296), and must still cancel the acquire.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Lock, Semaphore
from aiocache_patterns._executor import executor_for
from aiocache_patterns._leases import _BACKGROUND, LeaseHolder
from aiocache_patterns._notify import notifier_for


def _make(kind: str, redis: Any, **kwargs: Any) -> LeaseHolder:
    if kind == "lock":
        return Lock(redis, "c", ttl=30, **kwargs)
    return Semaphore(redis, "c", limit=1, ttl=30, **kwargs)


def _queue(kind: str) -> bytes:
    return f"{kind}:{{c}}:q".encode()


async def _settled(redis: Any, baseline: int) -> None:
    """Background clean-ups done; no task, subscription or connection left over."""
    executor, notifier = executor_for(redis), notifier_for(redis)
    deadline = time.monotonic() + 3
    while (
        notifier.channels
        or _BACKGROUND
        or executor.pending_tasks
        or executor.in_flight
        or len(asyncio.all_tasks()) > baseline
    ):
        assert time.monotonic() < deadline, (
            notifier.channels,
            len(_BACKGROUND),
            executor.pending_tasks,
            len(asyncio.all_tasks()) - baseline,
        )
        await asyncio.sleep(0.005)
    if type(redis) is aioredis.Redis:  # a socket pool: every connection back but the lane
        in_use = redis.connection_pool._in_use_connections
        assert len(in_use) == executor.held_connections


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_a_cancel_swallowed_below_the_subscribe_still_cancels_the_acquire(
    redis: Any, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever redis-py does: here its SUBSCRIBE loses a cancellation, as a write
    under ``asyncio.wait_for`` can on Python 3.11 (CPython gh-86296)."""
    original = redis.pubsub

    def pubsub(**kwargs: Any) -> Any:
        ps = original(**kwargs)
        subscribe = ps.subscribe

        async def swallowing_subscribe(*args: Any, **kw: Any) -> Any:
            with contextlib.suppress(asyncio.CancelledError):  # lost, as in gh-86296
                await asyncio.sleep(0.1)  # the write, being written
            return await subscribe(*args, **kw)

        ps.subscribe = swallowing_subscribe
        return ps

    monkeypatch.setattr(redis, "pubsub", pubsub)
    baseline = len(asyncio.all_tasks())
    for _ in range(3):
        holder = _make(kind, redis)
        assert await holder.acquire()
        waiter = _make(kind, redis, blocking_timeout=2, poll_interval=5)
        task = asyncio.create_task(waiter.acquire())
        for _ in range(500):
            if await redis.zcard(_queue(kind)):
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # inside the SUBSCRIBE now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waiter.lease is None
        await holder.release()
        await _settled(redis, baseline)
