"""Reading and writing cache entries: the counting, logging and fail-open every path shares."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..errors import RedisOutOfMemory, RedisUnavailable
from ._codec import MISS, Codec, Entry, UndecodableEntry

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._redis.executor import Executor
    from ._stats import Counters

__all__ = ["EntryIO"]

logger = logging.getLogger("aiocache_patterns.cache")


class EntryIO:
    """One cache's view of its entries in Redis."""

    __slots__ = (
        "_clock",
        "_last_error_log",
        "_warned_keys",
        "codec",
        "counters",
        "executor",
        "fail_open",
        "timeout",
    )

    def __init__(
        self,
        executor: Executor,
        codec: Codec,
        counters: Counters,
        *,
        timeout: float,
        fail_open: bool,
        clock: Callable[[], float],
    ) -> None:
        self.executor = executor
        self.codec = codec
        self.counters = counters
        self.timeout = timeout
        self.fail_open = fail_open
        self._clock = clock
        self._warned_keys: set[bytes] = set()
        self._last_error_log = 0.0

    def now(self) -> float:
        return self._clock()

    async def read(self, rkey: bytes, operation: str) -> bytes | None:
        """GET ``rkey``; None if absent, or if Redis failed and the cache fails open."""
        try:
            return await self.executor.get(rkey, self.timeout)
        except RedisUnavailable as exc:
            self.redis_failed(operation, exc)
            return None

    async def write(self, rkey: bytes, data: bytes, px: int, operation: str) -> None:
        """SET ``rkey`` with its TTL; a Redis failure is counted (raised unless failing open)."""
        try:
            await self.executor.command("SET", rkey, data, "PX", px, timeout=self.timeout)
        except RedisUnavailable as exc:
            self.redis_failed(operation, exc)

    async def replace(self, rkey: bytes, data: bytes, px: int, operation: str) -> None:
        """SET ``rkey``, and never leave its old value readable when Redis is full.

        A full Redis (``RedisOutOfMemory``) refuses the SET but still deletes:
        the old entry is deleted, so readers load the new value from the source.
        The failure is counted and logged (raised unless failing open).
        """
        try:
            await self.executor.command("SET", rkey, data, "PX", px, timeout=self.timeout)
        except RedisOutOfMemory as exc:
            await self.drop([rkey], operation)
            self.redis_failed(operation, exc)
        except RedisUnavailable as exc:
            self.redis_failed(operation, exc)

    async def drop(self, rkeys: list[bytes], operation: str) -> None:
        """DEL entries whose new value could not be stored; say so loudly if that fails too."""
        try:
            replies = await self.executor.commands([("DEL", k) for k in rkeys], self.timeout)
            failed = [r for r in replies if isinstance(r, BaseException)]
        except RedisUnavailable as exc:
            failed = [exc]
        if failed:
            self.counters.errors += 1
            logger.error(
                "%s: Redis refused the new value of %d key(s) and could not delete the old "
                "one (%s); it may be served until its TTL ends",
                operation,
                len(rkeys),
                failed[0],
            )

    def decode(self, rkey: bytes, raw: bytes | None, *, count: bool = True) -> Entry | None:
        """The entry in ``raw``; None if absent or undecodable (counted and logged once)."""
        if raw is None:
            return None
        try:
            return self.codec.decode(raw, rkey)
        except UndecodableEntry as exc:
            if count:
                self.counters.decode_errors += 1
                self._warn_undecodable(rkey, exc)
            return None

    def fresh_value(self, rkey: bytes, raw: bytes | None) -> Any:
        """The value if ``raw`` is a fresh entry, else ``MISS``; counts a hit or a miss."""
        if raw is not None:
            try:
                value = self.codec.value_if_fresh(raw, self._clock(), rkey)
            except UndecodableEntry as exc:
                self.counters.decode_errors += 1
                self._warn_undecodable(rkey, exc)
            else:
                if value is not MISS:
                    self.counters.hits += 1
                    return value
        self.counters.misses += 1
        return MISS

    def fresh(self, rkey: bytes, raw: bytes | None) -> Entry | None:
        """The entry if it is fresh, counting a hit or a miss."""
        entry = self.decode(rkey, raw)
        if entry is None or entry.fresh_until <= self._clock():
            self.counters.misses += 1
            return None
        self.counters.hits += 1
        return entry

    def redis_failed(self, operation: str, exc: RedisUnavailable) -> None:
        """Count a Redis error; re-raise it unless the cache fails open."""
        self.counters.errors += 1
        if not self.fail_open:
            raise exc
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:  # one line a second, not one per call
            self._last_error_log = now
            logger.warning("Redis error during %s, failing open: %s", operation, exc)

    def _warn_undecodable(self, rkey: bytes, exc: Exception) -> None:
        if rkey in self._warned_keys:
            return
        if len(self._warned_keys) >= 1024:
            self._warned_keys.clear()
        self._warned_keys.add(rkey)
        logger.warning(
            "cached value under %r cannot be decoded (%s); treating it as a miss", rkey[:200], exc
        )
