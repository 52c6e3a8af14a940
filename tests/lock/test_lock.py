"""Distributed Lock: exclusion, fencing, hand-off, expiry, renewal, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from aiocache_patterns import Lock, LockError, LockLost, LockNotAcquired, LockNotOwned
from aiocache_patterns._redis.executor import executor_for
from aiocache_patterns._redis.notify import notifier_for
from aiocache_patterns.lock import _leases as leases
from tests._backends import Backend
from tests._helpers import ttls_ms


async def test_mutual_exclusion_and_fair_hand_off(redis: Any) -> None:
    holder: int | None = None
    overlaps = 0
    order: list[int] = []
    tokens: list[int] = []

    async def worker(i: int) -> None:
        nonlocal holder, overlaps
        for _ in range(5):
            async with Lock(redis, "res", ttl=5, blocking_timeout=20) as lease:
                if holder is not None:
                    overlaps += 1
                holder = i
                order.append(i)
                tokens.append(lease.fencing_token)
                await asyncio.sleep(0.001)
                holder = None

    await asyncio.gather(*(worker(i) for i in range(10)))
    assert overlaps == 0
    assert len(order) == 50
    changes = sum(1 for a, b in itertools.pairwise(order) if a != b)
    assert changes >= 40  # a releaser does not barge back in ahead of the queue
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)
    ttls = await ttls_ms(redis)
    assert all(ttl > 0 for ttl in ttls.values()), ttls  # nothing immortal


async def test_release_by_an_expired_holder_leaves_the_new_lock_intact(redis: Any) -> None:
    old = Lock(redis, "inv", ttl=0.1)
    assert await old.acquire()
    await asyncio.sleep(0.2)
    new = Lock(redis, "inv", ttl=5, blocking_timeout=0)
    assert await new.acquire()
    with pytest.raises(LockNotOwned):
        await old.extend(5)
    with pytest.raises(LockNotOwned):
        await old.release()
    assert await new.owned()
    assert await new.locked()
    assert new.lease is not None
    assert old.lease is None
    await new.extend(1)
    await new.release()
    assert not await new.locked()


async def test_fencing_tokens_strictly_increase_even_if_the_counter_is_lost(redis: Any) -> None:
    seen: list[int] = []
    for i in range(5):
        lock = Lock(redis, "fence")
        async with lock as lease:
            seen.append(lease.fencing_token)
        if i == 2:
            await redis.delete(b"lock:{fence}:fence")  # expiry, or a failover losing writes
    assert seen == sorted(seen)
    assert len(set(seen)) == 5
    assert all(isinstance(t, int) and t > 0 for t in seen)


async def test_try_once_and_blocking_timeout(redis: Any) -> None:
    holder = Lock(redis, "busy", ttl=5)
    assert await holder.acquire()
    started = time.monotonic()
    assert not await Lock(redis, "busy", blocking_timeout=0).acquire()
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    with pytest.raises(LockNotAcquired) as info:
        async with Lock(redis, "busy", blocking_timeout=0.3):
            pytest.fail("must not get here")
    assert isinstance(info.value, TimeoutError)
    assert 0.25 <= time.monotonic() - started < 2.0
    await holder.release()


async def test_an_expired_lease_lets_the_next_waiter_in_at_once(redis: Any) -> None:
    crashed = Lock(redis, "exp", ttl=0.3)
    assert await crashed.acquire()  # and never releases: its process "died"
    started = time.monotonic()
    # A poll interval far longer than the lease: only the lease's own expiry can wake us.
    waiter = Lock(redis, "exp", ttl=5, blocking_timeout=10, poll_interval=30)
    assert await waiter.acquire()
    assert time.monotonic() - started < 1.5
    await waiter.release()


async def test_release_wakes_a_waiter_without_polling(redis: Any) -> None:
    first = Lock(redis, "wake", ttl=30)
    assert await first.acquire()
    waiter = Lock(redis, "wake", blocking_timeout=10, poll_interval=30)
    task = asyncio.create_task(waiter.acquire())
    await asyncio.sleep(0.1)
    released = time.monotonic()
    await first.release()
    assert await task
    assert time.monotonic() - released < 1.0  # not the 30 s poll
    assert waiter.lease is not None
    assert first.lease is None
    await waiter.release()


async def test_a_releaser_does_not_barge_ahead_of_a_waiter(redis: Any) -> None:
    a = Lock(redis, "barge", blocking_timeout=5)
    b = Lock(redis, "barge", blocking_timeout=5)
    assert await a.acquire()
    b_task = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.05)
    await a.release()
    again = asyncio.create_task(a.acquire())
    assert await b_task
    await asyncio.sleep(0.05)
    assert not again.done()  # a queues behind b
    await b.release()
    assert await again
    await a.release()


async def test_a_cancelled_waiter_leaves_the_lock_usable(redis: Any) -> None:
    holder = Lock(redis, "cw", ttl=5)
    assert await holder.acquire()
    waiter = Lock(redis, "cw", blocking_timeout=10)
    task = asyncio.create_task(waiter.acquire())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await holder.release()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    nxt = Lock(redis, "cw", blocking_timeout=5)
    assert await nxt.acquire()  # not stuck behind the cancelled waiter's place in line
    assert time.monotonic() - started < 1.0
    await nxt.release()


async def test_cancelling_an_acquire_never_leaves_a_lock_behind(redis: Any) -> None:
    for delay in (0, 1, 2, 3, 5, 8):
        lock = Lock(redis, "ca", ttl=30)
        task = asyncio.create_task(lock.acquire())
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        (result,) = await asyncio.gather(task, return_exceptions=True)
        if result is True:  # it finished before the cancel landed: a normal holder
            assert lock.lease is not None
            await lock.release()
            continue
        assert isinstance(result, asyncio.CancelledError)
        assert lock.lease is None
        # Whether or not the SET ran, the lease is given back promptly (not after 30 s).
        for _ in range(100):
            if not await lock.locked():
                break
            await asyncio.sleep(0.01)
        assert not await lock.locked(), delay


async def test_cancelling_during_release_still_releases(redis: Any) -> None:
    """redis-py #3847: a release cancelled half-way must not wedge the lock."""
    for delay in (1, 2, 3):
        lock = Lock(redis, "cr", ttl=30)
        assert await lock.acquire()
        task = asyncio.create_task(lock.release())
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert lock.lease is None  # the release had started, so it completes
        nxt = Lock(redis, "cr", blocking_timeout=2)
        assert await nxt.acquire()
        await nxt.release()


async def test_a_release_cancelled_before_it_started_can_be_retried(redis: Any) -> None:
    lock = Lock(redis, "cr0", ttl=30)
    assert await lock.acquire()
    task = asyncio.create_task(lock.release())
    task.cancel()  # before it ever ran: nothing was sent
    await asyncio.gather(task, return_exceptions=True)
    assert lock.lease is not None
    assert await lock.owned()
    await lock.release()
    assert not await lock.locked()


async def test_auto_renew_keeps_the_lease(redis: Any) -> None:
    lock = Lock(redis, "renew", ttl=0.3, auto_renew=True)
    async with lock as lease:
        await asyncio.sleep(0.8)
        assert await lock.owned()
        assert not lease.lost.is_set()
    assert not await lock.locked()


async def test_lost_lease_is_reported_and_can_cancel_the_block(redis: Any) -> None:
    lock = Lock(redis, "lost", ttl=0.3, auto_renew=True)
    # without cancel_on_loss the block runs on, and leaving it reports the lost lease
    with pytest.raises(LockNotOwned):
        async with lock as lease:
            await redis.delete(b"lock:{lost}")  # someone broke the lock
            await asyncio.wait_for(lease.lost.wait(), 2)
    strict = Lock(redis, "lost2", ttl=0.3, auto_renew=True, cancel_on_loss=True)
    ran_to_end = False
    with pytest.raises(LockLost):
        async with strict:
            await redis.delete(b"lock:{lost2}")
            await asyncio.sleep(2)
            ran_to_end = True
    assert not ran_to_end


async def test_lost_lease_without_renewal_raises_on_exit(redis: Any) -> None:
    with pytest.raises(LockNotOwned):
        async with Lock(redis, "short", ttl=0.05):
            await asyncio.sleep(0.15)


async def test_one_object_is_one_lease(redis: Any) -> None:
    lock = Lock(redis, "one")
    assert await lock.acquire()
    with pytest.raises(LockError, match="already holds"):
        await lock.acquire()
    await lock.release()
    with pytest.raises(LockNotOwned):
        await lock.release()
    with pytest.raises(LockNotOwned):
        await lock.extend()
    assert await lock.acquire()  # reusable after release, with a new token
    await lock.release()


async def test_decoding_client(redis_decoded: Any) -> None:
    lock = Lock(redis_decoded, "dec", blocking_timeout=1)
    async with lock as lease:
        assert lease.fencing_token > 0
        assert await lock.owned()
        other = Lock(redis_decoded, "dec", blocking_timeout=0)
        assert not await other.acquire()
    assert not await lock.locked()


async def test_no_subscription_outlives_its_waiters(redis: Any) -> None:
    holder = Lock(redis, "subs", ttl=5)
    assert await holder.acquire()
    waiters = [Lock(redis, "subs", blocking_timeout=5) for _ in range(5)]
    tasks = [asyncio.create_task(w.acquire()) for w in waiters]
    await asyncio.sleep(0.1)
    assert notifier_for(redis).channels == {b"lock:{subs}:wake"}
    await holder.release()
    for task, waiter in zip(tasks, waiters, strict=True):
        await task
        await waiter.release()
    for _ in range(300):  # generous: the clean-up is a background task
        if not notifier_for(redis).channels:
            break
        await asyncio.sleep(0.01)
    assert notifier_for(redis).channels == frozenset()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ttl": 0}, ValueError, "ttl"),
        ({"ttl": -1}, ValueError, "ttl"),
        ({"ttl": "30"}, TypeError, "ttl"),
        ({"blocking_timeout": -1}, ValueError, "blocking_timeout"),
        ({"blocking_timeout": float("nan")}, ValueError, "blocking_timeout"),
        ({"auto_renew": 1}, TypeError, "auto_renew"),
        ({"cancel_on_loss": True}, ValueError, "cancel_on_loss"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"poll_interval": 0}, ValueError, "poll_interval"),
        ({"namespace": ""}, ValueError, "namespace"),
    ],
)
def test_bad_arguments(
    redis: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Lock(redis, "x", **kwargs)


@pytest.mark.parametrize(("name", "error"), [("", ValueError), (b"", ValueError), (5, TypeError)])
def test_bad_names(redis: Any, name: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="name"):
        Lock(redis, name)


async def test_bad_blocking_timeout_at_call(redis: Any) -> None:
    with pytest.raises(ValueError, match="blocking_timeout"):
        await Lock(redis, "x").acquire(blocking_timeout=-2)


async def test_a_resent_release_is_not_reported_as_lost(redis: Any) -> None:
    """redis-py resends a command whose reply was lost; a release that already ran
    must not then say the lock was taken over."""
    lock = Lock(redis, "resend", ttl=30)
    assert await lock.acquire()
    assert lock.lease is not None
    token = lock.lease.token
    await lock.release()
    # the same script again, as a retry would send it: the same reply as the first
    reply = await lock._run(lock._RELEASE, *lock._release_args(token))
    assert [int(x) for x in reply] == [1, 1]
    # but a holder that never released (its lease simply expired) still hears "not yours"
    stale = Lock(redis, "resend2", ttl=0.05)
    assert await stale.acquire()
    await asyncio.sleep(0.1)
    with pytest.raises(LockNotOwned):
        await stale.release()


async def _waiting_behind(redis: Any, waiter: Lock) -> asyncio.Task[bool]:
    task = asyncio.create_task(waiter.acquire())
    for _ in range(500):
        if await redis.zcard(b"lock:{h}:q"):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # subscribed, and asleep until woken
    return task


async def test_a_waiter_in_another_process_confirms_its_hand_off_from_redis(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter the releaser cannot tell in memory (another process) is woken by a
    hint and confirms with one round trip, which also stretches its lease to ttl."""
    monkeypatch.setattr(leases, "hand_over_locally", lambda *args: False)
    releasing, waiting = await backend.client(), await backend.client()
    holder = Lock(releasing, "h", ttl=30)
    assert await holder.acquire()
    assert holder.lease is not None
    fence = holder.lease.fencing_token
    waiter = Lock(waiting, "h", ttl=30, blocking_timeout=5, poll_interval=30)
    task = await _waiting_behind(waiting, waiter)
    trips = executor_for(waiting).round_trips
    await holder.release()
    assert await task
    assert executor_for(waiting).round_trips == trips + 1  # the confirmation
    assert waiter.lease is not None
    assert waiter.lease.fencing_token > fence
    assert await waiting.pttl(b"lock:{h}") > 20_000  # the full ttl, not the hand-off lease
    await waiter.release()


async def test_a_waiter_in_the_releasers_process_is_handed_the_lock_without_a_round_trip(
    backend: Backend,
) -> None:
    releasing, waiting = await backend.client(), await backend.client()
    holder = Lock(releasing, "h", ttl=30)
    assert await holder.acquire()
    waiter = Lock(waiting, "h", ttl=30, blocking_timeout=5, poll_interval=30)
    task = await _waiting_behind(waiting, waiter)
    trips = executor_for(waiting).round_trips
    await holder.release()
    assert await task
    assert executor_for(waiting).round_trips == trips  # told by the release script's reply
    assert waiter.lease is not None
    # It holds the short hand-off lease (a waiter that died would block others 1 s),
    # stretched to the full ttl a third of the way in.
    assert 0 < await waiting.pttl(b"lock:{h}") <= 1000
    await asyncio.sleep(0.6)
    assert await waiting.pttl(b"lock:{h}") > 20_000
    assert await waiter.owned()
    await waiter.release()
