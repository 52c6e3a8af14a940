"""A cache entry: its stored form, encoding and decoding, reading and writing it.

One GET returns everything stampede control needs with the value: when it
was made, how long it took to make (XFetch's *delta*), and until when it is
fresh. Past ``fresh_until`` a value is stale; Redis keeps it for the stale
grace and then drops the key.

Layout (26 bytes of header, then the serializer's bytes)::

    0xAC 0x01 | created: f64 | delta: f64 | fresh_until: f64 | payload

With a signing serializer (signed pickle) the payload starts with an
HMAC-SHA256 over the entry's Redis key, this header and the pickle, so an
entry copied under another key, or with its times rewritten, is refused.

Times are Unix seconds from the writer's clock. Readers on other machines
compare them with their own clock, so clock skew shifts early recomputation and
staleness by the skew; Redis's own TTL still bounds the entry's life.

* ``Codec`` turns values into envelopes for one cache and back, with the
  size limit (checked before decoding too) and the clock;
* ``EntryIO`` reads and writes entries in Redis with the counting,
  logging and fail-open every path of the cache shares.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .._validate import milliseconds
from ..errors import RedisOutOfMemory, RedisUnavailable, SerializationError
from ..serializers import BoundSerializer, Serializer
from ._tags import MAGIC_TAGGED, UNKNOWN, section_end

if TYPE_CHECKING:
    from .._redis.executor import Executor
    from ._near import NearStore
    from ._spec import Spec
    from ._stats import Counters

__all__ = ["HEADER_SIZE", "MAGIC", "MISS", "Codec", "Entry", "EntryIO", "EnvelopeError", "pack"]

logger = logging.getLogger("aiocache_patterns.cache")


# -- the stored form ---------------------------------------------------------------

MAGIC: Final = b"\xac\x01"
_HEADER: Final = struct.Struct(">2sddd")
HEADER_SIZE: Final = _HEADER.size
#: ``(created, delta, fresh_until)`` from an envelope known to be long enough.
_TIMES: Final = struct.Struct(">ddd")


class EnvelopeError(ValueError):
    """The stored bytes are not an envelope this version can read."""


class TagMismatch(EnvelopeError):
    """The entry's tags, or their versions, are not the reader's: it was invalidated."""


def pack(payload: bytes, *, created: float, delta: float, fresh_until: float) -> bytes:
    return _HEADER.pack(MAGIC, created, delta, fresh_until) + payload


def pack_header(*, created: float, delta: float, fresh_until: float) -> bytes:
    """The header alone; the envelope is the header followed by the payload."""
    return _HEADER.pack(MAGIC, created, delta, fresh_until)


# -- values to envelopes and back -----------------------------------------------------

#: What a stored entry that cannot be read raises.
UndecodableEntry: Final = (EnvelopeError, SerializationError)

#: What ``Codec.value_if_fresh()`` returns for an entry that is not fresh.
MISS: Any = object()

_FRESH_UNTIL = struct.Struct(">d")
_FRESH_UNTIL_AT = HEADER_SIZE - _FRESH_UNTIL.size
_KEY_LENGTH = struct.Struct(">I")


class Entry(NamedTuple):
    """A decoded cache entry."""

    value: Any
    #: When it was made (writer's clock, Unix seconds).
    created: float
    #: How long the loader took to make it, in seconds.
    delta: float
    #: Until when it is fresh; after that it is stale (kept for the grace).
    fresh_until: float


class Codec:
    """Encodes values into envelopes for one cache, and reads them back.

    A stored payload larger than ``max_value_bytes`` is refused before it is
    decoded (a foreign or forged value can cost no more than the limit). With a
    ``BoundSerializer``, payloads are bound
    to their Redis key and envelope header.
    """

    __slots__ = ("_bound", "_clock", "_grace", "_max", "_serializer")

    def __init__(
        self,
        serializer: Serializer,
        *,
        max_value_bytes: int,
        grace: float,
        clock: Callable[[], float],
    ) -> None:
        self._serializer = serializer
        self._bound = serializer if isinstance(serializer, BoundSerializer) else None
        self._max = max_value_bytes
        self._grace = grace
        self._clock = clock

    def encode(
        self, value: Any, ttl: float, delta: float, rkey: bytes, stamp: bytes | None = None
    ) -> tuple[bytes, int]:
        """``(envelope, PX milliseconds)`` for the entry under ``rkey``; refuses what
        the serializer cannot hold, and values over ``max_value_bytes``.

        ``stamp``: the tag versions the entry is written under (``_tags``)."""
        now = self._clock()
        header = pack_header(created=now, delta=delta, fresh_until=now + ttl)
        if stamp is not None:
            header = MAGIC_TAGGED + header[2:] + stamp
        bound = self._bound
        if bound is None:
            payload = self._serializer.dumps(value)
        else:
            payload = bound.dumps_bound(value, _context(rkey, header))
        if not isinstance(payload, (bytes, bytearray)):
            raise SerializationError("serializer.dumps must return bytes")
        if len(payload) > self._max:
            raise ValueError(
                f"value is {len(payload)} bytes serialized, over max_value_bytes={self._max}"
            )
        return header + payload, milliseconds(ttl + self._grace, "ttl")

    @property
    def bound(self) -> bool:
        """Whether payloads are bound to their context (signed pickle): no typed decoding."""
        return self._bound is not None

    def px(self, ttl: float) -> int:
        """The PX milliseconds of an entry fresh for ``ttl`` seconds (grace included)."""
        return milliseconds(ttl + self._grace, "ttl")

    def value_if_fresh(
        self,
        raw: bytes,
        now: float,
        rkey: bytes,
        stamp: bytes | None = None,
        loads: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """The value if ``raw`` holds a fresh entry, else ``MISS``: the hit path,
        decoding only what it needs. Raises one of ``UndecodableEntry``
        (``TagMismatch`` if its tags are not ``stamp``'s versions).

        ``stamp``: the reader's tag versions (``None``: the reader has no tags);
        ``loads``: a typed decoder to use instead of the serializer's."""
        if len(raw) < HEADER_SIZE:
            raise EnvelopeError("not a cache envelope")
        start = HEADER_SIZE if stamp is None and raw.startswith(MAGIC) else self._start(raw, stamp)
        if len(raw) - start > self._max:
            raise self._too_big(raw)
        if _FRESH_UNTIL.unpack_from(raw, _FRESH_UNTIL_AT)[0] <= now:
            return MISS
        if self._bound is not None:
            return self._bound.loads_bound(raw[start:], _context(rkey, raw[:start]))
        return (loads or self._serializer.loads)(raw[start:])

    @property
    def plain_loads(self) -> Callable[[bytes], Any] | None:
        """The serializer's ``loads`` when a payload decodes without its context (not
        bound, as signed pickle is): what a near hit decodes with directly."""
        return None if self._bound is not None else self._serializer.loads

    def payload_value(self, raw: bytes, rkey: bytes) -> Any:
        """The value of an envelope already known to be fresh and within the size limit
        (a near copy). Raises one of ``UndecodableEntry``."""
        if self._bound is not None:
            return self._bound.loads_bound(raw[HEADER_SIZE:], _context(rkey, raw[:HEADER_SIZE]))
        return self._serializer.loads(raw[HEADER_SIZE:])

    def decode(
        self,
        raw: bytes,
        rkey: bytes,
        stamp: bytes | None = None,
        loads: Callable[[bytes], Any] | None = None,
    ) -> Entry:
        """Raise one of ``UndecodableEntry`` if ``raw`` is not an entry we can read
        (``TagMismatch`` if its tags are not ``stamp``'s versions)."""
        if len(raw) < HEADER_SIZE:
            raise EnvelopeError("not a cache envelope")
        if stamp is None and raw.startswith(MAGIC):
            start = HEADER_SIZE  # untagged, read without tags: the common case
        else:
            start = self._start(raw, stamp)
        created, delta, fresh_until = _TIMES.unpack_from(raw, 2)
        if len(raw) - start > self._max:
            raise self._too_big(raw)
        if self._bound is not None:
            value = self._bound.loads_bound(raw[start:], _context(rkey, raw[:start]))
        else:
            value = (loads or self._serializer.loads)(raw[start:])
        return Entry(value, created, delta, fresh_until)

    @staticmethod
    def _start(raw: bytes, stamp: bytes | None) -> int:
        """Where the payload starts, if the entry's tags are the reader's (``stamp``)."""
        if raw.startswith(MAGIC):
            if stamp is None:
                return HEADER_SIZE
            raise TagMismatch("an untagged entry, read with tags")
        if not raw.startswith(MAGIC_TAGGED):
            raise EnvelopeError("not a cache envelope (foreign or from another version)")
        if stamp is None or stamp is UNKNOWN or not raw.startswith(stamp, HEADER_SIZE):
            try:
                section_end(raw, HEADER_SIZE)
            except (ValueError, struct.error):
                raise EnvelopeError("a tagged envelope with a broken tag section") from None
            raise TagMismatch("a tag of the entry was invalidated")
        return HEADER_SIZE + len(stamp)

    def _too_big(self, raw: bytes) -> EnvelopeError:
        return EnvelopeError(
            f"stored value is {len(raw) - HEADER_SIZE} bytes, over "
            f"max_value_bytes={self._max}; not decoded"
        )


def _context(rkey: bytes, header: bytes) -> bytes:
    """What a bound payload is bound to: its Redis key (length-prefixed) and header."""
    return _KEY_LENGTH.pack(len(rkey)) + rkey + header


# -- entries in Redis ---------------------------------------------------------------


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
        "near",
        "near_loads",
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
        #: The near cache (process memory in front of Redis), if there is one.
        self.near: NearStore | None = None
        #: How a near copy's payload decodes on the hit path (None: ``near_value()``).
        self.near_loads = codec.plain_loads

    def now(self) -> float:
        return self._clock()

    async def read(self, rkey: bytes, operation: str) -> bytes | None:
        """GET ``rkey`` (from the near cache if it holds it); None if absent, or if
        Redis failed and the cache fails open."""
        try:
            if self.near is not None:
                return await self.fetch(rkey)
            return await self.executor.get(rkey, self.timeout)
        except RedisUnavailable as exc:
            self.redis_failed(operation, exc)
            return None

    async def fetch(self, rkey: bytes) -> bytes | None:
        """GET ``rkey``, from the near cache if it holds a fresh copy; a reply from Redis
        is kept near if nothing invalidated the key while it travelled. Raises
        ``RedisUnavailable``."""
        near = self.near
        if near is None:
            return await self.executor.get(rkey, self.timeout)
        if near.active:
            raw = near.lookup(rkey)
            if raw is not None:
                return raw
        return await self.fetch_remote(rkey)

    async def fetch_remote(self, rkey: bytes) -> bytes | None:
        """GET ``rkey`` from Redis (the near cache did not have it); keep the reply near
        if nothing invalidated the key while it travelled. Raises ``RedisUnavailable``."""
        near = self.near
        ticket = None
        if near is not None:
            ticket = near.begin(rkey)
            if ticket is None:
                near.ensure_started()
        if ticket is None:
            return await self.executor.get(rkey, self.timeout)
        assert near is not None
        raw = None
        try:
            raw = await self.executor.get(rkey, self.timeout)
        finally:
            near.end(rkey, ticket, raw)
        return raw

    async def read_remote(self, rkey: bytes, operation: str) -> bytes | None:
        """``read()`` after the near cache was asked and did not have it."""
        try:
            return await self.fetch_remote(rkey)
        except RedisUnavailable as exc:
            self.redis_failed(operation, exc)
            return None

    async def fetch_many(self, rkeys: list[bytes]) -> list[bytes | None]:
        """GET every key in one round trip, the near cache answering what it holds.
        Raises ``RedisUnavailable``."""
        near = self.near
        if near is None or not near.active:
            if near is not None:
                near.ensure_started()
            return await self.executor.get_many(rkeys, self.timeout)
        raws: list[bytes | None] = [near.lookup(k) for k in rkeys]
        missing = [i for i, raw in enumerate(raws) if raw is None]
        if not missing:
            return raws
        wanted = [rkeys[i] for i in missing]
        tickets = [near.begin(k) for k in wanted]
        got: list[bytes | None] = [None] * len(wanted)
        try:
            got = await self.executor.get_many(wanted, self.timeout)
        finally:
            for k, ticket, raw in zip(wanted, tickets, got, strict=True):
                if ticket is not None:
                    near.end(k, ticket, raw)
        for i, raw in zip(missing, got, strict=True):
            raws[i] = raw
        return raws

    def forget(self, rkeys: list[bytes]) -> None:
        """This process writes these keys: drop their near copies, void reads in flight."""
        near = self.near
        if near is not None:
            for rkey in rkeys:
                near.forget(rkey)

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

    def decode(
        self, rkey: bytes, raw: bytes | None, *, count: bool = True, spec: Spec | None = None
    ) -> Entry | None:
        """The entry in ``raw``; None if absent, invalidated by a tag (``spec.stamp``),
        or undecodable (counted and logged once)."""
        if spec is None:
            return self.decode_as(rkey, raw, count=count)
        return self.decode_as(rkey, raw, spec.stamp, spec.loads, count=count)

    def decode_as(
        self,
        rkey: bytes,
        raw: bytes | None,
        stamp: bytes | None = None,
        loads: Callable[[bytes], Any] | None = None,
        *,
        count: bool = True,
    ) -> Entry | None:
        """``decode()`` with the reader's tag versions and decoder given one by one."""
        if raw is None:
            return None
        try:
            return self.codec.decode(raw, rkey, stamp, loads)
        except TagMismatch:
            return None
        except UndecodableEntry as exc:
            if count:
                self.counters.decode_errors += 1
                self._warn_undecodable(rkey, exc)
            return None

    def fresh_value(
        self,
        rkey: bytes,
        raw: bytes | None,
        stamp: bytes | None = None,
        loads: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """The value if ``raw`` is a fresh entry, else ``MISS``; counts a hit or a miss.

        ``stamp``: the reader's tag versions (an entry whose tags differ is a miss)."""
        if raw is not None:
            try:
                value = self.codec.value_if_fresh(raw, self._clock(), rkey, stamp, loads)
            except TagMismatch:
                pass
            except UndecodableEntry as exc:
                self.counters.decode_errors += 1
                self._warn_undecodable(rkey, exc)
            else:
                if value is not MISS:
                    self.counters.hits += 1
                    return value
        self.counters.misses += 1
        return MISS

    def near_value(self, rkey: bytes, raw: bytes) -> Any:
        """The value of a near copy (fresh, checked when it was kept); counts a hit.
        One that cannot be decoded is a miss, like one read from Redis."""
        try:
            value = self.codec.payload_value(raw, rkey)
        except UndecodableEntry:
            return self.fresh_value(rkey, raw)
        self.counters.hits += 1
        return value

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
