"""Every await point of Lock/Semaphore acquire, release and extend, cancelled.

For each call, :func:`tests._cancel.cancel_at_each_step` cancels it after k
turns of the event loop, for every k until it completes, and after each run:

* a cancelled call raised ``CancelledError`` (never a result: a cancel that
  redis-py swallows must not turn into an acquire that returns ``True``);
* a cancelled acquire holds nothing (the lease is free, or the holder's), and
  a cancelled release leaves the lease free (or, cancelled before it started,
  still on the object, which can release it);
* the next waiter is served within a round trip and a wake-up (it polls only
  every 30 s, and a lease handed to a waiter that died would block it 20 s);
* no bookkeeping key without a TTL; no leaked task, subscription or connection.

Every contended acquire subscribes afresh (the previous run's subscription is
gone first), so the cancel also lands while the SUBSCRIBE is being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from aiocache_patterns import Lock, Semaphore
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns._redis.notify import notifier_for
from aiocache_patterns.lock._leases import _BACKGROUND, LeaseHolder
from tests._backends import Backend
from tests._cancel import Outcome, cancel_at_each_step
from tests._helpers import ttls_ms

BOUND = 1.5  # a round trip and a wake-up, on a noisy machine


def _make(kind: str, redis: Any, **kwargs: Any) -> LeaseHolder:
    if kind == "lock":
        return Lock(redis, "c", ttl=30, **kwargs)
    return Semaphore(redis, "c", limit=1, ttl=30, **kwargs)


def _queue(kind: str) -> bytes:
    return f"{kind}:{{c}}:q".encode()


async def _holders(redis: Any, kind: str) -> set[bytes]:
    """Tokens holding the lease now."""
    if kind == "lock":
        token = await redis.get(b"lock:{c}")
        return set() if token is None else {token}
    return set(await redis.zrange(b"semaphore:{c}", 0, -1))


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


async def _next_waiter_served(redis: Any, kind: str, holder: LeaseHolder | None) -> None:
    """A new waiter (polling only every 30 s) gets in within a round trip and a wake-up
    of the release (or at once, if nobody holds the lease)."""
    nxt = _make(kind, redis, blocking_timeout=5, poll_interval=30)
    task = asyncio.create_task(nxt.acquire())
    if holder is not None and holder.lease is not None:
        for _ in range(1000):
            if await redis.zcard(_queue(kind)):
                break
            await asyncio.sleep(0.001)
        await holder.release()
    started = time.monotonic()
    assert await task
    assert time.monotonic() - started < BOUND
    await nxt.release()


async def _no_immortal_keys(redis: Any) -> None:
    ttls = await ttls_ms(redis)
    assert all(ttl != -1 for ttl in ttls.values()), ttls


async def _run(
    redis: Any, arm: Callable[[], Awaitable[None]], call: Callable[[], Awaitable[Any]], check: Any
) -> int:
    baseline = len(asyncio.all_tasks())
    await arm()

    async def after(step: int, outcome: Outcome[Any]) -> None:
        if outcome.cancel_sent:  # never a result after a cancel (item 14.3)
            assert outcome.cancelled, (step, outcome)
        assert outcome.error is None, (step, outcome.error)
        await check(step, outcome)
        await _no_immortal_keys(redis)
        await _settled(redis, baseline)
        if outcome.cancel_sent:  # else that was the last run
            await arm()

    return await cancel_at_each_step(call, after)


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_cancel_a_contended_acquire_at_every_step(redis: Any, kind: str) -> None:
    holder = _make(kind, redis)
    waiters: list[LeaseHolder] = []
    releaser: asyncio.Task[None] | None = None
    stop = False

    async def release_once_queued() -> None:
        # The holder releases as soon as the waiter has queued: the waiter then
        # completes, through its subscribe, its wake-up and its confirmation.
        while not stop:
            if await redis.zcard(_queue(kind)):
                await holder.release()
                return
            await asyncio.sleep(0)

    async def arm() -> None:
        nonlocal holder, releaser, stop
        holder = _make(kind, redis)
        assert await holder.acquire()
        stop = False
        releaser = asyncio.create_task(release_once_queued())
        waiters.clear()

    async def acquire() -> bool:
        waiter = _make(kind, redis, blocking_timeout=10, poll_interval=5)
        waiters.append(waiter)
        return await waiter.acquire()

    async def check(step: int, outcome: Outcome[bool]) -> None:
        nonlocal stop
        stop = True
        assert releaser is not None
        await releaser
        if outcome.cancelled:
            assert all(w.lease is None for w in waiters)
            expected = set() if holder.lease is None else {holder.lease.token}
            assert await _holders(redis, kind) == expected  # never the cancelled caller
        else:
            assert outcome.result is True
            await waiters[0].release()
        await _next_waiter_served(redis, kind, holder)

    steps = await _run(redis, arm, acquire, check)
    assert steps > 5


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
@pytest.mark.parametrize("operation", ["release", "extend"])
async def test_cancel_a_release_or_extend_at_every_step(
    redis: Any, kind: str, operation: str
) -> None:
    holder = _make(kind, redis)
    nxt: LeaseHolder = holder
    waiting: asyncio.Task[bool] | None = None

    async def arm() -> None:
        nonlocal holder, nxt, waiting
        holder = _make(kind, redis)
        assert await holder.acquire()
        nxt = _make(kind, redis, blocking_timeout=5, poll_interval=30)
        waiting = asyncio.create_task(nxt.acquire())
        for _ in range(1000):
            if await redis.zcard(_queue(kind)):
                break
            await asyncio.sleep(0.001)

    async def call() -> None:
        if operation == "release":
            await holder.release()
        else:
            await holder.extend(20)

    async def check(step: int, outcome: Outcome[None]) -> None:
        assert waiting is not None
        lease = holder.lease
        if operation == "release" and lease is not None:
            # Cancelled before it started (nothing was sent): the object still holds
            # the lease and can release it.
            assert outcome.cancelled
            assert await _holders(redis, kind) == {lease.token}
        if operation == "extend":
            assert lease is not None
            assert await _holders(redis, kind) == {lease.token}  # still the holder's
        if holder.lease is not None:
            await holder.release()
        started = time.monotonic()
        assert await asyncio.wait_for(waiting, 5)  # woken by the release, wherever cancelled
        assert time.monotonic() - started < BOUND
        assert holder.lease is None
        assert nxt.lease is not None
        assert await _holders(redis, kind) == {nxt.lease.token}  # not the old token
        await nxt.release()

    steps = await _run(redis, arm, call, check)
    assert steps > 1


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
async def test_a_cancel_swallowed_below_the_subscribe_still_cancels_the_acquire(
    redis: Any, backend: Backend, kind: str, monkeypatch: pytest.MonkeyPatch
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
        await holder.release()  # were the cancel lost, the waiter would get the lease now
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waiter.lease is None
        assert await _holders(redis, kind) == set()
        await _settled(redis, baseline)
