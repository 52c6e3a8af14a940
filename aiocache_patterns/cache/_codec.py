"""Values to stored envelopes and back, with the size limit and the clock."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from .._validate import milliseconds
from ..errors import SerializationError
from ..serializers import BoundSerializer, Serializer
from . import _envelope

__all__ = ["MISS", "Codec", "Entry", "UndecodableEntry"]

UndecodableEntry = (_envelope.EnvelopeError, SerializationError)

#: What :meth:`Codec.value_if_fresh` returns for an entry that is not fresh.
MISS: Any = object()

_HEADER_SIZE = _envelope.HEADER_SIZE
_FRESH_UNTIL = struct.Struct(">d")
_FRESH_UNTIL_AT = _HEADER_SIZE - _FRESH_UNTIL.size
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
    :class:`~aiocache_patterns.serializers.BoundSerializer`, payloads are bound
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

    def encode(self, value: Any, ttl: float, delta: float, rkey: bytes) -> tuple[bytes, int]:
        """``(envelope, PX milliseconds)`` for the entry under ``rkey``; refuses what
        the serializer cannot hold, and values over ``max_value_bytes``."""
        now = self._clock()
        header = _envelope.pack_header(created=now, delta=delta, fresh_until=now + ttl)
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

    def value_if_fresh(self, raw: bytes, now: float, rkey: bytes) -> Any:
        """The value if ``raw`` holds a fresh entry, else ``MISS``: the hit path,
        decoding only what it needs. Raises one of ``UndecodableEntry``."""
        if len(raw) < _HEADER_SIZE or not raw.startswith(_envelope.MAGIC):
            raise _envelope.EnvelopeError("not a cache envelope")
        if len(raw) - _HEADER_SIZE > self._max:
            raise self._too_big(raw)
        if _FRESH_UNTIL.unpack_from(raw, _FRESH_UNTIL_AT)[0] <= now:
            return MISS
        if self._bound is not None:
            return self._bound.loads_bound(raw[_HEADER_SIZE:], _context(rkey, raw[:_HEADER_SIZE]))
        return self._serializer.loads(raw[_HEADER_SIZE:])

    def decode(self, raw: bytes, rkey: bytes) -> Entry:
        """Raise one of ``UndecodableEntry`` if ``raw`` is not an entry we can read."""
        created, delta, fresh_until = _envelope.unpack_header(raw)
        if len(raw) - _HEADER_SIZE > self._max:
            raise self._too_big(raw)
        if self._bound is not None:
            value = self._bound.loads_bound(raw[_HEADER_SIZE:], _context(rkey, raw[:_HEADER_SIZE]))
        else:
            value = self._serializer.loads(raw[_HEADER_SIZE:])
        return Entry(value, created, delta, fresh_until)

    def _too_big(self, raw: bytes) -> _envelope.EnvelopeError:
        return _envelope.EnvelopeError(
            f"stored value is {len(raw) - _HEADER_SIZE} bytes, over "
            f"max_value_bytes={self._max}; not decoded"
        )


def _context(rkey: bytes, header: bytes) -> bytes:
    """What a bound payload is bound to: its Redis key (length-prefixed) and header."""
    return _KEY_LENGTH.pack(len(rkey)) + rkey + header
