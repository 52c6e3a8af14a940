"""The engine behind ``Cache.get_or_load``: one load per key, however many callers.

* in this process, ``SingleFlight`` coalesces callers;
* across processes, the recompute lock (``aiocache_patterns.stampede``)
  makes one process load while the others wait to be woken;
* near expiry, XFetch or ``refresh_after`` refresh early (the caller waits, or
  a background task does it);
* within the stale grace, stale values are served while one caller refreshes,
  or when the loader fails.

A load that an invalidation overtook (``delete``/``set``/``write_through`` of
the same key while it ran) returns its value to its callers but does not
store it; an invalidation that comes while a store is on its way waits for it,
so it lands after it.

Every way out after the recompute lock may have been taken gives it back and
wakes the waiters: a loader error, a value the serializer refuses, a full
Redis refusing the entry, a cancellation (the give-back then runs on in the
background, like a store already under way).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._telemetry import TELEMETRY
from ..errors import CircuitOpen, RedisOutOfMemory, RedisUnavailable
from ..singleflight import SingleFlight
from ._entry import MISS, Entry, EntryIO
from ._recompute import RecomputeLock, new_token, xfetch_due
from ._spec import ABSENT, NO_STORE, Spec
from ._tags import MAGIC_TAGGED, UNKNOWN, TagIndex

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
        tags: TagIndex | None = None,
    ) -> None:
        self._io = io
        self.io = io
        self.tags = tags
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
        #: Loads running under each tag's version key: ``{version key: {rkey: count}}``.
        self._tagged_loads: dict[bytes, dict[bytes, int]] = {}
        self._refreshing: set[bytes] = set()
        #: Background refreshes (cancelled on close) and lock releases (awaited on close).
        self.tasks: set[asyncio.Task[Any]] = set()
        self.cleanups: set[asyncio.Future[Any]] = set()
        #: Stores on their way to Redis, by key: an invalidation waits for them.
        self._storing: dict[bytes, asyncio.Future[Any]] = {}
        #: Keys being read from Redis by a caller of this process, and the callers who
        #: came meanwhile and wait for that read (and its load, on a miss).
        self._reads: dict[bytes, list[asyncio.Future[Any]]] = {}
        self._closed = False
        #: Attributes of ``aiocache_patterns.cache.load.duration``, by outcome (set by Cache).
        self.load_attributes: dict[str, dict[str, str]] = {}

    async def get_or_load(self, rkey: bytes, loader: Callable[[], Awaitable[T]], spec: Spec) -> T:
        if spec.tag_keys:
            return await self._get_or_load_tagged(rkey, loader, spec)
        near = self._io.near
        if near is not None and near.active and (raw := near.lookup(rkey)) is not None:
            return await self._after_read(rkey, loader, spec, raw)  # the near cache's hit
        reads = self._reads
        joiners = reads.get(rkey)
        if joiners is not None:  # a caller of this process is reading this key: share it
            return await self._join_read(joiners, rkey, loader, spec)
        reads[rkey] = joiners = []
        try:
            raw = await self._io.fetch_remote(rkey)
        except RedisUnavailable as exc:
            _settle_joiners(reads, rkey, joiners, (_DOWN, exc))
            self._io.redis_failed("get_or_load", exc)
            self._counters.misses += 1
            return await self._flights.do(rkey, self._call, loader)
        except BaseException:
            _settle_joiners(reads, rkey, joiners, _RETRY)
            raise
        if reads.get(rkey) is joiners:
            del reads[rkey]  # later callers read for themselves
        if not joiners:
            return await self._after_read(rkey, loader, spec, raw)
        if raw is not None:  # each of them decodes a value of its own
            _settle_joiners(reads, rkey, joiners, (_RAW, raw))
            return await self._after_read(rkey, loader, spec, raw)
        # A miss that callers of this process share: they get the load's outcome
        # directly, one wake-up each. The load runs in a task of its own, so cancelling
        # this caller does not cancel what the others wait for.
        self._counters.misses += len(joiners)  # their misses, counted now like ours
        task = asyncio.ensure_future(self._after_read(rkey, loader, spec, raw))
        task.add_done_callback(functools.partial(_settle_from_load, joiners))
        return await asyncio.shield(task)

    async def _get_or_load_tagged(
        self, rkey: bytes, loader: Callable[[], Awaitable[T]], spec: Spec
    ) -> T:
        """``get_or_load`` of a caller with tags: the entry and its tags' versions in one
        round trip (never a near copy: tagged entries are not kept near)."""
        assert self.tags is not None
        try:
            raws = await self.tags.read(rkey, spec.tag_keys)
        except RedisUnavailable as exc:
            self._io.redis_failed("get_or_load", exc)
            self._counters.misses += 1
            return await self._flights.do(rkey, self._call, loader)
        stamp = self.tags.stamp(spec.tag_keys, raws[1:]) or UNKNOWN
        return await self._after_read(rkey, loader, spec, raws[0], stamp)

    async def _join_read(
        self,
        joiners: list[asyncio.Future[Any]],
        rkey: bytes,
        loader: Callable[[], Awaitable[T]],
        spec: Spec,
    ) -> T:
        """Wait for another caller's read of ``rkey`` (and its load, on a miss)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        joiners.append(future)
        outcome = await future
        if outcome is _RETRY:  # the reader was cancelled, or Redis failed it
            return await self.get_or_load(rkey, loader, spec)
        kind, payload = outcome
        if kind is _RAW:  # decoded for this caller: a value of its own
            return await self._after_read(rkey, loader, spec, payload)
        if kind is _DOWN:  # Redis failed the read: fail open, sharing the one load
            self._io.redis_failed("get_or_load", payload)
            self._counters.misses += 1
            return await self._flights.do(rkey, self._call, loader)
        self._counters.coalesced += 1  # (its miss was counted when the read came back)
        if kind is _ERROR:
            raise payload
        return payload  # type: ignore[no-any-return]

    async def _after_read(
        self,
        rkey: bytes,
        loader: Callable[[], Awaitable[T]],
        spec: Spec,
        raw: bytes | None,
        stamp: bytes | None = None,
    ) -> T:
        # ``stamp``: the tag versions to read the entry under (a load makes sure of its
        # own: ``stamped``). A tagged entry read by a caller without tags: its own
        # tags' current versions, a second round trip.
        if stamp is None and raw is not None and raw.startswith(MAGIC_TAGGED):
            try:
                stamp = await self._tagged_read(raw)
            except RedisUnavailable as exc:
                self._io.redis_failed("get_or_load", exc)
                self._counters.misses += 1
                return await self._flights.do(rkey, self._call, loader)
        entry = self._io.decode_as(rkey, raw, stamp, spec.loads)
        if entry is not None:
            now = self._io.now()
            if now < entry.fresh_until:
                self._counters.hits += 1
                if self._refresh_due(now, entry) and not self._flights.in_flight(rkey):
                    if self._refresh_after is not None:
                        self._refresh_in_background(rkey, loader, spec, entry)
                    else:
                        self._counters.early_recomputes += 1
                        return await self._flights.do(
                            rkey, self._recompute, rkey, loader, spec, entry
                        )
                return entry.value  # type: ignore[no-any-return]
            # Stale, within the grace: one caller refreshes, the others get it as it is.
            self._counters.misses += 1
            if self._flights.in_flight(rkey):
                self._counters.stale_served += 1
                return entry.value  # type: ignore[no-any-return]
            return await self._flights.do(rkey, self._recompute, rkey, loader, spec, entry)
        self._counters.misses += 1
        # (No lambdas in this method: a variable a closure captures becomes a cell,
        # allocated on every call, hits included.)
        value: T
        value, shared = await self._flights.do_shared(rkey, self._bound_fill, rkey, loader, spec)
        if shared:
            self._counters.coalesced += 1
        return value

    async def _tagged_read(self, raw: bytes) -> bytes | None:
        """A tagged entry read by a caller without tags: the stamp of its own tags'
        current versions (a second round trip)."""
        assert self.tags is not None
        (stamp,) = await self.tags.stamps_of([raw])
        return stamp

    async def stamped(self, spec: Spec) -> Spec | None:
        """Before a load with tags: the versions to write under, made where missing,
        their keys kept alive as long as the entry. None if Redis failed (fail-open:
        load, serve, store nothing)."""
        if not spec.tag_keys or spec.ensured:
            return spec
        assert self.tags is not None
        try:
            px = self._io.codec.px(spec.ttl)
            stamp = await self.tags.ensure(spec.tag_keys, px)
        except RedisUnavailable as exc:
            self._io.redis_failed("get_or_load", exc)
            return None
        return spec.with_stamp(UNKNOWN if stamp is None else stamp, ensured=True)

    def in_flight(self, rkey: bytes) -> bool:
        """Whether a load of ``rkey`` is running in this process."""
        return self._flights.in_flight(rkey)

    async def fill(self, rkey: bytes, loader: Callable[[], Awaitable[Any]], spec: Spec) -> Any:
        """A miss found by someone else's read (``get_or_load_many``): the rest of
        ``get_or_load``'s way, sharing a load of ``rkey`` already running here.
        ``ABSENT`` from ``loader`` is not stored, and comes back as None."""
        value, shared = await self._flights.do_shared(rkey, self._fill_found, rkey, loader, spec)
        if shared:
            self._counters.coalesced += 1
        return value

    async def _fill_found(
        self, rkey: bytes, loader: Callable[[], Awaitable[Any]], spec: Spec
    ) -> Any:
        value = await self._fill(rkey, loader, spec)
        return None if value is ABSENT else value

    def _encode(
        self, rkey: bytes, value: Any, delta: float, spec: Spec
    ) -> tuple[bytes, int] | None:
        """The entry to store for ``value``; None if it must not be stored (``cache_if``,
        a ``ttl`` callable saying so, or tags whose versions could not be had)."""
        ttl = spec.ttl_for(value)
        if ttl == NO_STORE or spec.stamp is UNKNOWN:
            return None
        data, px = self._io.codec.encode(value, ttl, delta, rkey, spec.stamp)
        if spec.tag_keys and ttl > spec.ttl and self.tags is not None:
            # Longer than the versions were kept for: keep them as long as the entry.
            self.spawn(self.tags.ensure(spec.tag_keys, px, make=False))
        return data, px

    def invalidate(self, rkey: bytes) -> None:
        """Loads of ``rkey`` running now must not write their (older) value (nor may
        reads in flight keep theirs near)."""
        self._load_tokens.pop(rkey, None)
        self._reads.pop(rkey, None)  # callers from now on read for themselves
        self._io.forget([rkey])
        self._flights.forget(rkey)

    async def settled(self, rkeys: list[bytes]) -> None:
        """Wait until no store of these keys is on its way: what is sent next lands after.

        Bounded by the operation timeout, which bounds those stores too.
        """
        storing = self._storing
        if storing:
            pending = [storing[k] for k in rkeys if k in storing]
            if pending:
                await asyncio.wait(pending, timeout=self._io.timeout)

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

    async def _fill(self, rkey: bytes, loader: Callable[[], Awaitable[T]], spec: Spec) -> T:
        """A miss, for this process: load, or wait for the process that is loading."""
        load_token = self._begin_load(rkey, spec.tag_keys)  # an invalidation wins from here
        try:
            stamped = await self.stamped(spec)
            if stamped is None:
                return await self._call(loader)
            return await self._fill_or_wait(rkey, loader, stamped, load_token)
        finally:
            self._end_load(rkey, load_token, spec.tag_keys)

    async def _fill_or_wait(
        self, rkey: bytes, loader: Callable[[], Awaitable[T]], spec: Spec, load_token: object
    ) -> T:
        if self._lock is None:
            return await self._load(rkey, loader, spec, load_token)
        token = new_token()
        try:
            acquired, raw, pttl = await self._acquire(rkey, token)
        except RedisUnavailable as exc:
            self._io.redis_failed("get_or_load", exc)
            return await self._call(loader)
        value: Any = MISS
        if not acquired:
            self._counters.waited += 1
            try:
                acquired, raw, value = await self._wait(rkey, token, raw, pttl, spec)
            except RedisUnavailable as exc:
                self._io.redis_failed("get_or_load", exc)
        if value is not MISS:
            return value  # type: ignore[no-any-return]
        current = self._io.decode(rkey, raw, count=False, spec=spec)
        if acquired:  # our turn: first, or the loader died or gave up
            if current is not None and current.fresh_until > self._io.now():
                # Somebody stored it since our GET: no load (and no lock) needed.
                await self._finish(rkey, token, None, 0)
                return current.value  # type: ignore[no-any-return]
            return await self._load_locked(rkey, token, loader, spec, current, load_token)
        # Waited long enough (nginx's proxy_cache_lock_timeout): stale if any, else load.
        if current is not None:
            self._counters.stale_served += 1
            return current.value  # type: ignore[no-any-return]
        return await self._load(rkey, loader, spec, load_token)

    async def _wait(
        self, rkey: bytes, token: bytes, raw: bytes | None, pttl: int, spec: Spec
    ) -> tuple[bool, bytes | None, Any]:
        """Wait for another process's load: ``(lock taken, entry seen last, value or MISS)``.

        A wake-up is only a hint to look: the value returned is one read from
        Redis, never anything a message says. It comes back with ``MISS`` when
        the lock was taken (the loader died or gave up) or ``lock_timeout`` ran out.
        """
        lock = self._lock
        assert lock is not None
        current = self._io.decode(rkey, raw, count=False, spec=spec)
        if current is not None and current.fresh_until > self._io.now():
            return False, raw, current.value
        deadline = time.monotonic() + self._lock_timeout
        async with lock.waiting(rkey, token) as inbox:
            while True:
                # Again now that we are subscribed (a store in between was not heard),
                # then after every wake-up or wait.
                acquired, raw, pttl = await self._acquire(rkey, token)
                if acquired:
                    return True, raw, MISS
                current = self._io.decode(rkey, raw, count=False, spec=spec)
                if current is not None and current.fresh_until > self._io.now():
                    return False, raw, current.value
                left = deadline - time.monotonic()
                if left <= 0:
                    return False, raw, MISS
                if await inbox.wait(lock.wait_time(pttl, left)) is not None:
                    # The entry was written (or its loader gave up): look.
                    raw_now = await self._io.read(rkey, "get_or_load")
                    value = self._io.fresh_value(rkey, raw_now, spec.stamp, spec.loads)
                    if value is not MISS:
                        return False, raw, value

    async def _recompute(
        self, rkey: bytes, loader: Callable[[], Awaitable[T]], spec: Spec, entry: Entry
    ) -> T:
        """Refresh an entry that exists (fresh or stale); never waits for another process."""
        load_token = self._begin_load(rkey, spec.tag_keys)
        tag_keys = spec.tag_keys
        try:
            stamped = await self.stamped(spec)
            if stamped is None:
                return await self._call(loader)
            spec = stamped
            if self._lock is None:
                return await self._load(rkey, loader, spec, load_token, fallback=entry)
            token = new_token()
            try:
                acquired, raw, _ = await self._acquire(rkey, token)
            except RedisUnavailable as exc:
                self._io.redis_failed("get_or_load", exc)
                return await self._call(loader)
            current = self._io.decode(rkey, raw, count=False, spec=spec) or entry
            if acquired and not (
                current.created > entry.created and current.fresh_until > self._io.now()
            ):
                return await self._load_locked(rkey, token, loader, spec, entry, load_token)
            if acquired:  # somebody refreshed it since our GET: nothing to do
                await self._finish(rkey, token, None, 0)
            elif current.fresh_until <= self._io.now():
                self._counters.stale_served += 1  # another process is refreshing it
            return current.value  # type: ignore[no-any-return]
        finally:
            self._end_load(rkey, load_token, tag_keys)

    def _refresh_in_background(
        self, rkey: bytes, loader: Callable[[], Awaitable[Any]], spec: Spec, entry: Entry
    ) -> None:
        if self._closed or rkey in self._refreshing:
            return
        self._refreshing.add(rkey)
        self._counters.refreshes += 1
        task = asyncio.get_running_loop().create_task(
            self._flights.do(rkey, self._recompute, rkey, loader, spec, entry)
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
        spec: Spec,
        fallback: Entry | None,
        load_token: object,
    ) -> T:
        """Load while holding the recompute lock; store, release and wake waiters in one go."""
        assert self._lock is not None
        try:
            async with self._lock.held(rkey, token):
                value, delta = await self._timed(loader)
        except BaseException as exc:
            await self._give_back(rkey, token, exc)
            if isinstance(exc, Exception) and fallback is not None:
                return self._serve_fallback(rkey, fallback, exc)  # type: ignore[no-any-return]
            raise
        try:
            stored = self._encode(rkey, value, delta, spec)
        except BaseException as exc:  # a value the serializer (or the size limit) refuses
            await self._give_back(rkey, token, exc)
            raise
        still_valid = self._load_tokens.get(rkey) is load_token  # no invalidation since
        if stored is None or not still_valid:
            await self._finish(rkey, token, None, 0)
        else:
            await self._finish(rkey, token, *stored)
        return value

    async def _load(
        self,
        rkey: bytes,
        loader: Callable[[], Awaitable[T]],
        spec: Spec,
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
        stored = self._encode(rkey, value, delta, spec)
        if stored is not None and self._load_tokens.get(rkey) is load_token:  # not invalidated
            store = self.spawn(self._io.write(rkey, *stored, "store"), rkey)
            try:
                await asyncio.shield(store)
            finally:
                self._io.forget([rkey])
        return value

    async def _timed(self, loader: Callable[[], Awaitable[T]]) -> tuple[T, float]:
        started = time.perf_counter()
        value = await self._call(loader)
        return value, time.perf_counter() - started

    async def _call(self, loader: Callable[[], Awaitable[T]]) -> T:
        self._counters.loads += 1
        started = time.perf_counter()
        outcome = "cancelled"
        try:
            value = await await_result(loader(), "loader")
            outcome = "success"
            return value
        except Exception:
            outcome = "error"
            self._counters.errors += 1
            raise
        finally:
            if TELEMETRY.metrics_on and self.load_attributes:
                TELEMETRY.record_load(time.perf_counter() - started, self.load_attributes[outcome])

    def _serve_fallback(self, rkey: bytes, fallback: Entry, exc: Exception) -> Any:
        """stale-if-error: the loader failed, but there is a value to serve."""
        logger.warning("loader for %r failed (%r); serving the cached value", rkey[:200], exc)
        if fallback.fresh_until <= self._io.now():
            self._counters.stale_served += 1
        return fallback.value

    # -- the recompute lock, whatever happens --------------------------------------------

    async def _acquire(self, rkey: bytes, token: bytes) -> tuple[bool, bytes | None, int]:
        """Try the recompute lock; if the answer is lost, give back what we may have got."""
        assert self._lock is not None
        attempt = asyncio.ensure_future(self._lock.try_acquire(rkey, token))
        try:
            return await asyncio.shield(attempt)
        except (RedisOutOfMemory, CircuitOpen):
            raise  # refused, or never sent: nothing was taken
        except RedisUnavailable:
            # The script may have run (the lock is ours) with its reply lost to us.
            self.spawn(self._lock.store(rkey, token, None, 0))
            raise
        except asyncio.CancelledError:
            # The script may still be on its way: give the lock back once it has been
            # answered, so the give-back can never reach Redis before it (another
            # batch, another connection) and leave the lock taken for its lease.
            self.spawn(self._give_back_after(attempt, rkey, token))
            raise

    async def _give_back_after(
        self, attempt: asyncio.Future[Any], rkey: bytes, token: bytes
    ) -> None:
        assert self._lock is not None
        await asyncio.wait([attempt])
        if not attempt.cancelled() and isinstance(
            attempt.exception(), (RedisOutOfMemory, CircuitOpen)
        ):
            return  # refused, or never sent: nothing was taken
        await self._lock.store(rkey, token, None, 0)

    async def _give_back(self, rkey: bytes, token: bytes, exc: BaseException) -> None:
        """After a failed or cancelled load: release the lock and wake the waiters.

        On an error the release is awaited, so the waiters are on their way by
        the time the callers see the error; a cancelled caller does not wait.
        """
        assert self._lock is not None
        release = self.spawn(self._lock.store(rkey, token, None, 0))
        if isinstance(exc, Exception):
            await asyncio.wait([release])

    async def _finish(self, rkey: bytes, token: bytes, data: bytes | None, px: int) -> None:
        """Store (or not), release, wake: runs to its end even if the caller is cancelled."""
        assert self._lock is not None
        store = self.spawn(self._lock.store(rkey, token, data, px), rkey if data else None)
        try:
            await asyncio.shield(store)
        except RedisUnavailable as exc:
            self._io.redis_failed("store", exc)
        finally:
            if data:
                self._io.forget([rkey])

    def spawn(self, work: Awaitable[Any], storing: bytes | None = None) -> asyncio.Future[Any]:
        """Run ``work`` in a task of its own, owned by the cache (``aclose`` waits for it).

        ``storing``: the key it writes. It then starts after the previous write of
        that key in this process ends, and invalidations wait for it (``settled``).
        """
        previous = self._storing.get(storing) if storing is not None else None
        task = asyncio.ensure_future(work if previous is None else _after(previous, work))
        self.cleanups.add(task)
        if storing is not None:
            self._storing[storing] = task
        task.add_done_callback(lambda done: self._spawned_done(done, storing))
        return task

    def _spawned_done(self, task: asyncio.Future[Any], storing: bytes | None) -> None:
        self.cleanups.discard(task)
        if storing is not None and self._storing.get(storing) is task:
            del self._storing[storing]
        if not task.cancelled() and task.exception() is not None:
            # Its caller saw it (and counted it), or was cancelled and cannot.
            logger.debug("cache store or lock release failed: %r", task.exception())

    def _begin_load(self, rkey: bytes, tag_keys: tuple[bytes, ...] = ()) -> object:
        """Start a load of ``rkey``; an invalidation from now on makes it not store
        (an invalidation of one of its tags, too)."""
        load_token = self._load_tokens[rkey] = object()
        for key in tag_keys:
            loading = self._tagged_loads.setdefault(key, {})
            loading[rkey] = loading.get(rkey, 0) + 1
        return load_token

    def _end_load(self, rkey: bytes, load_token: object, tag_keys: tuple[bytes, ...] = ()) -> None:
        if self._load_tokens.get(rkey) is load_token:
            del self._load_tokens[rkey]
        for key in tag_keys:
            loading = self._tagged_loads.get(key)
            if loading is not None and rkey in loading:
                loading[rkey] -= 1
                if not loading[rkey]:
                    del loading[rkey]
                    if not loading:
                        del self._tagged_loads[key]

    def invalidate_tagged(self, tag_keys: tuple[bytes, ...]) -> None:
        """Loads running now under any of these tags: callers from now on do not
        share them (and they do not store)."""
        for key in tag_keys:
            for rkey in list(self._tagged_loads.get(key, ())):
                self.invalidate(rkey)


_RETRY: Any = object()
_RAW: Any = object()
_VALUE: Any = object()
_ERROR: Any = object()
_DOWN: Any = object()


def _settle_joiners(
    reads: dict[bytes, list[asyncio.Future[Any]]],
    rkey: bytes,
    joiners: list[asyncio.Future[Any]],
    outcome: Any,
) -> None:
    """Hand a shared read's outcome to the callers who joined it (once)."""
    if reads.get(rkey) is joiners:
        del reads[rkey]
    for future in joiners:
        if not future.done():
            future.set_result(outcome)
    joiners.clear()


def _settle_from_load(joiners: list[asyncio.Future[Any]], task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        outcome: Any = _RETRY
    elif (exc := task.exception()) is not None:
        outcome = (_ERROR, exc)
    else:
        outcome = (_VALUE, task.result())
    for future in joiners:
        if not future.done():
            future.set_result(outcome)
    joiners.clear()


async def _after(previous: asyncio.Future[Any], work: Awaitable[T]) -> T:
    await asyncio.wait([previous])
    return await work


async def await_result(result: Awaitable[T], argname: str) -> T:
    """Await what a user's async callable returned, refusing a non-awaitable clearly."""
    if not inspect.isawaitable(result):
        raise TypeError(f"{argname} must be an async function (it returned a non-awaitable)")
    return await result
