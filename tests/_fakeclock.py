"""A controllable clock for fakeredis's server side (TIME and key expiry).

Property tests use it to replay arrival sequences at chosen instants without
sleeping: the library takes every time-dependent decision from the server's
``TIME``, so moving the fake server's clock moves the whole system.
"""

from __future__ import annotations

import time as real_time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import fakeredis._socket._base
import fakeredis.commands_mixins.server_mixin

# fakeredis reads ``time.time()`` through these two modules' ``time`` global.
_MODULES: tuple[Any, ...] = (fakeredis._socket._base, fakeredis.commands_mixins.server_mixin)

__all__ = ["ServerClock", "server_clock"]


class ServerClock:
    """Seconds since the epoch, as fakeredis will see them."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    def time(self) -> float:
        return self.now


@contextmanager
def server_clock(start: float = 1_800_000_000.0) -> Iterator[ServerClock]:
    """Replace the clock every fakeredis server in this process reads, for the block."""
    clock = ServerClock(start)
    shim: Any = SimpleNamespace(time=clock.time, monotonic=real_time.monotonic)
    saved = [module.time for module in _MODULES]
    for module in _MODULES:
        module.time = shim
    try:
        yield clock
    finally:
        for module, original in zip(_MODULES, saved, strict=True):
            module.time = original
