"""The executor's guards: the in-flight bound (Slots) and deadlines, in process, no Redis."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from aiocache_patterns._redis.guards import RECANCEL, TICK, Deadlines, Slots


async def test_waiters_get_slots_in_arrival_order() -> None:
    slots = Slots(1)
    assert slots.try_take()
    order: list[int] = []

    async def wait(i: int) -> None:
        await slots.take()
        order.append(i)
        slots.give_back()

    tasks = [asyncio.create_task(wait(i)) for i in range(5)]
    await asyncio.sleep(0)
    slots.give_back()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert slots.busy == 0


async def test_a_waiter_cancelled_just_before_a_give_back() -> None:
    """The give-back skips (and drops) the cancelled waiter; the waiter's own clean-up
    must not fail on it, and the slot must not be lost."""
    slots = Slots(1)
    assert slots.try_take()
    waiting = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    waiting.cancel()  # its future is cancelled now; the task has not run yet
    slots.give_back()  # drops that waiter, frees the slot
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.busy == 0
    assert slots.try_take()


async def test_a_waiter_cancelled_after_the_slot_was_handed_over() -> None:
    slots = Slots(1)
    assert slots.try_take()
    waiting = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    slots.give_back()  # handed to the waiter: busy stays 1
    waiting.cancel()  # ... which is cancelled before it runs: it passes the slot on
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.busy == 0


async def test_a_deadline_fires_again_when_its_cancel_was_swallowed() -> None:
    """asyncio.wait_for on Python 3.11 can swallow a cancellation (gh-86296), and redis-py
    wraps its writes in one: the deadline must not be lost with it."""
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)

    async def call() -> bool:
        task = deadlines.start(0.05)
        try:
            with contextlib.suppress(asyncio.CancelledError):  # swallowed, as wait_for can
                await asyncio.sleep(10)
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return deadlines.caused(task)
        finally:
            deadlines.stop(task)
        return False

    started = loop.time()
    assert await asyncio.wait_for(call(), 5) is True  # a timeout of ours, not another's
    assert loop.time() - started < 0.05 + TICK + RECANCEL + 1.0


async def test_a_cancel_from_elsewhere_is_not_taken_for_a_deadline() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    caused: list[bool] = []

    async def call() -> None:
        task = deadlines.start(5)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            caused.append(deadlines.caused(task))
            raise
        finally:
            deadlines.stop(task)

    task = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert caused == [False]
