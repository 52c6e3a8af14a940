"""The stored form of a cache entry: value plus the facts stampede control needs.

One GET returns everything: when the value was made, how long it took to make
(XFetch's *delta*), and until when it is fresh. Past ``fresh_until`` a value is
stale; Redis keeps it for the stale grace and then drops the key.

Layout (26 bytes of header, then the serializer's bytes)::

    0xAC 0x01 | created: f64 | delta: f64 | fresh_until: f64 | payload

With a signing serializer (signed pickle) the payload starts with an
HMAC-SHA256 over the entry's Redis key, this header and the pickle, so an
entry copied under another key, or with its times rewritten, is refused.

Times are Unix seconds from the writer's clock. Readers on other machines
compare them with their own clock, so clock skew shifts early recomputation and
staleness by the skew; Redis's own TTL still bounds the entry's life.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "Envelope",
    "EnvelopeError",
    "pack",
    "pack_header",
    "unpack",
    "unpack_header",
]

MAGIC: Final = b"\xac\x01"
_HEADER: Final = struct.Struct(">2sddd")
HEADER_SIZE: Final = _HEADER.size
#: ``(created, delta, fresh_until)`` from an envelope known to be long enough.
_TIMES: Final = struct.Struct(">ddd")


class EnvelopeError(ValueError):
    """The stored bytes are not an envelope this version can read."""


class Envelope(NamedTuple):
    created: float
    delta: float
    fresh_until: float
    payload: bytes


def pack(payload: bytes, *, created: float, delta: float, fresh_until: float) -> bytes:
    return _HEADER.pack(MAGIC, created, delta, fresh_until) + payload


def pack_header(*, created: float, delta: float, fresh_until: float) -> bytes:
    """The header alone; the envelope is the header followed by the payload."""
    return _HEADER.pack(MAGIC, created, delta, fresh_until)


def unpack_header(data: bytes) -> tuple[float, float, float]:
    """``(created, delta, fresh_until)``; the payload is ``data[HEADER_SIZE:]``."""
    if len(data) < HEADER_SIZE or not data.startswith(MAGIC):
        raise EnvelopeError("not a cache envelope (truncated, foreign or from another version)")
    times: tuple[float, float, float] = _TIMES.unpack_from(data, 2)
    return times


def unpack(data: bytes) -> Envelope:
    created, delta, fresh_until = unpack_header(data)
    return Envelope(created, delta, fresh_until, data[HEADER_SIZE:])
