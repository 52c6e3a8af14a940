"""What the fast paths read that redis-py and asyncio do not promise, checked once.

Two fast paths read private attributes:

* the executor's lone-caller test reads the event loop's ready queue
  (``loop._ready``, the ``deque`` of asyncio's ``BaseEventLoop``): a caller
  that finds it empty has nobody to share a round trip with and is sent at
  once, without a loop iteration spent waiting for company;
* the direct path (``_direct.py``, ``_cluster.py``) writes to a redis-py
  connection's ``_writer`` (an ``asyncio.StreamWriter``) without the
  ``asyncio.wait_for`` task ``send_packed_command`` spawns per write, and
  finds a connection the server closed while it was idle from its ``_reader``
  (an ``asyncio.StreamReader``: ``at_eof()``, ``exception()``, ``_buffer``),
  which is what lets the executor keep a connection (the lane) out of the
  pool between calls.
* the pipelines read their replies from a connection's reply parser
  (``_parser.read_response``) when it is one of redis-py's (``_wire.py``
  checks its class on the first connected connection).

Each is checked where it is first needed: the ready queue when the executor
binds to a loop, the connection's attributes when its class is first seen
(``__slots__`` names them) and again, by type, on the first connected
connection. What is missing or not of the expected type turns that path off
and the public API takes over: under uvloop (whose loop is compiled and
exposes no ready queue) a caller is sent at once when nothing of its client is
in flight or waiting; without the connection internals writes go through
``send_packed_command`` and there is no lane (every call checks a connection
out of the pool, whose checkout probe finds a dropped one).

``AIOCACHE_PATTERNS_FAST_PATHS=0`` in the environment (read at import), or
``FAST_PATHS = False`` here before a client is first used, turns all of them
off: the test suite runs the executor and cache tests that way too.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Sized
from typing import Any

__all__ = ["FAST_PATHS", "has_stream_internals", "ready_queue", "stream_internals_expected"]


def _enabled(value: str) -> bool:
    return value.strip().lower() not in {"0", "false", "no", "off"}


#: Whether the fast paths may be used at all (see the module docs).
FAST_PATHS: bool = _enabled(os.environ.get("AIOCACHE_PATTERNS_FAST_PATHS", "1"))


def ready_queue(loop: asyncio.AbstractEventLoop) -> Sized | None:
    """The loop's queue of callbacks ready to run this iteration, if it exposes one."""
    if not FAST_PATHS:
        return None
    ready = getattr(loop, "_ready", None)
    return ready if isinstance(ready, collections.deque) else None


def stream_internals_expected(connection_class: Any) -> bool:
    """Whether ``connection_class`` declares the stream attributes the direct path reads."""
    return (
        FAST_PATHS
        and isinstance(connection_class, type)
        and hasattr(connection_class, "_reader")
        and hasattr(connection_class, "_writer")
    )


def has_stream_internals(conn: Any) -> bool:
    """Whether the connected ``conn`` holds the stream objects the direct path reads."""
    reader = getattr(conn, "_reader", None)
    writer = getattr(conn, "_writer", None)
    return (
        isinstance(reader, asyncio.StreamReader)
        and isinstance(getattr(reader, "_buffer", None), (bytes, bytearray))
        and isinstance(writer, asyncio.StreamWriter)
    )
