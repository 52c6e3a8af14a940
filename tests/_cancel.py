"""Cancel a coroutine at every await point it reaches, one run per point.

::

    async def start() -> bool:
        return await Lock(redis, "x", blocking_timeout=1).acquire()

    async def check(step: int, outcome: Outcome[bool]) -> None:
        ...  # the invariants: nothing held, next waiter served, no leak

    steps = await cancel_at_each_step(start, check)

For ``step`` = 0, 1, 2, ...: ``start()`` runs in a task of its own, the event
loop turns ``step`` times (``sleep(0)``), the task is cancelled, and once it
has ended ``check(step, outcome)`` runs. It stops at the first step where the
task had already finished before the cancel (it ran to its end: every await
point before it has been cancelled once); that step is returned.

The loop's turns are not a fixed number of awaits when I/O is involved (a
reply takes as many turns as it takes), so a run over a real socket visits the
await points in order, some of them several times. ``outcome.cancelled`` says
whether the cancel landed; a cancelled call must raise ``CancelledError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Outcome", "cancel_at_each_step"]

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How one run ended."""

    #: The task was cancelled before it finished (it raised CancelledError).
    cancelled: bool
    #: Whether the cancel was sent (False on the last step: it had finished).
    cancel_sent: bool
    #: Its result, if it returned one.
    result: T | None = None
    #: Its exception, if it raised something other than CancelledError.
    error: BaseException | None = None


async def cancel_at_each_step(
    start: Callable[[], Awaitable[T]],
    check: Callable[[int, Outcome[T]], Awaitable[None]],
    *,
    max_steps: int = 2000,
) -> int:
    """Run, cancel after ``step`` turns of the loop, check; for every step until one
    completes uncancelled. Returns the number of that last step."""
    for step in range(max_steps):
        task = asyncio.ensure_future(start())
        for _ in range(step):
            if task.done():
                break
            await asyncio.sleep(0)
        sent = not task.done()
        if sent:
            task.cancel()
        try:
            result = await task
        except asyncio.CancelledError:
            if not sent:  # pragma: no cover - the call cancelled itself
                raise
            outcome: Outcome[T] = Outcome(cancelled=True, cancel_sent=True)
        except Exception as exc:
            outcome = Outcome(cancelled=False, cancel_sent=sent, error=exc)
        else:
            outcome = Outcome(cancelled=False, cancel_sent=sent, result=result)
        await check(step, outcome)
        if not sent:
            return step
    raise AssertionError(f"the call did not complete within {max_steps} loop turns")
