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
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from . import _envelope
from ._executor import executor_for
from ._validate import Seconds, callable_arg, milliseconds, positive_int, seconds, seconds_or_none
from .errors import RedisUnavailable, SerializationError
from .keys import DEFAULT_MAX_KEY_BYTES, KeyBuilder, KeyT
from .serializers import JsonSerializer, Serializer
from .singleflight import SingleFlight

if TYPE_CHECKING:
    from ._cached import CachedFunction, P, R

__all__ = ["Cache", "CacheStats"]

logger = logging.getLogger("aiocache_patterns.cache")

T = TypeVar("T")

#: Values whose serialized form is larger than this are refused (``max_value_bytes``).
DEFAULT_MAX_VALUE_BYTES: Final = 16 * 1024 * 1024

_MISS: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a :class:`Cache`'s counters (monotonic since construction)."""

    #: Reads answered from Redis with a fresh value.
    hits: int = 0
    #: Reads that found no usable value (absent, expired, undecodable).
    misses: int = 0
    #: Loader calls made by this process.
    loads: int = 0
    #: ``get_or_load`` calls that shared another caller's load in this process.
    coalesced: int = 0
    #: Callers that waited for another process's load (recompute lock).
    waited: int = 0
    #: Stale values served (during a refresh, or because the loader failed).
    stale_served: int = 0
    #: Loads started early by probabilistic early expiration (XFetch).
    early_recomputes: int = 0
    #: Background refreshes started.
    refreshes: int = 0
    #: Redis errors and loader errors absorbed or raised.
    errors: int = 0
    #: Stored values that could not be decoded (treated as misses).
    decode_errors: int = 0


@dataclass(slots=True)
class _Counters:
    """The live, mutable counters behind :attr:`Cache.stats` (same fields)."""

    hits: int = 0
    misses: int = 0
    loads: int = 0
    coalesced: int = 0
    waited: int = 0
    stale_served: int = 0
    early_recomputes: int = 0
    refreshes: int = 0
    errors: int = 0
    decode_errors: int = 0

    def snapshot(self) -> CacheStats:
        return CacheStats(**{f.name: getattr(self, f.name) for f in fields(self)})


class Cache:
    """Cache-aside over Redis.

    >>> cache = Cache(redis, namespace="blog", ttl=3600)  # doctest: +SKIP
    >>> post = await cache.get_or_load(f"post:{post_id}", lambda: db.fetch_post(post_id))

    Args:
        redis: a ``redis.asyncio.Redis``, ``redis.asyncio.RedisCluster`` or
            ``fakeredis.FakeAsyncRedis``; ``decode_responses`` either way.
        namespace: prefix of every key this cache writes (no braces).
        ttl: default time to live, seconds or ``timedelta``.
        serializer: how values become bytes; JSON by default.
        stale_ttl: grace after ``ttl`` during which ``get_or_load`` may serve the
            old value while one caller refreshes it, or when the loader fails.
        timeout: deadline of each Redis operation, redis-py retries included.
        fail_open: on Redis errors, reads become misses and cache writes are
            skipped (counted and logged); invalidations always raise.
        max_key_bytes: longer keys are stored under their SHA-256.
        max_value_bytes: serialized values larger than this are refused.
        clock: wall clock in Unix seconds (injectable for tests).
    """

    def __init__(
        self,
        redis: Any,
        *,
        namespace: str = "cache",
        ttl: Seconds = 300.0,
        serializer: Serializer | None = None,
        stale_ttl: Seconds | None = None,
        timeout: Seconds = 1.0,
        fail_open: bool = True,
        max_key_bytes: int = DEFAULT_MAX_KEY_BYTES,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._executor = executor_for(redis)
        self._keys = KeyBuilder(namespace, max_key_bytes=max_key_bytes)
        self._ttl = seconds(ttl, "ttl")
        milliseconds(self._ttl, "ttl")
        self._stale_ttl = seconds_or_none(stale_ttl, "stale_ttl", allow_zero=True) or 0.0
        self._timeout = seconds(timeout, "timeout")
        if serializer is None:
            serializer = JsonSerializer()
        elif not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        self._serializer = serializer
        if not isinstance(fail_open, bool):
            raise TypeError("fail_open must be a bool")
        self._fail_open = fail_open
        self._max_value = positive_int(max_value_bytes, "max_value_bytes")
        self._clock = callable_arg(clock, "clock")
        self._flights = SingleFlight()
        self._counters = _Counters()
        self._load_tokens: dict[bytes, object] = {}
        self._warned_keys: set[bytes] = set()
        self._last_error_log = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- reading -------------------------------------------------------------

    async def get(self, key: KeyT, default: Any = None) -> Any:
        """The cached value of ``key``, or ``default`` on a miss.

        A cached ``None`` is returned as ``None``; pass a sentinel ``default``
        to tell it from a miss.
        """
        rkey = self._keys.key(key)
        try:
            raw = await self._executor.get(rkey, self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed("get", exc)
            raw = None
        value = self._fresh_value(rkey, raw)
        return default if value is _MISS else value

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
            value = self._fresh_value(rkey, raw)
            if value is not _MISS:
                for key in wanted[rkey]:
                    found[key] = value
        return found

    # -- writing -------------------------------------------------------------

    async def set(self, key: KeyT, value: Any, ttl: Seconds | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (the cache's default if None)."""
        rkey = self._keys.key(key)
        command = self._set_command(rkey, value, self._ttl_arg(ttl), delta=0.0)
        self._load_tokens.pop(rkey, None)
        try:
            await self._executor.command(*command, timeout=self._timeout)
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
            commands.append(self._set_command(rkey, value, ttl_s, delta=0.0))
            self._load_tokens.pop(rkey, None)
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
            self._load_tokens.pop(rkey, None)
            self._flights.forget(rkey)
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
        command = self._set_command(rkey, value, self._ttl_arg(ttl), delta=0.0)
        await _await_result(writer(value), "writer")
        self._load_tokens.pop(rkey, None)
        self._flights.forget(rkey)
        try:
            await self._executor.command(*command, timeout=self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed("write_through", exc)

    # -- loading -------------------------------------------------------------

    async def get_or_load(
        self, key: KeyT, loader: Callable[[], Awaitable[T]], ttl: Seconds | None = None
    ) -> T:
        """The cached value of ``key``; on a miss, ``await loader()``, cache it and return it.

        Concurrent misses on a key in this process make one loader call; the
        loader's exception reaches every waiter and is never cached. A
        ``None`` from the loader is cached like any value. If Redis is down,
        the loader's value is served (fail-open) and the error counted.
        """
        callable_arg(loader, "loader")
        rkey = self._keys.key(key)
        ttl_s = self._ttl_arg(ttl)
        try:
            raw = await self._executor.get(rkey, self._timeout)
        except RedisUnavailable as exc:
            self._redis_failed("get_or_load", exc)
            raw = None
        value = self._fresh_value(rkey, raw)
        if value is not _MISS:
            return value  # type: ignore[no-any-return]
        value, shared = await self._flights.do_shared(
            rkey, lambda: self._load(rkey, loader, ttl_s)
        )
        if shared:
            self._counters.coalesced += 1
        return value  # type: ignore[no-any-return]

    async def _load(self, rkey: bytes, loader: Callable[[], Awaitable[T]], ttl: float) -> T:
        token = self._load_tokens[rkey] = object()
        started = time.perf_counter()
        self._counters.loads += 1
        try:
            value: T = await _await_result(loader(), "loader")
        except BaseException:
            self._counters.errors += 1
            if self._load_tokens.get(rkey) is token:
                del self._load_tokens[rkey]
            raise
        delta = time.perf_counter() - started
        command = self._set_command(rkey, value, ttl, delta=delta)
        if self._load_tokens.get(rkey) is token:
            # Not invalidated while loading: store it.
            del self._load_tokens[rkey]
            try:
                await self._executor.command(*command, timeout=self._timeout)
            except RedisUnavailable as exc:
                self._redis_failed("store", exc)
        return value

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
        """Cancel background work this cache owns and wait for it to end."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals -------------------------------------------------------------

    def _ttl_arg(self, ttl: Seconds | None) -> float:
        if ttl is None:
            return self._ttl
        value = seconds(ttl, "ttl")
        milliseconds(value, "ttl")
        return value

    def _set_command(
        self, rkey: bytes, value: Any, ttl: float, *, delta: float
    ) -> tuple[Any, ...]:
        payload = self._serializer.dumps(value)
        if not isinstance(payload, (bytes, bytearray)):
            raise SerializationError("serializer.dumps must return bytes")
        if len(payload) > self._max_value:
            raise ValueError(
                f"value is {len(payload)} bytes serialized, over max_value_bytes={self._max_value}"
            )
        now = self._clock()
        data = _envelope.pack(bytes(payload), created=now, delta=delta, fresh_until=now + ttl)
        return ("SET", rkey, data, "PX", milliseconds(ttl + self._stale_ttl, "ttl"))

    def _fresh_value(self, rkey: bytes, raw: bytes | None) -> Any:
        """Decode a stored envelope; ``_MISS`` if absent, stale or undecodable."""
        if raw is None:
            self._counters.misses += 1
            return _MISS
        try:
            _, _, fresh_until = _envelope.unpack_header(raw)
            value = self._serializer.loads(raw[_envelope.HEADER_SIZE :])
        except (_envelope.EnvelopeError, SerializationError) as exc:
            self._counters.misses += 1
            self._counters.decode_errors += 1
            self._warn_undecodable(rkey, exc)
            return _MISS
        if fresh_until <= self._clock():
            self._counters.misses += 1
            return _MISS
        self._counters.hits += 1
        return value

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
