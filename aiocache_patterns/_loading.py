"""The engine behind ``Cache.get_or_load``: one load per key, however many callers.

* in this process, :class:`~aiocache_patterns.SingleFlight` coalesces callers;
* across processes, the recompute lock (:mod:`aiocache_patterns.stampede`)
  makes one process load while the others wait to be woken;
* near expiry, XFetch or ``refresh_after`` refresh early (the caller waits, or
  a background task does it);
* within the stale grace, stale values are served while one caller refreshes,
  or when the loader fails.

A load that an invalidation overtook (``delete``/``set``/``write_through`` of
the same key while it ran) returns its value to its callers but does not
store it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._codec import MISS, Entry
from ._entries import EntryIO
from .errors import RedisUnavailable
from .singleflight import SingleFlight
from .stampede import RecomputeLock, new_token, xfetch_due

__all__ = ["Loader", "await_result"]

logger = logging.getLogger("aiocache_patterns.cache")

T = TypeVar("T")


class Loader:
    """One cache's loads: who loads, who waits, who gets what."""

    def __init__(
        self,
        io: EntryIO,
        lock: RecomputeLock | None,
        *,
        lock_timeout: float,
        beta: float,
        refresh_after: float | None,
        random: Callable[[], float],
    ) -> None:
        self._io = io
        self._counters = io.counters
        self._lock = lock
        self._lock_timeout = lock_timeout
        self._beta = beta
        self._refresh_after = refresh_after
        self._random = random
        self._flights = SingleFlight()
        #: ``self._fill``, bound once rather than once per missing caller.
        self._bound_fill = self._fill
        self._load_tokens: dict[bytes, object] = {}
        self._refreshing: set[bytes] = set()
        #: Background refreshes (cancelled on close) and lock releases (awaited on close).
        self.tasks: set[asyncio.Task[Any]] = set()
        self.cleanups: set[asyncio.Future[None]] = set()
        self._closed = False

    async def get_or_load(self, rkey: bytes, loader: Callable[[], Awaitable[T]], ttl: float) -> T:
        try:
            raw = await self._io.executor.get(rkey, self._io.timeout)
        except RedisUnavailable as exc:
            self._io.redis_failed("get_or_load", exc)
            self._counters.misses += 1
            return await self._flights.do(rkey, self._call, loader)
        entry = self._io.decode(rkey, raw)
        if entry is not None:
            now = self._io.now()
            if now < entry.fresh_until:
                self._counters.hits += 1
                if self._refresh_due(now, entry) and not self._flights.in_flight(rkey):
                    if self._refresh_after is not None:
                        self._refresh_in_background(rkey, loader, ttl, entry)
                    else:
                        self._counters.early_recomputes += 1
                        return await self._flights.do(
                            rkey, self._recompute, rkey, loader, ttl, entry
                        )
                return entry.value  # type: ignore[no-any-return]
            # Stale, within the grace: one caller refreshes, the others get it as it is.
            self._counters.misses += 1
            if self._flights.in_flight(rkey):
                self._counters.stale_served += 1
                return entry.value  # type: ignore[no-any-return]
            return await self._flights.do(rkey, self._recompute, rkey, loader, ttl, entry)
        self._counters.misses += 1
        # (No lambdas in this method: a variable a closure captures becomes a cell,
        # allocated on every call, hits included.)
        value: T
        value, shared = await self._flights.do_shared(rkey, self._bound_fill, rkey, loader, ttl)
        if shared:
            self._counters.coalesced += 1
        return value

    def invalidate(self, rkey: bytes) -> None:
        """Loads of ``rkey`` running now must not write their (older) value."""
        self._load_tokens.pop(rkey, None)
        self._flights.forget(rkey)

    async def aclose(self) -> None:
        """Cancel background refreshes, give their locks back, start no more."""
        self._closed = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.cleanups:
            await asyncio.gather(*self.cleanups, return_exceptions=True)

    # -- who loads -----------------------------------------------------------------

    def _refresh_due(self, now: float, entry: Entry) -> bool:
        if self._refresh_after is not None and now - entry.created >= self._refresh_after:
            return True
        if self._beta == 0 or now < entry.created + (entry.fresh_until - entry.created) / 2:
            # XFetch only in the second half of a value's life: at high read rates
            # its lead (delta * beta * ln(reads)) would otherwise eat short TTLs.
            return False
        return xfetch_due(now, entry.delta, entry.fresh_until, self._beta, 1.0 - self._random())

    async def _fill(self, rkey: bytes, loader: Callable[[], Awaitable[T]], ttl: float) -> T:
        """A miss, for this process: load, or wait for the process that is loading."""
        load_token = self._begin_load(rkey)  # from here on, an invalidation wins over us
        try:
            return await self._fill_or_wait(rkey, loader, ttl, load_token)
        finally:
            self._end_load(rkey, load_token)

    async def _fill_or_wait(
        self, rkey: bytes, loader: Callable[[], Awaitable[T]], ttl: float, load_token: object
    ) -> T:
        lock = self._lock
        if lock is None:
            return await self._load(rkey, loader, ttl, load_token)
        token = new_token()
        try:
            acquired, raw, pttl = await lock.try_acquire(rkey, token)
        except RedisUnavailable as exc:
            self._io.redis_failed("get_or_load", exc)
            return await self._call(loader)
        self._counters.waited += 0 if acquired else 1
        deadline = time.monotonic() + self._lock_timeout
        try:
            async with contextlib.AsyncExitStack() as stack:
                inbox = None
                while True:
                    current = self._io.decode(rkey, raw, count=False)
                    if current is not None and current.fresh_until > self._io.now():
                        # Somebody stored it since our GET: no load (and no lock) needed.
                        if acquired:
                            await self._store(rkey, token, None, 0)
                        return current.value  # type: ignore[no-any-return]
                    if acquired:  # our turn: first, or the loader died or gave up
                        return await self._load_locked(
                            rkey, token, loader, ttl, current, load_token
                        )
                    if inbox is None:
                        inbox = await stack.enter_async_context(lock.waiting(rkey, token))
                    elif (left := deadline - time.monotonic()) <= 0:
                        break
                    elif await inbox.wait(lock.wait_time(pttl, left)) is not None:
                        # The entry was written (or its loader gave up): look.
                        value = self._io.fresh_value(
                            rkey, await self._io.read(rkey, "get_or_load")
                        )
                        if value is not MISS:
                            return value  # type: ignore[no-any-return]
                    acquired, raw, pttl = await lock.try_acquire(rkey, token)
        except RedisUnavailable as exc:
            self._io.redis_failed("get_or_load", exc)
        # Waited long enough (nginx's proxy_cache_lock_timeout): stale if any, else load.
        current = self._io.decode(rkey, raw, count=False)
        if current is not None:
            self._counters.stale_served += 1
            return current.value  # type: ignore[no-any-return]
        return await self._load(rkey, loader, ttl, load_token)

    async def _recompute(
        self, rkey: bytes, loader: Callable[[], Awaitable[T]], ttl: float, entry: Entry
    ) -> T:
        """Refresh an entry that exists (fresh or stale); never waits for another process."""
        load_token = self._begin_load(rkey)
        try:
            lock = self._lock
            if lock is None:
                return await self._load(rkey, loader, ttl, load_token, fallback=entry)
            token = new_token()
            try:
                acquired, raw, _ = await lock.try_acquire(rkey, token)
            except RedisUnavailable as exc:
                self._io.redis_failed("get_or_load", exc)
                return await self._call(loader)
            current = self._io.decode(rkey, raw, count=False) or entry
            if acquired and not (
                current.created > entry.created and current.fresh_until > self._io.now()
            ):
                return await self._load_locked(rkey, token, loader, ttl, entry, load_token)
            if acquired:  # somebody refreshed it since our GET: nothing to do
                await self._store(rkey, token, None, 0)
            elif current.fresh_until <= self._io.now():
                self._counters.stale_served += 1  # another process is refreshing it
            return current.value  # type: ignore[no-any-return]
        finally:
            self._end_load(rkey, load_token)

    def _refresh_in_background(
        self, rkey: bytes, loader: Callable[[], Awaitable[Any]], ttl: float, entry: Entry
    ) -> None:
        if self._closed or rkey in self._refreshing:
            return
        self._refreshing.add(rkey)
        self._counters.refreshes += 1
        task = asyncio.get_running_loop().create_task(
            self._flights.do(rkey, self._recompute, rkey, loader, ttl, entry)
        )
        self.tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self.tasks.discard(task)
            self._refreshing.discard(rkey)
            if not task.cancelled() and task.exception() is not None:
                logger.warning("background refresh of %r failed: %r", rkey[:200], task.exception())

        task.add_done_callback(done)

    # -- loading -------------------------------------------------------------------

    async def _load_locked(
        self,
        rkey: bytes,
        token: bytes,
        loader: Callable[[], Awaitable[T]],
        ttl: float,
        fallback: Entry | None,
        load_token: object,
    ) -> T:
        """Load while holding the recompute lock; store, release and wake waiters in one go."""
        assert self._lock is not None
        try:
            async with self._lock.held(rkey, token):
                value, delta = await self._timed(loader)
        except BaseException as exc:
            # Give the lock back and wake the waiters, even if we were cancelled.
            store = asyncio.ensure_future(self._store(rkey, token, None, 0))
            self.cleanups.add(store)
            store.add_done_callback(self.cleanups.discard)
            if isinstance(exc, Exception) and fallback is not None:
                return self._serve_fallback(rkey, fallback, exc)  # type: ignore[no-any-return]
            raise
        data, px = self._io.codec.encode(value, ttl, delta, rkey)
        still_valid = self._load_tokens.get(rkey) is load_token  # no invalidation since
        await self._store(rkey, token, data if still_valid else None, px)
        return value

    async def _load(
        self,
        rkey: bytes,
        loader: Callable[[], Awaitable[T]],
        ttl: float,
        load_token: object,
        fallback: Entry | None = None,
    ) -> T:
        """Load and store without the recompute lock."""
        try:
            value, delta = await self._timed(loader)
        except Exception as exc:
            if fallback is not None:
                return self._serve_fallback(rkey, fallback, exc)  # type: ignore[no-any-return]
            raise
        data, px = self._io.codec.encode(value, ttl, delta, rkey)
        if self._load_tokens.get(rkey) is load_token:  # not invalidated while loading
            await self._io.write(rkey, data, px, "store")
        return value

    async def _timed(self, loader: Callable[[], Awaitable[T]]) -> tuple[T, float]:
        started = time.perf_counter()
        value = await self._call(loader)
        return value, time.perf_counter() - started

    async def _call(self, loader: Callable[[], Awaitable[T]]) -> T:
        self._counters.loads += 1
        try:
            return await await_result(loader(), "loader")
        except Exception:
            self._counters.errors += 1
            raise

    def _serve_fallback(self, rkey: bytes, fallback: Entry, exc: Exception) -> Any:
        """stale-if-error: the loader failed, but there is a value to serve."""
        logger.warning("loader for %r failed (%r); serving the cached value", rkey[:200], exc)
        if fallback.fresh_until <= self._io.now():
            self._counters.stale_served += 1
        return fallback.value

    async def _store(self, rkey: bytes, token: bytes, data: bytes | None, px: int) -> None:
        assert self._lock is not None
        try:
            await self._lock.store(rkey, token, data, px)
        except RedisUnavailable as exc:
            self._io.redis_failed("store", exc)

    def _begin_load(self, rkey: bytes) -> object:
        """Start a load of ``rkey``; an invalidation from now on makes it not store."""
        load_token = self._load_tokens[rkey] = object()
        return load_token

    def _end_load(self, rkey: bytes, load_token: object) -> None:
        if self._load_tokens.get(rkey) is load_token:
            del self._load_tokens[rkey]


async def await_result(result: Awaitable[T], argname: str) -> T:
    """Await what a user's async callable returned, refusing a non-awaitable clearly."""
    if not inspect.isawaitable(result):
        raise TypeError(f"{argname} must be an async function (it returned a non-awaitable)")
    return await result
