"""The executor's guards: the in-flight bound (Slots), in process, no Redis needed."""

from __future__ import annotations

import asyncio

import pytest

from aiocache_patterns._guards import Slots


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
