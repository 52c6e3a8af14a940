"""In-process request coalescing: one call in flight per key.

The first caller of ``SingleFlight.do()`` for a key starts the work in a task
of its own; callers that arrive while it runs wait for the same result. When it
ends, the key is forgotten: results and errors are never remembered, so the
next call runs afresh.

Cancellation: a caller that is cancelled stops waiting, and only that; the
shared work runs on for the others. When the last waiter is gone the work is
cancelled, since nobody wants its result, and the key is released at once so a
newcomer starts fresh work rather than joining a dying one.

This is Go's ``singleflight.Group`` for asyncio. ``Cache.get_or_load`` uses one
per cache, so a thousand concurrent misses on a key make one loader call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight", "SingleFlightStats"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SingleFlightStats:
    """A snapshot of a [`SingleFlight`][aiocache_patterns.SingleFlight]'s counters."""

    #: Keys with work in flight right now.
    in_flight: int
    #: Calls that started work.
    calls: int
    #: Calls that joined work already in flight instead of starting their own.
    coalesced: int


class _Flight(Generic[T]):
    """One call in flight: its task, and a future per caller waiting for it.

    Each caller waits on a future of its own (cheaper than a shield per
    caller, and a cancelled caller cancels only its own future).
    """

    __slots__ = ("futures", "task", "waiters")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.waiters = 0
        self.futures: list[asyncio.Future[T]] = []
        task.add_done_callback(self._settle)

    def _settle(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            for future in self.futures:
                future.cancel()
            return
        exc = task.exception()  # also marks it retrieved
        for future in self.futures:
            if future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(task.result())


class SingleFlight:
    """Coalesce concurrent calls that share a key.

    >>> flights = SingleFlight()
    >>> async def load() -> str: ...
    >>> value = await flights.do("user:1", load)  # doctest: +SKIP
    """

    __slots__ = ("_calls", "_coalesced", "_flights")

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[Any]] = {}
        self._calls = 0
        self._coalesced = 0

    async def do(self, key: Hashable, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` unless a call for ``key`` is in flight; either way return
        its result.

        Every caller gets the result, or the exception, of the one call. (Passing
        ``args`` rather than a ``lambda`` spares each caller that joins a closure.)
        """
        value, _ = await self.do_shared(key, fn, *args)
        return value

    async def do_shared(
        self, key: Hashable, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> tuple[T, bool]:
        """Like ``do()``, and also tell whether this caller joined someone else's call."""
        flight: _Flight[T] | None = self._flights.get(key)
        shared = flight is not None
        if flight is None:
            flight = self._start(key, fn, args)
        else:
            self._coalesced += 1
        flight.waiters += 1
        future: asyncio.Future[T] = flight.task.get_loop().create_future()
        flight.futures.append(future)
        try:
            return await future, shared
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # Nobody is left to want the result.
                self._release(key, flight)
                flight.task.cancel()

    def _start(
        self, key: Hashable, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]
    ) -> _Flight[T]:
        # Apart from do_shared: the closure below would otherwise cost every caller
        # of do_shared, joiners included, a cell per variable it captures.
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        task = asyncio.ensure_future(_call(fn, *args))
        flight = _Flight(task)
        self._flights[key] = flight
        task.add_done_callback(lambda _: self._release(key, flight))
        self._calls += 1
        return flight

    def forget(self, key: Hashable) -> None:
        """Let the next call for ``key`` start fresh work, even if one is in flight.

        Callers already waiting keep waiting for the work they joined.
        """
        self._flights.pop(key, None)

    def in_flight(self, key: Hashable) -> bool:
        """Whether work for ``key`` is running."""
        return key in self._flights

    @property
    def stats(self) -> SingleFlightStats:
        """Counters since construction, as a frozen snapshot."""
        return SingleFlightStats(len(self._flights), self._calls, self._coalesced)

    def _release(self, key: Hashable, flight: _Flight[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


async def _call(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)
