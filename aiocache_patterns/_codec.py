"""Values to stored envelopes and back, with the size limit and the clock."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _envelope
from ._validate import milliseconds
from .errors import SerializationError
from .serializers import Serializer

__all__ = ["MISS", "Codec", "Entry", "UndecodableEntry"]

UndecodableEntry = (_envelope.EnvelopeError, SerializationError)

#: What :meth:`Codec.value_if_fresh` returns for an entry that is not fresh.
MISS: Any = object()

_FRESH_UNTIL = struct.Struct(">d")
_FRESH_UNTIL_AT = _envelope.HEADER_SIZE - _FRESH_UNTIL.size


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
    __slots__ = ("_clock", "_grace", "_max", "_serializer")

    def __init__(
        self,
        serializer: Serializer,
        *,
        max_value_bytes: int,
        grace: float,
        clock: Callable[[], float],
    ) -> None:
        self._serializer = serializer
        self._max = max_value_bytes
        self._grace = grace
        self._clock = clock

    def encode(self, value: Any, ttl: float, delta: float) -> tuple[bytes, int]:
        """``(envelope, PX milliseconds)``; refuses what the serializer cannot hold."""
        payload = self._serializer.dumps(value)
        if not isinstance(payload, (bytes, bytearray)):
            raise SerializationError("serializer.dumps must return bytes")
        if len(payload) > self._max:
            raise ValueError(
                f"value is {len(payload)} bytes serialized, over max_value_bytes={self._max}"
            )
        now = self._clock()
        data = _envelope.pack(bytes(payload), created=now, delta=delta, fresh_until=now + ttl)
        return data, milliseconds(ttl + self._grace, "ttl")

    def value_if_fresh(self, raw: bytes, now: float) -> Any:
        """The value if ``raw`` holds a fresh entry, else ``MISS``: the hit path,
        decoding only what it needs. Raises one of ``UndecodableEntry``."""
        if len(raw) < _envelope.HEADER_SIZE or not raw.startswith(_envelope.MAGIC):
            raise _envelope.EnvelopeError("not a cache envelope")
        if _FRESH_UNTIL.unpack_from(raw, _FRESH_UNTIL_AT)[0] <= now:
            return MISS
        return self._serializer.loads(raw[_envelope.HEADER_SIZE :])

    def decode(self, raw: bytes) -> Entry:
        """Raise one of ``UndecodableEntry`` if ``raw`` is not an entry we can read."""
        created, delta, fresh_until = _envelope.unpack_header(raw)
        value = self._serializer.loads(raw[_envelope.HEADER_SIZE :])
        return Entry(value, created, delta, fresh_until)
