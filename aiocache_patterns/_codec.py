"""Values to stored envelopes and back, with the size limit and the clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from . import _envelope
from ._validate import milliseconds
from .errors import SerializationError
from .serializers import Serializer

__all__ = ["Codec", "Entry", "UndecodableEntry"]

UndecodableEntry = (_envelope.EnvelopeError, SerializationError)


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

    def decode(self, raw: bytes) -> Entry:
        """Raise one of ``UndecodableEntry`` if ``raw`` is not an entry we can read."""
        created, delta, fresh_until = _envelope.unpack_header(raw)
        value = self._serializer.loads(raw[_envelope.HEADER_SIZE :])
        return Entry(value, created, delta, fresh_until)
