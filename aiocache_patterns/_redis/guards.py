"""Cheap guards for a round trip: a bound on calls in flight, and deadlines.

Both exist because the stock tools cost more than a Redis hit can afford on
the hot path: ``asyncio.timeout`` schedules and cancels a timer per call
(about 4 µs here) and ``asyncio.Semaphore`` adds a coroutine per acquire.

* ``Slots`` is a counter with a FIFO of waiters; taking a free slot is one
  comparison.
* ``Deadlines`` keeps the calls in flight in a dict (task -> deadline) and
  checks them from one periodic callback, armed only while calls are in
  flight; an overdue call's task is cancelled and the cancellation is turned
  into a timeout by the call.
  A deadline fires between ``timeout`` and ``timeout + tick`` after the start,
  and again every ``RECANCEL`` until the call is over: on Python 3.11
  ``asyncio.wait_for`` can swallow a cancellation (CPython gh-86296), and
  redis-py wraps every write (the connection handshake's included) in one, so
  a single cancel could leave a call running through redis-py's own socket
  timeouts and retries for a minute.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final

__all__ = ["Deadlines", "Slots"]

#: How often overdue calls are looked for, in seconds.
TICK: Final = 0.025
#: How long after a deadline's cancel a call still running is cancelled again.
RECANCEL: Final = 0.1


class Slots:
    """At most ``size`` holders; the others wait in arrival order."""

    __slots__ = ("_busy", "_size", "_waiters")

    def __init__(self, size: int) -> None:
        self._size = size
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def busy(self) -> int:
        return self._busy

    def try_take(self) -> bool:
        if self._busy < self._size and not self._waiters:
            self._busy += 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # the slot was handed to us as we were cancelled
            elif waiter in self._waiters:
                # (A give_back may already have dropped it: it skips cancelled waiters.)
                self._waiters.remove(waiter)
            raise

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over; busy stays the same
                return
        self._busy -= 1


class Deadlines:
    """One periodic check for every call in flight on a loop.

    A call registers its task with ``start()`` and unregisters it with
    ``stop()`` (one dict insert and delete: no allocation per call). A task
    runs at most one round trip at a time, so the task is the call's handle.
    """

    __slots__ = ("_active", "_armed", "_expired", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: task -> when its call is overdue (loop time)
        self._active: dict[asyncio.Task[Any], float] = {}
        #: task -> [its cancel count just before we first cancelled it, our cancels]
        self._expired: dict[asyncio.Task[Any], list[int]] = {}
        self._armed = False

    def start(self, timeout: float) -> asyncio.Task[Any]:
        task = asyncio.current_task(self._loop)
        if task is None:  # pragma: no cover - always called from a task
            raise RuntimeError("deadlines need a running task")
        self._active[task] = self._loop.time() + timeout
        if not self._armed:
            self._armed = True
            self._loop.call_later(TICK, self._check)
        return task

    def stop(self, task: asyncio.Task[Any]) -> None:
        self._active.pop(task, None)
        self._expired.pop(task, None)

    def caused(self, task: asyncio.Task[Any]) -> bool:
        """Whether the task's cancellation is our deadline's doing (and nobody else's)."""
        self._active.pop(task, None)  # no more cancels: the call is ending
        expired = self._expired.pop(task, None)
        if expired is None:
            return False
        baseline, cancels = expired
        uncancel = getattr(task, "uncancel", None)
        if uncancel is None:  # Python 3.10: no cancel counting
            return True
        left = baseline
        for _ in range(cancels):
            left = int(uncancel())
        return left <= baseline

    def _check(self) -> None:
        now = self._loop.time()
        overdue = [task for task, at in self._active.items() if at <= now]
        for task in overdue:
            if task.done():
                del self._active[task]
                continue
            expired = self._expired.get(task)
            if expired is None:
                cancelling = getattr(task, "cancelling", None)
                self._expired[task] = [int(cancelling()) if cancelling is not None else 0, 1]
            else:
                expired[1] += 1  # the last cancel was swallowed: cancel again
            self._active[task] = now + RECANCEL
            task.cancel()
        if self._active:
            self._loop.call_later(TICK, self._check)
        else:
            self._armed = False
