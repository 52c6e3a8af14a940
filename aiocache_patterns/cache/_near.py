"""The near cache: stored entries kept in process memory, dropped by Redis itself.

A near copy is the raw envelope a GET returned (bytes), kept beside its
freshness deadline. A near hit hands those bytes to the same decoding as a
reply from Redis, so every caller gets a value of its own (isolation), and
XFetch, ``refresh_after`` and ``stale_ttl`` see the same envelope they would
have read from Redis.

Invalidation is Redis's client tracking in broadcast mode for the cache's
namespace (``_redis/tracking.py``): any change of a key under the namespace,
by anybody, drops the near copy. While the stream is down, the near cache is
empty and bypassed.

The race between a read's reply and an invalidation (they travel on
different connections) is closed by the *pending reads* table: a read of a key
takes a ticket before it is sent (the key's invalidation count and the
stream's epoch at that moment); its reply is kept only if, when it arrives,
no invalidation of that key and no loss of the stream happened since. The
table holds only keys with reads in flight.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from .._redis.tracking import InvalidationListener, tracking_supported
from .._validate import Seconds, positive_int, seconds_or_none

if TYPE_CHECKING:
    from ._stats import Counters

__all__ = ["NearCache", "NearStore", "near_store_for", "plain_envelope"]

logger = logging.getLogger("aiocache_patterns.cache")

#: Bytes counted per entry on top of its key and envelope (dict slot, tuple, float).
ENTRY_OVERHEAD: Final = 160

#: Seconds a check that no invalidation waits unread stays good for the hit path
#: (one ``poll()`` system call per this much time, not one per hit). A copy is
#: served only if the stream was seen drained this recently, so a read that starts
#: later than this after Redis sent an invalidation never gets the old copy.
HEARD_CHECK: Final = 0.001

_MAGIC: Final = b"\xac\x01"
_FRESH_UNTIL: Final = struct.Struct(">d")
_FRESH_UNTIL_AT: Final = 18  # after magic, created, delta
_HEADER_SIZE: Final = 26


class NearCache:
    """Settings of a cache's in-process near cache (``Cache(..., near=NearCache(...))``).

    Args:
        max_entries: entries kept at most (least recently used dropped first).
        max_bytes: bytes kept at most, counting keys, envelopes and a fixed
            per-entry overhead.
        ttl: a cap on how long a near copy is kept (seconds); by default it is
            kept until it stops being fresh or Redis says it changed.
        keep: a predicate over the Redis key (``bytes``, ``<namespace>:{<key>}``):
            only keys for which it returns True are kept near.
    """

    __slots__ = ("keep", "max_bytes", "max_entries", "ttl")

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 2**20,
        *,
        ttl: Seconds | None = None,
        keep: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.max_entries = positive_int(max_entries, "max_entries")
        self.max_bytes = positive_int(max_bytes, "max_bytes")
        self.ttl = seconds_or_none(ttl, "ttl")
        if keep is not None and not callable(keep):
            raise TypeError("keep must be a callable of the Redis key, or None")
        self.keep = keep

    def __repr__(self) -> str:
        return (
            f"NearCache(max_entries={self.max_entries}, max_bytes={self.max_bytes}, "
            f"ttl={self.ttl})"
        )


class _Pending:
    """Reads of one key in flight, and how many invalidations of it were heard."""

    __slots__ = ("invalidations", "readers")

    def __init__(self) -> None:
        self.readers = 0
        self.invalidations = 0


def plain_envelope(raw: bytes) -> bool:
    """Whether ``raw`` is a plain cache envelope (``_entry.py``'s layout, version 1):
    the only form a near copy is kept of."""
    return len(raw) >= _HEADER_SIZE and raw.startswith(_MAGIC)


class NearStore:
    """One cache's near copies, their invalidation stream and the pending reads."""

    def __init__(
        self,
        settings: NearCache,
        client: Any,
        prefix: bytes,
        counters: Counters,
        clock: Callable[[], float],
        max_value_bytes: int,
    ) -> None:
        self._settings = settings
        self._max_value = max_value_bytes
        self._max_entries = settings.max_entries
        self._max_bytes = settings.max_bytes
        self._ttl = settings.ttl
        self._keep = settings.keep
        self._counters = counters
        self._clock = clock
        #: rkey -> (deadline, envelope); insertion order is recency (LRU first).
        self._entries: dict[bytes, tuple[float, bytes]] = {}
        self._bytes = 0
        self._pending: dict[bytes, _Pending] = {}
        #: Bumped on every loss of the stream: reads sent before it are not kept.
        self._epoch = 0
        #: When the invalidation stream was last seen drained (``lookup``).
        self._drained_at = -math.inf
        #: The stream is up: copies may be kept and served.
        self.active = False
        #: Which stored forms may be kept near (a hook: an entry whose validity depends
        #: on other keys, such as tag versions, must not be served from memory alone).
        self.keepable: Callable[[bytes], bool] = plain_envelope
        #: User key (``str``) -> Redis key, for the hit path (bounded like the entries).
        self.rkeys: dict[Any, bytes] = {}
        self._listener = InvalidationListener(
            client, prefix, on_keys=self._heard, on_state=self._stream_state
        )

    # -- the read path ---------------------------------------------------------------

    def lookup(self, rkey: bytes) -> bytes | None:
        """The envelope kept for ``rkey`` if it is still fresh; counts a near hit or miss.

        At most every ``HEARD_CHECK`` seconds it first asks whether an invalidation
        waits unread (one system call): a copy is served only if the stream was known
        drained less than ``HEARD_CHECK`` ago, so a change Redis reported before
        that is never answered from memory, however late the listener runs."""
        now = monotonic()
        if now - self._drained_at > HEARD_CHECK:
            if self._listener.unheard():
                self._counters.near_misses += 1
                return None
            self._drained_at = now
        entries = self._entries
        item = entries.pop(rkey, None)
        if item is not None:
            if item[0] > self._clock():
                entries[rkey] = item  # most recently used
                self._counters.near_hits += 1
                return item[1]
            self._bytes -= len(rkey) + len(item[1]) + ENTRY_OVERHEAD
        self._counters.near_misses += 1
        return None

    def remember(self, key: Any, rkey: bytes) -> bytes:
        """Note ``key``'s Redis key for the next lookups; return it."""
        if type(key) is str:
            rkeys = self.rkeys
            if len(rkeys) >= self._max_entries:
                rkeys.clear()
            rkeys[key] = rkey
        return rkey

    def begin(self, rkey: bytes) -> tuple[_Pending, int, int] | None:
        """A ticket for a read of ``rkey`` about to be sent (None: do not keep its reply)."""
        if not self.active:
            return None
        pending = self._pending.get(rkey)
        if pending is None:
            pending = self._pending[rkey] = _Pending()
        pending.readers += 1
        return pending, pending.invalidations, self._epoch

    def end(self, rkey: bytes, ticket: tuple[_Pending, int, int], raw: bytes | None) -> None:
        """The read of ``ticket`` is over (``raw``: its reply, None if it failed or found
        nothing); keep the envelope if nothing invalidated it since the read was sent."""
        pending, seen, epoch = ticket
        pending.readers -= 1
        if pending.readers == 0 and self._pending.get(rkey) is pending:
            del self._pending[rkey]
        if raw is None or pending.invalidations != seen or epoch != self._epoch or not self.active:
            return
        self._keep_copy(rkey, raw)

    # -- invalidation ----------------------------------------------------------------

    def forget(self, rkey: bytes) -> None:
        """Drop the copy of ``rkey`` and void the reads of it in flight (a local write)."""
        pending = self._pending.get(rkey)
        if pending is not None:
            pending.invalidations += 1
        item = self._entries.pop(rkey, None)
        if item is not None:
            self._bytes -= len(rkey) + len(item[1]) + ENTRY_OVERHEAD
            self._counters.near_invalidations += 1

    def clear(self) -> None:
        """Drop every copy and void every read in flight."""
        self._epoch += 1
        dropped = len(self._entries)
        self._entries.clear()
        self._bytes = 0
        self._counters.near_invalidations += dropped

    def ensure_started(self) -> None:
        self._listener.ensure_started()

    @property
    def listener(self) -> InvalidationListener:
        return self._listener

    async def aclose(self) -> None:
        await self._listener.aclose()

    def _heard(self, keys: list[bytes] | None) -> None:
        if keys is None:
            self.clear()
            return
        for key in keys:
            self.forget(key)

    def _stream_state(self, up: bool) -> None:
        self.clear()
        self.active = up

    # -- keeping ------------------------------------------------------------------------

    def _keep_copy(self, rkey: bytes, raw: bytes) -> None:
        if not self.keepable(raw):
            return
        if self._keep is not None and not self._keep(rkey):
            return
        deadline: float = _FRESH_UNTIL.unpack_from(raw, _FRESH_UNTIL_AT)[0]
        now = self._clock()
        if self._ttl is not None:
            deadline = min(deadline, now + self._ttl)
        if deadline <= now:
            return
        size = len(rkey) + len(raw) + ENTRY_OVERHEAD
        if size > self._max_bytes or len(raw) - _HEADER_SIZE > self._max_value:
            return
        entries = self._entries
        old = entries.pop(rkey, None)
        if old is not None:
            self._bytes -= len(rkey) + len(old[1]) + ENTRY_OVERHEAD
        while entries and (
            len(entries) >= self._max_entries or self._bytes + size > self._max_bytes
        ):
            lru = next(iter(entries))
            _, dropped = entries.pop(lru)
            self._bytes -= len(lru) + len(dropped) + ENTRY_OVERHEAD
            self._counters.near_evictions += 1
        entries[rkey] = (deadline, raw)
        self._bytes += size

    # -- introspection (tests, benchmarks) -------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes


def near_store_for(
    settings: NearCache | None,
    client: Any,
    prefix: bytes,
    counters: Counters,
    clock: Callable[[], float],
    max_value_bytes: int,
) -> NearStore | None:
    """The near store a cache with these settings uses, or None (no near cache, or a
    client without tracking: then bypassed, with one warning)."""
    if settings is None:
        return None
    if not isinstance(settings, NearCache):
        raise TypeError(f"near must be a NearCache or None, not {type(settings).__name__}")
    if not tracking_supported(client):
        logger.warning(
            "near cache bypassed: %s has no client tracking (Redis 6+ through redis-py "
            "needed); every read goes to Redis",
            type(client).__name__,
        )
        return None
    return NearStore(settings, client, prefix, counters, clock, max_value_bytes)
