"""The soak's fault schedule, and the clock that says when a degradation is expected.

A schedule is a fixed list of phases (the same every run): healthy stretches,
and faults injected through a :class:`~tests._proxy.FaultProxy` in front of a
private ``redis-server`` (latency below and above the operation timeout, a
stall, connection resets, refused connections) or on the server itself (a
``SIGKILL`` and a restart: every key lost). A fault that should degrade opens
a *window*; the window stays open ``grace`` seconds after the fault ends, the
time the circuit breaker may still be cooling down (its pause doubles up to
5 s while Redis stays down) and connections are being made again. A
degradation inside a window is expected; one outside every window is not.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from tests._proxy import FaultProxy
from tests._servers import RedisProcess

__all__ = [
    "MAX_BREAKER_PAUSE",
    "Phase",
    "PhaseRecord",
    "Timeline",
    "Window",
    "inject",
    "schedule",
]

Kind = Literal["healthy", "latency", "stall", "resets", "refuse", "kill", "burst"]

#: The circuit breaker's longest pause (seconds) between trial calls.
MAX_BREAKER_PAUSE: Final = 5.0
#: Extra allowance for a busy 2-CPU machine on top of every computed bound.
SLACK: Final = 1.0


@dataclass(frozen=True)
class Phase:
    kind: Kind
    seconds: float
    #: latency: seconds added to every reply; resets: seconds between resets.
    value: float = 0.0

    def label(self, timeout: float) -> str:
        if self.kind == "latency":
            side = "below" if self.value < timeout else "above"
            return f"latency +{self.value * 1000:.0f} ms ({side} the {timeout:g} s timeout)"
        return {
            "healthy": "healthy",
            "stall": "stall, then resume",
            "resets": f"connection resets every {self.value:g} s",
            "refuse": "connections refused",
            "kill": "redis-server killed, restarted empty",
            "burst": "burst: 2,000 concurrent calls + cancellation storm",
        }[self.kind]

    def degrades(self, timeout: float) -> bool:
        """Whether this phase may degrade operations (opens a window)."""
        if self.kind == "latency":
            return self.value >= timeout
        return self.kind in ("stall", "resets", "refuse", "kill")

    def grace(self, timeout: float) -> float:
        """How long after this fault degradations are still expected.

        The breaker's pause after a fault of D seconds is at most
        ``min(5, D + 0.5)``; then one trial call (up to ``timeout``), then slack.
        """
        return min(MAX_BREAKER_PAUSE, self.seconds + 0.5) + timeout + SLACK


def schedule(quick: bool, timeout: float) -> tuple[float, list[Phase]]:
    """``(warm-up seconds, phases)``: 15 s + 132 s, or 1.5 s + 12.6 s with ``quick``."""
    if quick:
        gap, fault = 0.5, 0.8
        warm_up = 1.5
        final = 3.5
    else:
        gap, fault = 10.0, 8.0
        warm_up = 15.0
        final = 20.0
    # Below: small enough that an operation needing a new connection (its handshake is
    # one more round trip) and a batch behind it still fit in the timeout.
    below, above = timeout * 0.1, timeout * 2.0
    phases = [
        Phase("healthy", gap),
        Phase("burst", 1.0 if quick else 8.0),
        Phase("latency", fault if quick else 12.0, below),
        Phase("healthy", gap),
        Phase("latency", fault, above),
        Phase("healthy", gap),
        Phase("stall", fault if quick else 4.0),
        Phase("healthy", gap),
        Phase("resets", fault, 0.25 if quick else 0.5),
        Phase("healthy", gap),
        Phase("refuse", fault if quick else 6.0),
        Phase("healthy", gap),
        Phase("kill", fault if quick else 6.0),
        Phase("healthy", final),
    ]
    return warm_up, phases


@dataclass
class Window:
    """Where degradations are expected: a fault, and its grace after it ends."""

    label: str
    start: float
    grace: float
    end: float = math.inf
    #: Expected degradations seen in this window, and the last one's time.
    degraded: int = 0
    last_degraded: float = -math.inf

    def covers(self, t0: float, t1: float, extra: float = 0.0) -> bool:
        return t1 >= self.start and t0 <= self.end + self.grace + extra

    def saw(self, count: int, at: float) -> None:
        self.degraded += count
        self.last_degraded = max(self.last_degraded, at)


@dataclass
class PhaseRecord:
    label: str
    kind: Kind
    start: float
    end: float = 0.0
    #: Successful operations of every pattern during the phase.
    ok_ops: int = 0
    degraded: int = 0
    unexpected: int = 0
    window: Window | None = None
    #: The event loop's worst lag during the phase (seconds).
    lag: float = 0.0


@dataclass
class Timeline:
    """Seconds since the soak started, the fault windows, and data-loss epochs."""

    started: float = field(default_factory=time.monotonic)
    windows: list[Window] = field(default_factory=list)
    phases: list[PhaseRecord] = field(default_factory=list)
    #: Incremented when the server is killed: its data is gone.
    epoch: int = 0

    def now(self) -> float:
        return time.monotonic() - self.started

    def covering(self, t0: float, t1: float, extra: float = 0.0) -> Window | None:
        """The latest window overlapping ``[t0, t1]`` (widened by ``extra`` after its grace)."""
        for window in reversed(self.windows):
            if window.covers(t0, t1, extra):
                return window
        return None

    @property
    def settled_after(self) -> float:
        """When the last window (grace included) closed; 0 if there was none."""
        return max((w.end + w.grace for w in self.windows), default=0.0)


async def inject(
    phase: Phase,
    *,
    timeout: float,
    proxy: FaultProxy,
    server: RedisProcess,
    timeline: Timeline,
    burst: Callable[[], Awaitable[None]],
) -> None:
    """Apply ``phase`` for its duration, then undo it (a killed server is restarted)."""
    window: Window | None = None
    if phase.degrades(timeout):
        window = Window(phase.label(timeout), timeline.now(), phase.grace(timeout))
        timeline.windows.append(window)
    started = time.monotonic()

    def left() -> float:
        return phase.seconds - (time.monotonic() - started)

    try:
        if phase.kind == "latency":
            proxy.latency = phase.value
            await asyncio.sleep(left())
        elif phase.kind == "stall":
            proxy.stall()
            await asyncio.sleep(left())
        elif phase.kind == "resets":
            while left() > 0:
                await proxy.drop_all()
                await asyncio.sleep(min(phase.value, max(left(), 0.0)))
        elif phase.kind == "refuse":
            proxy.refuse = True
            await proxy.drop_all()
            await asyncio.sleep(left())
        elif phase.kind == "kill":
            server.kill()
            timeline.epoch += 1
            await asyncio.sleep(left())
        elif phase.kind == "burst":
            await burst()
            await asyncio.sleep(max(left(), 0.0))
        else:
            await asyncio.sleep(left())
    finally:
        proxy.latency = 0.0
        proxy.refuse = False
        proxy.resume()
        if phase.kind == "kill" and not server.running:
            await server.restart()  # a fresh, empty server on the same port
        if window is not None:
            window.end = timeline.now()
