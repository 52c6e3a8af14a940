"""Cache-aside, write-through and invalidation, correct under concurrency.

``Cache`` stores every value in an envelope (value, creation time, load
time, freshness deadline) read with a single GET, and talks to Redis only
through the shared executor, so concurrent reads share round trips. See
docs/cache-aside.md for the guarantees and failure modes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, Final, TypeVar

from .._redis.executor import executor_for
from .._redis.notify import notifier_for
from .._telemetry import TELEMETRY
from .._validate import Seconds, callable_arg, milliseconds, positive_int, seconds, seconds_or_none
from ..errors import RedisOutOfMemory, RedisUnavailable
from ..keys import DEFAULT_MAX_KEY_BYTES, KeyBuilder, KeyT, validate_namespace
from ..serializers import JsonSerializer, Serializer
from ._bulk import load_many
from ._decorator import CachedFunction, P, R
from ._entry import HEADER_SIZE, MISS, Codec, EntryIO, UndecodableEntry
from ._loading import Loader, await_result
from ._near import NearCache, near_store_for
from ._recompute import RecomputeLock
from ._spec import Spec
from ._stats import CacheStats, Counters, observe
from ._tags import MAGIC_TAGGED, UNKNOWN, TagIndex

__all__ = ["Cache", "CacheStats"]

T = TypeVar("T")

#: Values whose serialized form is larger than this are refused (``max_value_bytes``).
DEFAULT_MAX_VALUE_BYTES: Final = 16 * 1024 * 1024

#: How long a waiter sleeps at most between looks when no wake-up arrives.
_WAIT_POLL: Final = 0.25


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
        fail_open: on Redis errors (down, slow, full), reads become misses and
            cache writes are skipped (counted and logged; a write Redis refuses
            because it is full deletes the old value instead); invalidations
            always raise.
        max_key_bytes: longer keys are stored under their SHA-256.
        max_value_bytes: serialized values larger than this are refused, and
            stored values larger than this are misses, never decoded.
        clock: wall clock in Unix seconds (injectable for tests).
        random: uniform source in [0, 1) for XFetch (injectable for tests).
        tracing: make an OpenTelemetry span per operation (``True``), none
            (``False``), or as ``configure_telemetry(tracing=...)`` says (``None``).
        near: a [`NearCache`][aiocache_patterns.NearCache] keeps hot entries in
            process memory, dropped by Redis's client tracking when their key
            changes anywhere (docs/near-cache.md); None (the default): every read
            goes to Redis.
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
        tracing: bool | None = None,
        near: NearCache | None = None,
    ) -> None:
        if ttl is None:
            raise TypeError("ttl must be a number of seconds or a timedelta, not None")
        self._ttl = _ttl_seconds(ttl)
        executor = executor_for(redis)
        self._keys = KeyBuilder(namespace, max_key_bytes=max_key_bytes)
        stale = seconds_or_none(stale_ttl, "stale_ttl", allow_zero=True) or 0.0
        timeout_s = seconds(timeout, "timeout")
        if serializer is None:
            serializer = JsonSerializer()
        elif not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        for flag, argname in ((fail_open, "fail_open"), (recompute_lock, "recompute_lock")):
            if not isinstance(flag, bool):
                raise TypeError(f"{argname} must be a bool")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise TypeError("beta must be a number")
        if not 0 <= beta < float("inf"):
            raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
        callable_arg(clock, "clock")
        callable_arg(random, "random")
        self._serializer = serializer
        codec = Codec(
            serializer,
            max_value_bytes=positive_int(max_value_bytes, "max_value_bytes"),
            grace=stale,
            clock=clock,
        )
        self._counters = Counters()
        observe(self, namespace, self._counters)
        TELEMETRY.traceable(self, tracing, _SPANS, redis, namespace)
        self._io = EntryIO(
            executor, codec, self._counters, timeout=timeout_s, fail_open=fail_open, clock=clock
        )
        self._io.near = near_store_for(
            near,
            redis,
            namespace.encode("utf-8") + b":{",
            self._counters,
            clock,
            positive_int(max_value_bytes, "max_value_bytes"),
        )
        lock = (
            RecomputeLock(
                executor,
                notifier_for(redis),
                ttl=seconds(lock_ttl, "lock_ttl"),
                timeout=timeout_s,
                poll_interval=_WAIT_POLL,
            )
            if recompute_lock
            else None
        )
        self._tags = TagIndex(executor, validate_namespace(namespace), timeout_s)
        self._default_spec = Spec(self._ttl)
        #: Recent calls' rules, by (ttl, tags, cache_if, loads): a Spec is immutable.
        self._specs: dict[tuple[object, ...], Spec] = {}
        self._loader = Loader(
            self._io,
            lock,
            tags=self._tags,
            lock_timeout=seconds(lock_timeout, "lock_timeout", allow_zero=True),
            beta=float(beta),
            refresh_after=seconds_or_none(refresh_after, "refresh_after"),
            random=random,
        )
        self._loader.load_attributes = {
            outcome: {"namespace": namespace, "outcome": outcome}
            for outcome in ("success", "error", "cancelled")
        }

    # -- reading -------------------------------------------------------------

    async def get(self, key: KeyT, default: Any = None) -> Any:
        """The cached value of ``key``, or ``default`` on a miss.

        A cached ``None`` is returned as ``None``; pass a sentinel ``default``
        to tell it from a miss. Stale values are misses here.
        """
        io = self._io
        near = io.near
        if near is not None and near.active:  # the near cache's hit path, kept short
            rkey = near.rkeys.get(key) if type(key) is str else None
            if rkey is None:
                rkey = near.remember(key, self._keys.key(key))
            raw = near.lookup(rkey)
            if raw is not None:
                loads = io.near_loads
                if loads is None:
                    value = io.near_value(rkey, raw)
                    return default if value is MISS else value
                try:  # near_value(), inlined: the hit path at memory speed
                    value = loads(raw[HEADER_SIZE:])
                except UndecodableEntry:
                    value = io.fresh_value(rkey, raw)
                    return default if value is MISS else value
                io.counters.hits += 1
                return value
            raw = await io.read_remote(rkey, "get")
        else:
            rkey = self._keys.key(key)
            raw = await io.read(rkey, "get")
        if raw is not None and raw.startswith(MAGIC_TAGGED):  # never a near copy
            (stamp,) = await self._stamps([raw], "get")
            value = io.fresh_value(rkey, raw, stamp)
        else:
            value = io.fresh_value(rkey, raw)
        return default if value is MISS else value

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
            raws = await self._io.fetch_many(rkeys)
        except RedisUnavailable as exc:
            self._io.redis_failed("get_many", exc)
            return {}
        found: dict[KeyT, Any] = {}
        stamps = await self._stamps(raws, "get_many")
        for rkey, raw, stamp in zip(rkeys, raws, stamps, strict=True):
            value = self._io.fresh_value(rkey, raw, stamp)
            if value is not MISS:
                for key in wanted[rkey]:
                    found[key] = value
        return found

    # -- writing -------------------------------------------------------------

    async def set(
        self, key: KeyT, value: Any, ttl: Seconds | None = None, *, tags: Iterable[str] = ()
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (the cache's default if None).

        ``tags``: ``invalidate_tags()`` of any of them makes the entry unreadable.
        If Redis refuses the value (full), the old one is deleted instead.
        """
        rkey = self._keys.key(key)
        tag_keys = self._tags.keys(tags)
        ttl_s = self._ttl_arg(ttl)
        data, px = self._io.codec.encode(value, ttl_s, 0.0, rkey)  # refuse bad values first
        if tag_keys:
            try:
                stamp = await self._tags.ensure(tag_keys, px)
            except RedisUnavailable as exc:
                # Without versions, nothing can be stored; the old value must not stay.
                self._loader.invalidate(rkey)
                await self._io.drop([rkey], "set")
                self._io.redis_failed("set", exc)
                return
            data, px = self._io.codec.encode(value, ttl_s, 0.0, rkey, stamp)
        self._loader.invalidate(rkey)
        await self._loader.settled([rkey])
        await self._io.replace(rkey, data, px, "set")
        self._io.forget([rkey])

    async def set_many(
        self,
        mapping: Mapping[str, Any] | Mapping[bytes, Any] | Mapping[KeyT, Any],
        ttl: Seconds | None = None,
    ) -> None:
        """Store every item in one round trip; nothing is sent if any value fails to encode.

        Values Redis refuses (full) are counted and logged, and their old values deleted.
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(f"mapping must be a mapping, not {type(mapping).__name__}")
        ttl_s = self._ttl_arg(ttl)
        commands = []
        for key, value in mapping.items():
            rkey = self._keys.key(key, "mapping key")
            data, px = self._io.codec.encode(value, ttl_s, 0.0, rkey)
            commands.append(("SET", rkey, data, "PX", px))
        rkeys = [command[1] for command in commands]
        for rkey in rkeys:
            self._loader.invalidate(rkey)
        await self._loader.settled(rkeys)
        try:
            replies = await self._io.executor.commands(commands, self._io.timeout)
        except RedisUnavailable as exc:
            self._io.redis_failed("set_many", exc)
            return
        finally:
            self._io.forget(rkeys)
        refused = [
            k for k, r in zip(rkeys, replies, strict=True) if isinstance(r, RedisOutOfMemory)
        ]
        if refused:
            await self._io.drop(refused, "set_many")
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, RedisUnavailable):
                raise reply
        failures = [r for r in replies if isinstance(r, RedisUnavailable)]
        if failures:
            self._counters.errors += len(failures) - 1  # and one more, by redis_failed
            self._io.redis_failed("set_many", failures[0])

    async def delete(self, *keys: KeyT) -> int:
        """Remove keys; return how many existed.

        Invalidation never fails silently: Redis errors raise
        [`RedisUnavailable`][aiocache_patterns.errors.RedisUnavailable] even with ``fail_open``.
        """
        rkeys = [self._keys.key(k, "keys") for k in keys]
        for rkey in rkeys:
            self._loader.invalidate(rkey)
        if not rkeys:
            return 0
        await self._loader.settled(rkeys)
        commands = [("DEL", k) for k in rkeys]
        try:
            replies = await self._io.executor.commands(commands, self._io.timeout)
        except RedisUnavailable:
            self._counters.errors += 1
            raise
        finally:
            self._io.forget(rkeys)
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
        it was and the error propagates. Once the writer has succeeded, the
        old cached value is never left readable: the new one is stored, or, if
        Redis refuses it (full), the old one is deleted; the failure is counted
        and logged, and raised only with ``fail_open=False``. The cache write
        runs to its end even if the caller is cancelled; a caller cancelled
        while the writer runs (which may or may not have written) deletes the
        cached value.
        """
        callable_arg(writer, "writer")
        rkey = self._keys.key(key)
        data, px = self._io.codec.encode(value, self._ttl_arg(ttl), 0.0, rkey)
        try:
            await await_result(writer(value), "writer")
        except asyncio.CancelledError:
            self._loader.invalidate(rkey)
            self._loader.spawn(self._io.drop([rkey], "write_through"), rkey)
            raise
        self._loader.invalidate(rkey)
        store = self._loader.spawn(self._io.replace(rkey, data, px, "write_through"), rkey)
        try:
            await asyncio.shield(store)
        finally:
            self._io.forget([rkey])

    # -- loading -------------------------------------------------------------

    async def invalidate_tags(self, *tags: str) -> int:
        """Make every entry stored with any of ``tags`` unreadable, in every process.

        O(1) per tag, whatever the number of entries: each tag's version key is
        deleted, and entries carry the versions they were written under. Once
        this returns, no read returns a value stored with one of these tags
        before the call. A load already running under one of them returns its
        value to the callers already waiting on it and stores it unreadable; in
        this process, callers from then on do not share it (in another process
        they may, until it ends).
        Returns how many of the tags had a version (had entries, or had had).
        Redis errors raise [`RedisUnavailable`][aiocache_patterns.errors.RedisUnavailable]
        even with ``fail_open``.
        """
        tag_keys = self._tags.keys(tags)
        self._loader.invalidate_tagged(tag_keys)  # loads running here: not shared any more
        try:
            return await self._tags.invalidate(tag_keys)
        except RedisUnavailable:
            self._counters.errors += 1
            raise

    async def get_or_load(
        self,
        key: KeyT,
        loader: Callable[[], Awaitable[T]],
        ttl: Seconds | Callable[[T], Seconds | None] | None = None,
        *,
        tags: Iterable[str] = (),
        cache_if: Callable[[T], object] | None = None,
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

        ``ttl`` may be a callable of the loaded value returning seconds (``None``
        or ``0``: do not store it). ``cache_if(value)``: a false answer returns
        the value without storing it. ``tags``: ``invalidate_tags()`` of any of
        them makes the entry unreadable (the entry and its tags are read in one
        round trip).
        """
        callable_arg(loader, "loader")
        if ttl is None and cache_if is None and not tags:
            spec = self._default_spec  # the common call, without building rules
        else:
            spec = self._spec(ttl, tags, cache_if)
        return await self._loader.get_or_load(self._keys.key(key), loader, spec)

    async def get_or_load_many(
        self,
        keys: Iterable[KeyT],
        loader: Callable[[list[Any]], Awaitable[Mapping[Any, T]]],
        ttl: Seconds | Callable[[T], Seconds | None] | None = None,
        *,
        tags: Iterable[str] = (),
        cache_if: Callable[[T], object] | None = None,
        cache_missing: bool = False,
    ) -> dict[Any, T]:
        """``{key: value}`` for ``keys``: the hits from one read, the misses from one
        ``await loader(missing_keys)`` returning ``{key: value}``.

        One round trip for the hits (one pipeline per node on a cluster, shared
        with concurrent reads). Each missing key is loaded as ``get_or_load``
        loads it: single-flight in this process (a concurrent ``get_or_load`` of
        a key being bulk-loaded shares the bulk load, and the other way round)
        and the recompute lock per key across processes (keys another process
        is loading are waited for, not loaded twice). A key the loader does not
        return is not cached and is left out of the result; with
        ``cache_missing=True`` it is cached and returned as ``None``. The
        loader gets the keys as given (the first of those naming the same
        entry); its result is looked up with them. ``ttl``, ``tags`` and
        ``cache_if`` as in ``get_or_load``. A loader error reaches the caller
        (and every ``get_or_load`` sharing the load) and nothing is cached.
        """
        callable_arg(loader, "loader")
        if isinstance(keys, (str, bytes)):
            raise TypeError("keys must be an iterable of keys, not a single key")
        if not isinstance(cache_missing, bool):
            raise TypeError("cache_missing must be a bool")
        return await load_many(
            self._loader,
            keys,
            self._keys,
            loader,
            self._spec(ttl, tags, cache_if),
            cache_missing=cache_missing,
        )

    async def _get_or_load_spec(
        self, key: KeyT, loader: Callable[[], Awaitable[T]], spec: Spec
    ) -> T:
        """``get_or_load`` with rules made by ``_spec`` (the decorator's way in)."""
        return await self._loader.get_or_load(self._keys.key(key), loader, spec)

    def _spec(
        self,
        ttl: object,
        tags: Iterable[object] = (),
        cache_if: Callable[[Any], object] | None = None,
        loads: Callable[[bytes], Any] | None = None,
    ) -> Spec:
        """The rules of one call, checked (``TypeError``/``ValueError`` naming the argument)."""
        if ttl is None and not tags and cache_if is None and loads is None:
            return self._default_spec  # the common call, kept cheap
        memo_key = (ttl, tags, cache_if, loads) if type(tags) is tuple else None
        if memo_key is not None:
            try:
                known = self._specs.get(memo_key)
            except TypeError:  # something unhashable: checked below
                memo_key = known = None
            if known is not None:
                return known
        spec = self._new_spec(ttl, tags, cache_if, loads)
        if memo_key is not None:
            if len(self._specs) >= 4096:
                self._specs.clear()
            self._specs[memo_key] = spec
        return spec

    def _new_spec(
        self,
        ttl: object,
        tags: Iterable[object],
        cache_if: Callable[[Any], object] | None,
        loads: Callable[[bytes], Any] | None,
    ) -> Spec:
        if cache_if is not None:
            callable_arg(cache_if, "cache_if")
        tag_keys = self._tags.keys(tags) if tags else ()
        if callable(ttl) and not isinstance(ttl, timedelta):
            return Spec(self._ttl, ttl_of=ttl, cache_if=cache_if, tag_keys=tag_keys, loads=loads)
        if ttl is None and cache_if is None and not tag_keys and loads is None:
            return self._default_spec
        ttl_s = self._ttl if ttl is None else _ttl_seconds(ttl)
        return Spec(ttl_s, cache_if=cache_if, tag_keys=tag_keys, loads=loads)

    def _typed_loads(self, tp: Any) -> Callable[[bytes], Any] | None:
        """A decoder of stored payloads into ``tp``; None for ``Any`` or if the
        serializer has no typed decoding (``loads_as``)."""
        if tp is Any or tp is None or self._io.codec.bound:
            return None
        loads_as = getattr(self._serializer, "loads_as", None)
        return loads_as(tp) if callable(loads_as) else None

    async def _stamps(self, raws: list[bytes | None], operation: str) -> list[bytes | None]:
        """The current stamps of tagged entries read without tags (fail-open: unknown)."""
        if not any(raw is not None and raw.startswith(MAGIC_TAGGED) for raw in raws):
            return [None] * len(raws)
        try:
            return await self._tags.stamps_of(raws)
        except RedisUnavailable as exc:
            self._io.redis_failed(operation, exc)
            return [
                UNKNOWN if raw is not None and raw.startswith(MAGIC_TAGGED) else None
                for raw in raws
            ]

    # -- decorator -------------------------------------------------------------

    def cached(
        self,
        ttl: Seconds | Callable[[Any], Seconds | None] | None = None,
        key: str | None = None,
        *,
        shared: bool = False,
        tags: Iterable[str] = (),
        cache_if: Callable[[Any], object] | None = None,
        typed: bool = True,
    ) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
        """Cache an async function's results, keyed by its arguments.

        ``key`` is a ``str.format()`` template over the function's parameters
        (``"post:{post_id}"``, ``"user:{user.id}"``); without one, the key is the
        function's qualified name and its arguments, which must then be of
        simple types (str, bytes, int, float, bool, None). Field values are
        escaped (``%`` and ``:`` become ``%25`` and ``%3A``), so a value never
        forms another key.

        A function's keys are its own: they start with its qualified name
        (``fn.key_for(...)`` tells the key). ``shared=True`` makes the key the
        template alone, as written: shared with every other function and direct
        call (``cache.get("post:1")``) that names it.

        ``tags`` are templates like ``key`` (``"user:{author_id}"``, ``"posts"``):
        ``cache.invalidate_tags(...)`` of any of them drops the entry.
        ``cache_if(result)`` and a callable ``ttl`` work as in ``get_or_load``.

        ``typed``: on a hit, the value is decoded to the function's return
        annotation (``-> Post`` gives a ``Post``, ``-> list[Post]`` a list of
        them; pydantic models, dataclasses, ``datetime``, ``UUID``, ``Decimal``,
        ``Enum``...) when the serializer can (``JsonSerializer.loads_as``); a
        stored value that does not fit the type is a miss.

        The wrapper keeps the function's signature and has
        ``await fn.invalidate(*args, **kwargs)``, ``fn.key_for(*args, **kwargs)``
        and ``fn.tags_for(*args, **kwargs)``.
        """
        self._spec(ttl, (), cache_if)  # bad ttl or cache_if: refused here, not at the call

        def decorate(fn: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
            return CachedFunction(
                self, fn, ttl, key, shared, tags=tags, cache_if=cache_if, typed=typed
            )

        return decorate

    # -- lifecycle and stats ---------------------------------------------------

    @property
    def stats(self) -> CacheStats:
        """Counters since construction, as a frozen snapshot."""
        return self._counters.snapshot()

    async def __aenter__(self) -> Cache:
        """Use the cache for the block; leaving it closes the cache (see ``aclose()``)."""
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
        await self._loader.aclose()
        if self._io.near is not None:
            await self._io.near.aclose()

    def _ttl_arg(self, ttl: Seconds | None) -> float:
        return self._ttl if ttl is None else _ttl_seconds(ttl)


#: The operations that make a span when tracing is on (method: span name).
_SPANS: Final = {
    name: f"cache.{name}"
    for name in (
        "get",
        "get_many",
        "set",
        "set_many",
        "delete",
        "write_through",
        "get_or_load",
        "get_or_load_many",
        "invalidate_tags",
    )
}


def _ttl_seconds(ttl: object) -> float:
    value = seconds(ttl, "ttl")
    milliseconds(value, "ttl")
    return value
