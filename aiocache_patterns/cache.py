"""Cache-aside, write-through and invalidation, correct under concurrency.

:class:`Cache` stores every value in an envelope (value, creation time, load
time, freshness deadline) read with a single GET, and talks to Redis only
through the shared executor, so concurrent reads share round trips. See
docs/cache-aside.md for the guarantees and failure modes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._codec import Codec, Entry, UndecodableEntry
from ._executor import executor_for
from ._notify import notifier_for
from ._validate import Seconds, callable_arg, milliseconds, positive_int, seconds, seconds_or_none
from .errors import RedisUnavailable
from .keys import DEFAULT_MAX_KEY_BYTES, KeyBuilder, KeyT
from .metrics import CacheStats, Counters
from .serializers import JsonSerializer, Serializer
from .singleflight import SingleFlight
from .stampede import RecomputeLock, new_token, xfetch_due

if TYPE_CHECKING:
    from ._cached import CachedFunction, P, R

__all__ = ["Cache", "CacheStats"]

logger = logging.getLogger("aiocache_patterns.cache")

T = TypeVar("T")

#: Values whose serialized form is larger than this are refused (``max_value_bytes``).
DEFAULT_MAX_VALUE_BYTES: Final = 16 * 1024 * 1024

#: How long a waiter sleeps at most between looks when no wake-up arrives.
_WAIT_POLL: Final = 0.25

_MISS: Final[Any] = object()


class Cache:
    """Cache-aside over Redis, with stampede control.

    >>> cache = Cache(redis, namespace="blog", ttl=3600)  # doctest: +SKIP
    >>> post = await cache.get_or_load(f"post:{post_id}", lambda: db.fetch_post(post_id))

    Args:
        redis: a ``redis.asyncio.Redis``, ``redis.asyncio.RedisCluster`` or
            ``fakeredis.FakeAsyncRedis``; ``decode_responses`` either way.
        namespace: prefix of every key this cache writes (no braces).
        ttl: default time to live, seconds or ``timedelta``.
        serializer: how values become bytes; JSON by default.
        stale_ttl: grace after ``ttl`` during which ``get_or_load`` serves the
            old value while one caller refreshes it, or when the loader fails.
        recompute_lock: on a miss, one process loads and the others wait for
            its value (woken, not polling).
        lock_ttl: lease of the recompute lock, renewed while the loader runs;
            a loader that dies is replaced after this long.
        lock_timeout: how long a miss waits for another process's load before
            loading itself (or serving a stale value if there is one).
        beta: XFetch's eagerness to recompute before expiry; ``0`` disables it.
        refresh_after: age after which a hit schedules a background refresh
            (and returns the current value at once); also used for XFetch's
            decisions, which then refresh in the background too.
        timeout: deadline of each Redis operation, redis-py retries included.
        fail_open: on Redis errors, reads become misses and cache writes are
            skipped (counted and logged); invalidations always raise.
        max_key_bytes: longer keys are stored under their SHA-256.
        max_value_bytes: serialized values larger than this are refused.
        clock: wall clock in Unix seconds (injectable for tests).
        random: uniform source in [0, 1) for XFetch (injectable for tests).
    """

    def __init__(
        self,
        redis: Any,
        *,
        namespace: str = "cache",
        ttl: Seconds = 300.0,
        serializer: Serializer | None = None,
        stale_ttl: Seconds | None = None,
        recompute_lock: bool = True,
        lock_ttl: Seconds = 3.0,
        lock_timeout: Seconds = 5.0,
        beta: float = 1.0,
        refresh_after: Seconds | None = None,
        timeout: Seconds = 1.0,
        fail_open: bool = True,
        max_key_bytes: int = DEFAULT_MAX_KEY_BYTES,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = random.random,
    ) -> None:
        self._executor = executor_for(redis)
        self._keys = KeyBuilder(namespace, max_key_bytes=max_key_bytes)
        if ttl is None:
            raise TypeError("ttl must be a number of seconds or a timedelta, not None")
        self._ttl = self._ttl_arg(ttl)
        self._stale_ttl = seconds_or_none(stale_ttl, "stale_ttl", allow_zero=True) or 0.0
        self._timeout = seconds(timeout, "timeout")
        if serializer is None:
            serializer = JsonSerializer()
        elif not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        for flag, argname in ((fail_open, "fail_open"), (recompute_lock, "recompute_lock")):
            if not isinstance(flag, bool):
                raise TypeError(f"{argname} must be a bool")
        self._fail_open = fail_open
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise TypeError("beta must be a number")
        if not 0 <= beta < float("inf"):
            raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
        self._beta = float(beta)
        self._refresh_after = seconds_or_none(refresh_after, "refresh_after")
        self._clock = callable_arg(clock, "clock")
        self._random = callable_arg(random, "random")
        self._codec = Codec(
            serializer,
            max_value_bytes=positive_int(max_value_bytes, "max_value_bytes"),
            grace=self._stale_ttl,
            clock=self._clock,
        )
        self._lock = (
            RecomputeLock(
                self._executor,
                notifier_for(redis),
                ttl=seconds(lock_ttl, "lock_ttl"),
                timeout=self._timeout,
                poll_interval=_WAIT_POLL,
            )
            if recompute_lock
            else None
        )
        self._lock_timeout = seconds(lock_timeout, "lock_timeout", allow_zero=True)
        self._flights = SingleFlight()
        self._counters = Counters()
        self._load_tokens: dict[bytes, object] = {}
        self._refreshing: set[bytes] = set()
        self._warned_keys: set[bytes] = set()
        self._last_error_log = 0.0
        #: Background refreshes (cancelled on close) and lock releases (awaited on close).
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cleanups: set[asyncio.Future[None]] = set()
        self._closed = False

    # -- reading -------------------------------------------------------------

    async def get(self, key: KeyT, default: Any = None) -> Any:
        """The cached value of ``key``, or ``default`` on a miss.

        A cached ``None`` is returned as ``None``; pass a sentinel ``default``
        to tell it from a miss. Stale values are misses here.
        """
        rkey = self._keys.key(key)
        entry = self._fresh(rkey, await self._read(rkey, "get"))
        return default if entry is None else entry.value

    async def get_many(self, keys: Iterable[KeyT]) -> dict[KeyT, Any]:
        """``{key: value}`` for the keys that hold a fresh value; misses are absent.

        One round trip (one per node on a cluster), shared with concurrent reads.
        """
        if isinstance(keys, (str, bytes)):
            raise TypeError("keys must be an iterable of keys, not a single key")
        wanted: dict[bytes, list[KeyT]] = {}
        for k in keys:
            wanted.setdefault(self._keys.key(k, "keys"), []).append(k)
        rkeys = list(wanted)
        try:
            raws = await self._executor.get_many(rkeys, self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed("get_many", exc)
            return {}
        found: dict[KeyT, Any] = {}
        for rkey, raw in zip(rkeys, raws, strict=True):
            entry = self._fresh(rkey, raw)
            if entry is not None:
                for key in wanted[rkey]:
                    found[key] = entry.value
        return found

    # -- writing -------------------------------------------------------------

    async def set(self, key: KeyT, value: Any, ttl: Seconds | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (the cache's default if None)."""
        rkey = self._keys.key(key)
        data, px = self._codec.encode(value, self._ttl_arg(ttl), 0.0)
        self._invalidate_loads(rkey)
        try:
            await self._executor.command("SET", rkey, data, "PX", px, timeout=self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed("set", exc)

    async def set_many(self, mapping: Mapping[KeyT, Any], ttl: Seconds | None = None) -> None:
        """Store every item in one round trip; nothing is sent if any value fails to encode."""
        if not isinstance(mapping, Mapping):
            raise TypeError(f"mapping must be a mapping, not {type(mapping).__name__}")
        ttl_s = self._ttl_arg(ttl)
        commands = []
        for key, value in mapping.items():
            rkey = self._keys.key(key, "mapping key")
            data, px = self._codec.encode(value, ttl_s, 0.0)
            commands.append(("SET", rkey, data, "PX", px))
        for command in commands:
            self._invalidate_loads(command[1])
        try:
            replies = await self._executor.commands(commands, self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed("set_many", exc)
            return
        for reply in replies:
            if isinstance(reply, RedisUnavailable):
                self._redis_failed("set_many", reply)

    async def delete(self, *keys: KeyT) -> int:
        """Remove keys; return how many existed.

        Invalidation never fails silently: Redis errors raise
        :class:`~aiocache_patterns.errors.RedisUnavailable` even with ``fail_open``.
        """
        rkeys = [self._keys.key(k, "keys") for k in keys]
        for rkey in rkeys:
            self._invalidate_loads(rkey)
        if not rkeys:
            return 0
        try:
            replies = await self._executor.commands([("DEL", k) for k in rkeys], self._timeout)
        except RedisUnavailable:
            self._counters.errors += 1
            raise
        for reply in replies:
            if isinstance(reply, BaseException):
                self._counters.errors += 1
                raise reply
        return sum(int(r) for r in replies)

    async def write_through(
        self,
        key: KeyT,
        value: Any,
        writer: Callable[[Any], Awaitable[Any]],
        ttl: Seconds | None = None,
    ) -> None:
        """Write ``value`` to the source of truth with ``await writer(value)``, then cache it.

        The value is encoded first, so a value the cache cannot hold is refused
        before anything is written. If the writer raises, the cache is left as
        it was and the error propagates.
        """
        callable_arg(writer, "writer")
        rkey = self._keys.key(key)
        data, px = self._codec.encode(value, self._ttl_arg(ttl), 0.0)
        await _await_result(writer(value), "writer")
        self._invalidate_loads(rkey)
        try:
            await self._executor.command("SET", rkey, data, "PX", px, timeout=self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed("write_through", exc)

    # -- loading -------------------------------------------------------------

    async def get_or_load(
        self, key: KeyT, loader: Callable[[], Awaitable[T]], ttl: Seconds | None = None
    ) -> T:
        """The cached value of ``key``; on a miss, ``await loader()``, cache it and return it.

        One loader call per key at a time: in this process (single-flight) and
        across processes (the recompute lock). A hit costs one GET; near expiry
        one reader refreshes early (XFetch) or in the background
        (``refresh_after``); within ``stale_ttl`` the stale value is served
        while one caller refreshes, or when the loader fails. The loader's
        exception reaches every waiter and is never cached. A ``None`` from the
        loader is cached like any value. If Redis is down, the loader's value
        is served (fail-open) and the error counted.
        """
        callable_arg(loader, "loader")
        rkey = self._keys.key(key)
        ttl_s = self._ttl_arg(ttl)
        try:
            raw = await self._executor.get(rkey, self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed("get_or_load", exc)
            self._counters.misses += 1
            value, _ = await self._flights.do_shared(rkey, lambda: self._call_loader(loader))
            return value
        entry = self._decode(rkey, raw)
        if entry is not None:
            now = self._clock()
            if now < entry.fresh_until:
                self._counters.hits += 1
                if self._refresh_due(now, entry) and not self._flights.in_flight(rkey):
                    if self._refresh_after is not None:
                        self._refresh_in_background(rkey, loader, ttl_s, entry)
                    else:
                        self._counters.early_recomputes += 1
                        return await self._flights.do(
                            rkey, lambda: self._recompute(rkey, loader, ttl_s, entry)
                        )
                return entry.value  # type: ignore[no-any-return]
            # Stale, within the grace: one caller refreshes, the others get it as it is.
            self._counters.misses += 1
            if self._flights.in_flight(rkey):
                self._counters.stale_served += 1
                return entry.value  # type: ignore[no-any-return]
            return await self._flights.do(
                rkey, lambda: self._recompute(rkey, loader, ttl_s, entry)
            )
        self._counters.misses += 1
        value, shared = await self._flights.do_shared(
            rkey, lambda: self._fill(rkey, loader, ttl_s)
        )
        if shared:
            self._counters.coalesced += 1
        return value

    def _refresh_due(self, now: float, entry: Entry) -> bool:
        if self._refresh_after is not None and now - entry.created >= self._refresh_after:
            return True
        if self._beta == 0:
            return False
        return xfetch_due(now, entry.delta, entry.fresh_until, self._beta, 1.0 - self._random())

    async def _fill(self, rkey: bytes, loader: Callable[[], Awaitable[T]], ttl: float) -> T:
        """A miss, for this process: load, or wait for the process that is loading."""
        lock = self._lock
        if lock is None:
            return await self._load(rkey, loader, ttl)
        token = new_token()
        try:
            acquired, raw, pttl = await lock.try_acquire(rkey, token)
        except RedisUnavailable as exc:
            self._redis_failed("get_or_load", exc)
            return await self._call_loader(loader)
        current = self._decode(rkey, raw, count=False)
        if acquired:
            return await self._load_locked(rkey, token, loader, ttl, fallback=current)
        self._counters.waited += 1
        deadline = time.monotonic() + self._lock_timeout
        try:
            async with lock.waiting(rkey, token) as inbox:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    woken = await inbox.wait(lock.wait_time(pttl, left)) is not None
                    if woken:  # the entry was written (or its loader gave up): look
                        entry = self._fresh(rkey, await self._read(rkey, "get_or_load"))
                        if entry is not None:
                            return entry.value  # type: ignore[no-any-return]
                    acquired, raw, pttl = await lock.try_acquire(rkey, token)
                    current = self._decode(rkey, raw, count=False)
                    if current is not None and current.fresh_until > self._clock():
                        if acquired:
                            await self._store(rkey, token, None, 0)
                        return current.value  # type: ignore[no-any-return]
                    if acquired:  # the loader died or gave up: our turn
                        return await self._load_locked(rkey, token, loader, ttl, fallback=current)
        except RedisUnavailable as exc:
            self._redis_failed("get_or_load", exc)
        # Waited long enough (nginx's proxy_cache_lock_timeout): stale if any, else load.
        if current is not None:
            self._counters.stale_served += 1
            return current.value  # type: ignore[no-any-return]
        return await self._load(rkey, loader, ttl)

    async def _recompute(
        self, rkey: bytes, loader: Callable[[], Awaitable[T]], ttl: float, entry: Entry
    ) -> T:
        """Refresh an entry that exists (fresh or stale); never waits for another process."""
        lock = self._lock
        if lock is None:
            return await self._load(rkey, loader, ttl, fallback=entry)
        token = new_token()
        try:
            acquired, raw, _ = await lock.try_acquire(rkey, token)
        except RedisUnavailable as exc:
            self._redis_failed("get_or_load", exc)
            return await self._call_loader(loader)
        if not acquired:  # another process is refreshing it: use what there is
            current = self._decode(rkey, raw, count=False) or entry
            if current.fresh_until <= self._clock():
                self._counters.stale_served += 1
            return current.value  # type: ignore[no-any-return]
        return await self._load_locked(rkey, token, loader, ttl, fallback=entry)

    async def _load_locked(
        self,
        rkey: bytes,
        token: bytes,
        loader: Callable[[], Awaitable[T]],
        ttl: float,
        fallback: Entry | None,
    ) -> T:
        """Load while holding the recompute lock; store, release and wake waiters in one go."""
        assert self._lock is not None
        load_token = self._load_tokens[rkey] = object()
        try:
            async with self._lock.held(rkey, token):
                value, delta = await self._timed_load(loader)
        except BaseException as exc:
            self._forget_load(rkey, load_token)
            # Give the lock back and wake the waiters, even if we were cancelled.
            store = asyncio.ensure_future(self._store(rkey, token, None, 0))
            self._cleanups.add(store)
            store.add_done_callback(self._cleanups.discard)
            if isinstance(exc, Exception) and fallback is not None:
                return self._serve_fallback(rkey, fallback, exc)  # type: ignore[no-any-return]
            raise
        data, px = self._codec.encode(value, ttl, delta)
        stored = self._forget_load(rkey, load_token)
        await self._store(rkey, token, data if stored else None, px)
        return value

    async def _load(
        self,
        rkey: bytes,
        loader: Callable[[], Awaitable[T]],
        ttl: float,
        fallback: Entry | None = None,
    ) -> T:
        """Load and store without the recompute lock."""
        load_token = self._load_tokens[rkey] = object()
        try:
            value, delta = await self._timed_load(loader)
        except Exception as exc:
            self._forget_load(rkey, load_token)
            if fallback is not None:
                return self._serve_fallback(rkey, fallback, exc)  # type: ignore[no-any-return]
            raise
        except BaseException:
            self._forget_load(rkey, load_token)
            raise
        data, px = self._codec.encode(value, ttl, delta)
        if self._forget_load(rkey, load_token):  # not invalidated while loading: store it
            try:
                await self._executor.command("SET", rkey, data, "PX", px, timeout=self._timeout)
            except RedisUnavailable as exc:
                self._redis_failed("store", exc)
        return value

    async def _timed_load(self, loader: Callable[[], Awaitable[T]]) -> tuple[T, float]:
        started = time.perf_counter()
        value = await self._call_loader(loader)
        return value, time.perf_counter() - started

    async def _call_loader(self, loader: Callable[[], Awaitable[T]]) -> T:
        self._counters.loads += 1
        try:
            return await _await_result(loader(), "loader")
        except Exception:
            self._counters.errors += 1
            raise

    def _serve_fallback(self, rkey: bytes, fallback: Entry, exc: Exception) -> Any:
        """stale-if-error: the loader failed, but there is a value to serve."""
        logger.warning("loader for %r failed (%r); serving the cached value", rkey[:200], exc)
        if fallback.fresh_until <= self._clock():
            self._counters.stale_served += 1
        return fallback.value

    async def _store(self, rkey: bytes, token: bytes, data: bytes | None, px: int) -> None:
        assert self._lock is not None
        try:
            await self._lock.store(rkey, token, data, px)
        except RedisUnavailable as exc:
            self._redis_failed("store", exc)

    def _refresh_in_background(
        self, rkey: bytes, loader: Callable[[], Awaitable[Any]], ttl: float, entry: Entry
    ) -> None:
        if self._closed or rkey in self._refreshing:
            return
        self._refreshing.add(rkey)
        self._counters.refreshes += 1
        task = asyncio.get_running_loop().create_task(
            self._flights.do(rkey, lambda: self._recompute(rkey, loader, ttl, entry))
        )
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            self._refreshing.discard(rkey)
            if not task.cancelled() and task.exception() is not None:
                logger.warning("background refresh of %r failed: %r", rkey[:200], task.exception())

        task.add_done_callback(done)

    def _invalidate_loads(self, rkey: bytes) -> None:
        """Loads of ``rkey`` running now must not write their (older) value."""
        self._load_tokens.pop(rkey, None)
        self._flights.forget(rkey)

    def _forget_load(self, rkey: bytes, load_token: object) -> bool:
        """End a load; True if it was not invalidated meanwhile."""
        if self._load_tokens.get(rkey) is load_token:
            del self._load_tokens[rkey]
            return True
        return False

    # -- decorator -------------------------------------------------------------

    def cached(
        self, ttl: Seconds | None = None, key: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
        """Cache an async function's results, keyed by its arguments.

        ``key`` is a :meth:`str.format` template over the function's parameters
        (``"post:{post_id}"``, ``"user:{user.id}"``); without one, the key is the
        function's qualified name and its arguments, which must then be of
        simple types (str, bytes, int, float, bool, None).

        The wrapper keeps the function's signature and has
        ``await fn.invalidate(*args, **kwargs)``.
        """
        from ._cached import CachedFunction

        ttl_s = None if ttl is None else self._ttl_arg(ttl)

        def decorate(fn: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
            return CachedFunction(self, fn, ttl_s, key)

        return decorate

    # -- lifecycle and stats ---------------------------------------------------

    @property
    def stats(self) -> CacheStats:
        """Counters since construction, as a frozen snapshot."""
        return self._counters.snapshot()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop starting background refreshes, cancel the running ones, wait for them.

        Recompute locks they held are given back (and their waiters woken) first.
        """
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    # -- internals -------------------------------------------------------------

    def _ttl_arg(self, ttl: Seconds | None) -> float:
        if ttl is None:
            return self._ttl
        value = seconds(ttl, "ttl")
        milliseconds(value, "ttl")
        return value

    async def _read(self, rkey: bytes, operation: str) -> bytes | None:
        try:
            return await self._executor.get(rkey, self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed(operation, exc)
            return None

    def _decode(self, rkey: bytes, raw: bytes | None, *, count: bool = True) -> Entry | None:
        """The entry in ``raw``; None if absent or undecodable (counted and logged)."""
        if raw is None:
            return None
        try:
            return self._codec.decode(raw)
        except UndecodableEntry as exc:
            if count:
                self._counters.decode_errors += 1
                self._warn_undecodable(rkey, exc)
            return None

    def _fresh(self, rkey: bytes, raw: bytes | None) -> Entry | None:
        """The entry if it is fresh, counting a hit or a miss."""
        entry = self._decode(rkey, raw)
        if entry is None or entry.fresh_until <= self._clock():
            self._counters.misses += 1
            return None
        self._counters.hits += 1
        return entry

    def _warn_undecodable(self, rkey: bytes, exc: Exception) -> None:
        if rkey in self._warned_keys:
            return
        if len(self._warned_keys) >= 1024:
            self._warned_keys.clear()
        self._warned_keys.add(rkey)
        logger.warning(
            "cached value under %r cannot be decoded (%s); treating it as a miss", rkey[:200], exc
        )

    def _redis_failed(self, operation: str, exc: RedisUnavailable) -> None:
        """Count a Redis error; re-raise it unless the cache fails open."""
        self._counters.errors += 1
        if not self._fail_open:
            raise exc
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:  # one line a second, not one per call
            self._last_error_log = now
            logger.warning("Redis error during %s, failing open: %s", operation, exc)


async def _await_result(result: Awaitable[T], argname: str) -> T:
    if not inspect.isawaitable(result):
        raise TypeError(f"{argname} must be an async function (it returned a non-awaitable)")
    return await result
