"""A small circuit breaker in front of one Redis server (one per node on a cluster).

After ``threshold`` consecutive connection-level failures the circuit opens:
calls fail at once with ``CircuitOpen`` instead
of spending their timeout on a dead server. After ``cooldown`` up to
``trial_calls`` trial calls are let through (half-open); a success closes the
circuit, a failure re-opens it with the cooldown doubled, up to
``max_cooldown``. Nothing needs resetting by hand: recovery is the first success.

The numbers are a client's settings (``BreakerSettings``), set with
``configure_breaker(redis, ...)``; every breaker of that client (its server's,
or each cluster node's) follows them.

(We looked for a maintained asyncio breaker to reuse; the candidates are
synchronous or unmaintained, and this one is thirty lines with no timer.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CircuitOpen

__all__ = ["BreakerSettings", "CircuitBreaker", "NodeBreakers"]

_STATE_NAMES = ("closed", "half_open", "open")


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """How a client's circuit breakers open and close
    (see [`configure_breaker`][aiocache_patterns.configure_breaker])."""

    #: Consecutive connection-level failures (refused, reset, timed out) that open it.
    failures: int = 5
    #: Seconds it stays open before trial calls are let through.
    open_for: float = 0.5
    #: The longest it stays open: each failed trial doubles ``open_for`` up to this.
    max_open_for: float = 5.0
    #: Calls let through at once while half-open; the first success closes it.
    trial_calls: int = 1

    def breaker(self, name: str = "") -> CircuitBreaker:
        """A new, closed breaker with these settings (``name``: the node, for messages)."""
        return CircuitBreaker(
            threshold=self.failures,
            cooldown=self.open_for,
            max_cooldown=self.max_open_for,
            trial_calls=self.trial_calls,
            name=name,
        )


class CircuitBreaker:
    __slots__ = (
        "__weakref__",
        "_base_cooldown",
        "_clock",
        "_cooldown",
        "_failures",
        "_max_cooldown",
        "_open_until",
        "_threshold",
        "_trial_calls",
        "_trials_running",
        "name",
    )

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 0.5,
        max_cooldown: float = 5.0,
        trial_calls: int = 1,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._base_cooldown = self._cooldown = cooldown
        self._max_cooldown = max(max_cooldown, cooldown)
        self._trial_calls = trial_calls
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._trials_running = 0
        #: What the breaker guards (a cluster node's ``host:port``; empty for a server).
        self.name = name

    @classmethod
    def never_opens(cls) -> CircuitBreaker:
        """A breaker that lets every call through (the cluster path breaks per node)."""
        return cls(threshold=sys.maxsize)

    @property
    def state_name(self) -> str:
        """``"closed"``, ``"open"`` (calls refused) or ``"half_open"`` (trials let through)."""
        return _STATE_NAMES[self.state]

    @property
    def state(self) -> int:
        """0 closed, 1 half-open (a trial is due or running), 2 open (calls refused)."""
        if self._failures < self._threshold:
            return 0
        if self._trials_running or self._clock() >= self._open_until:
            return 1
        return 2

    def before_call(self) -> bool:
        """Raise ``CircuitOpen`` while open; return True if this call is a trial."""
        if self._failures < self._threshold:
            return False
        if self._trials_running >= self._trial_calls or self._clock() < self._open_until:
            where = f" ({self.name})" if self.name else ""
            raise CircuitOpen(f"Redis{where} is failing; calls are refused for a short while")
        self._trials_running += 1
        return True

    def record_success(self, trial: bool = False) -> None:
        if trial:
            self.release_trial()
        if self._failures:
            self._failures = 0
            self._cooldown = self._base_cooldown

    def record_failure(self, trial: bool = False) -> None:
        if trial:
            self.release_trial()
            self._cooldown = min(self._cooldown * 2, self._max_cooldown)
        self._failures += 1
        if self._failures >= self._threshold:
            self._open_until = self._clock() + self._cooldown

    def release_trial(self) -> None:
        """A trial call ended without telling success from failure (it was cancelled)."""
        if self._trials_running:
            self._trials_running -= 1


class NodeBreakers:
    """One breaker per cluster node (by ``host:port``), made on first use with the
    client's settings: a failing shard opens the circuit for its own keys only."""

    __slots__ = ("by_node", "on_new", "settings")

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self.by_node: dict[str, CircuitBreaker] = {}
        #: Called with each breaker made (the metrics observe it).
        self.on_new: Callable[[CircuitBreaker], None] | None = None

    def get(self, node: str) -> CircuitBreaker:
        breaker = self.by_node.get(node)
        if breaker is None:
            breaker = self.by_node[node] = self.settings.breaker(node)
            if self.on_new is not None:
                self.on_new(breaker)
        return breaker

    def configure(self, settings: BreakerSettings) -> None:
        """New settings; every node starts closed again."""
        self.settings = settings
        self.by_node.clear()
